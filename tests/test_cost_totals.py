"""A month's figures kept (`cost_totals`) always equal a full scan of the cost records: after
random sequences of deliveries, re-deliveries (identical or restated), approved months whose
new deliveries become late costs, and sub-accounts moving between accounts."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from tortoise import connections

from models import LateCost
from models.costs import import_costs
from models.costs.totals import SCAN
from models.invoices.reconciliation import reconcile
from models.invoices.tables import InvoiceStatus
from models.managed_accounts import set_sub_accounts
from tests import factories as f

MONTHS = (date(2024, 9, 1), date(2024, 10, 1))
BILLING_ACCOUNTS = ("900000000001", "900000000002", "")
SUB_ACCOUNTS = ("100000000001", "100000000002", "100000000003", "100000000004")
SERVICES = (("Amazon EC2", "Compute", "Hrs"), ("Amazon S3", "Storage", "GB-Mo"), ("AWS Support", "", ""))
HEADER = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "ServiceName",
    "ServiceCategory",
    "SubAccountId",
    "SubAccountName",
]

_row = st.tuples(
    st.sampled_from(SUB_ACCOUNTS),
    st.sampled_from(SERVICES),
    st.sampled_from(("Usage", "Tax", "Credit")),
    st.decimals(min_value=-50, max_value=5000, places=4, allow_nan=False),
    st.sampled_from(("USD", "EUR")),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False)),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=3, allow_nan=False)),
)
_delivery = st.tuples(
    st.just("deliver"), st.sampled_from(MONTHS), st.sampled_from(BILLING_ACCOUNTS), st.lists(_row, min_size=1, max_size=12)
)
_step = st.one_of(
    _delivery,
    st.tuples(st.just("again"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("approve"), st.sampled_from(MONTHS)),
    st.tuples(st.just("remap"), st.lists(st.sampled_from(SUB_ACCOUNTS[2:]), unique=True)),
)


def _csv(month: date, billing_account: str, rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    for sub_account, (service, category, unit), charge, cost, currency, effective, quantity in rows:
        writer.writerow(
            [
                f"{cost:f}",
                "" if effective is None else f"{effective:f}",
                "",
                billing_account,
                currency,
                f"{month}T00:00:00Z",
                f"{end}T00:00:00Z",
                charge,
                "" if quantity is None else f"{quantity:f}",
                unit,
                "AWS",
                service,
                category,
                sub_account,
                f"Workload {sub_account[-1]}",
            ]
        )
    return out.getvalue().encode()


async def _kept_and_scanned(organization_id) -> tuple[dict, dict]:
    """The kept figures summed per key, and the same from a scan of the records."""
    db = connections.get("default")
    keys = (
        "cost_import_id, origin, provider_name, billing_account_id, billing_month, billing_currency,"
        " managed_account_id, sub_account_id, service_name, service_category, charge_category, consumed_unit"
    )
    sums = (
        "sum(row_count) AS rows, sum(billed_cost) AS billed, sum(effective_cost) AS effective,"
        " sum(list_cost) AS list, sum(consumed_quantity) AS quantity"
    )
    found = []
    for source in ("cost_totals WHERE organization_id = $1", f"({SCAN}) AS scan"):
        rows = await db.execute_query_dict(f"SELECT {keys}, {sums} FROM {source} GROUP BY {keys}", [str(organization_id)])
        found.append(
            {
                tuple(row[name.strip()] for name in keys.split(",")): (
                    row["rows"],
                    row["billed"],
                    row["effective"],
                    row["list"],
                    row["quantity"],
                )
                for row in rows
            }
        )
    return found[0], found[1]


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Each example imports several deliveries: a failure is shown as found, not shrunk for minutes.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(steps=st.lists(_step, min_size=1, max_size=8))
async def test_the_kept_figures_equal_a_scan_after_any_sequence_of_deliveries(steps):
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=SUB_ACCOUNTS[:2])
    other = await f.managed_account(org, sub_accounts=SUB_ACCOUNTS[2:3])
    sent: list[bytes] = []
    for step in steps:
        if step[0] == "deliver":
            sent.append(_csv(*step[1:]))
            await import_costs(org.id, sent[-1])
        elif step[0] == "again" and sent:
            await import_costs(org.id, sent[step[1] % len(sent)])
        elif step[0] == "approve":
            period = await f.billing_period(org, step[1]) if not await _has_period(org, step[1]) else None
            if period is not None:
                await f.generated_invoice(account, period, status=InvoiceStatus.APPROVED, number=f"INV-{step[1]:%Y%m}")
        elif step[0] == "remap":
            await set_sub_accounts(other, step[1])
        kept, scanned = await _kept_and_scanned(org.id)
        assert kept == scanned

    # The month's reconciliation read from the kept figures adds up to the records' total.
    for month in MONTHS:
        imported: dict[str, Decimal] = {}
        for row in await connections.get("default").execute_query_dict(
            "SELECT billing_currency, sum(billed_cost) AS total FROM cost_records"
            " WHERE organization_id = $1 AND billing_month = $2 GROUP BY 1",
            [str(org.id), month],
        ):
            imported[row["billing_currency"]] = row["total"]
        late = {late.currency: late.billable for late in await LateCost.filter(organization_id=org.id, billing_month=month)}
        totals = (await reconcile(org.id, month)).totals()
        for currency, total in imported.items():
            parts = totals[currency]
            assert parts["IMPORTED"] - parts.get("LATE", Decimal(0)) == total
        assert set(totals) <= set(imported) | set(late)


async def _has_period(org, month: date) -> bool:
    from models import BillingPeriod

    return await BillingPeriod.filter(organization_id=org.id, start_date=month).exists()


async def test_a_month_rebuilt_from_its_records_is_the_month_kept():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=SUB_ACCOUNTS[:2])
    rows = [
        (SUB_ACCOUNTS[0], SERVICES[0], "Usage", Decimal("10.5"), "USD", None, Decimal(2)),
        (SUB_ACCOUNTS[0], SERVICES[0], "Usage", Decimal("1.25"), "USD", Decimal(1), Decimal(3)),
        (SUB_ACCOUNTS[3], SERVICES[2], "Tax", Decimal("4"), "EUR", None, None),
    ]
    await import_costs(org.id, _csv(MONTHS[0], BILLING_ACCOUNTS[0], rows))
    kept, _ = await _kept_and_scanned(org.id)
    assert sorted((key[7], key[8], value[:4]) for key, value in kept.items()) == [
        (SUB_ACCOUNTS[0], "Amazon EC2", (2, Decimal("11.75"), Decimal("11.5"), Decimal("11.75"))),
        (SUB_ACCOUNTS[3], "AWS Support", (1, Decimal(4), Decimal(4), Decimal(4))),
    ]
    await f.summed_costs(org.id)
    assert (await _kept_and_scanned(org.id))[0] == kept


async def test_sums_folded_while_a_delivery_streams_equal_a_scan(monkeypatch):
    # Batches of three rows, and the partial sums folded as soon as two of them pile up:
    # a delivery of 60 rows goes through every fold a month of millions of rows would.
    from models.costs import sources, totals

    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 3)
    monkeypatch.setattr(totals, "_FOLD_ROWS", 2)
    org = await f.organization()
    await f.managed_account(org, sub_accounts=SUB_ACCOUNTS[:2])
    rows = [
        (
            SUB_ACCOUNTS[n % 4],
            SERVICES[n % 3],
            ("Usage", "Tax")[n % 2],
            Decimal(n * 7) / 8,
            ("USD", "EUR")[n % 5 == 0],
            None if n % 3 else Decimal(n),
            None if n % 4 == 3 else Decimal(n) / 100,
        )
        for n in range(60)
    ]
    table = pa_csv.read_csv(
        io.BytesIO(_csv(MONTHS[0], BILLING_ACCOUNTS[0], rows)),
        convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in HEADER}),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=7)
    report = await import_costs(org.id, sink.getvalue(), filename="month.parquet")
    assert report.rows == 60
    kept, scanned = await _kept_and_scanned(org.id)
    assert kept == scanned and len(kept) > 12
    # The sub-account no account claims is reported with every one of its rows and its cost.
    unmatched = {(entry.sub_account_id, entry.currency): (entry.rows, entry.billed_cost) for entry in report.unmatched}
    expected: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for sub_account, _, _, cost, currency, _, _ in rows:
        if sub_account in SUB_ACCOUNTS[2:]:
            count, total = expected.get((sub_account, currency), (0, Decimal(0)))
            expected[(sub_account, currency)] = (count + 1, total + cost)
    assert unmatched == expected
