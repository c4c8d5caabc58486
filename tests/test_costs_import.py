"""FOCUS cost import: the FinOps Foundation's real sample file (tests/data, CC BY 4.0) and
variations of it, against a real PostgreSQL. Expected figures are computed from the CSV
independently, with the csv module and Decimal."""

from __future__ import annotations

import csv
import inspect
import io
import json
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from tortoise import connections

from invoicing.cli import data as cli
from models import CostImport, CostRecord, SubAccount
from models.costs import CostOrigin, import_costs
from models.errors import CostFileRejected, NotFound, ValidationFailed
from models.managed_accounts import set_sub_accounts
from tests import factories as f

SAMPLE = Path(__file__).parent / "data" / "focus-1.0-sample.csv"

AWS_BIG = "11353890204"  # 225 rows
AWS_SECOND = "18938484842"  # 215 rows
AZURE = "/subscriptions/64e355d7-997c-491d-b0c1-8414dccfcf42"  # 45 rows
ORACLE = "ocid6.tenancy.oc6..aaaaaaaa2fs7w19bi9iupcjqv8zayogd78eziinl2hu7rkdvmuhsavhbmkma"  # 3 rows


def sample_rows() -> tuple[list[str], list[dict[str, str]]]:
    with SAMPLE.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or ()), list(reader)


def to_csv(header: list[str], rows: list[dict[str, str]], *, lineterminator: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def month_of(text: str) -> date:
    return date(int(text[:4]), int(text[5:7]), 1)


def expected_totals(rows, account_of) -> dict[tuple, Decimal]:
    """BilledCost per (managed account or None, month, currency), straight from the CSV."""
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    with localcontext() as context:
        context.prec = 60
        for row in rows:
            account = account_of.get(row["SubAccountId"])
            key = (account, month_of(row["BillingPeriodStart"]), row["BillingCurrency"])
            totals[key] += Decimal(row["BilledCost"])
    return dict(totals)


async def database_totals(organization_id) -> dict[tuple, Decimal]:
    rows = await connections.get("default").execute_query_dict(
        "SELECT managed_account_id, billing_month, billing_currency, sum(billed_cost) AS total"
        " FROM cost_records WHERE organization_id = $1"
        " GROUP BY managed_account_id, billing_month, billing_currency",
        [organization_id],
    )
    return {
        (r["managed_account_id"], r["billing_month"], r["billing_currency"]): r["total"] for r in rows
    }


async def counts() -> tuple[int, int]:
    return await CostImport.all().count(), await CostRecord.all().count()


async def test_the_sample_imports_with_exact_totals_per_account_and_month():
    org = await f.organization()
    aws = await f.managed_account(org, sub_accounts=[AWS_BIG, AWS_SECOND])
    azure = await f.managed_account(org, sub_accounts=[AZURE])
    oracle = await f.managed_account(org, sub_accounts=[ORACLE])
    account_of = {AWS_BIG: aws.id, AWS_SECOND: aws.id, AZURE: azure.id, ORACLE: oracle.id}
    _, rows = sample_rows()
    progress: list[int] = []

    report = await import_costs(
        org.id, SAMPLE.read_bytes(), filename="focus.csv", progress=progress.append
    )

    assert (report.rows, report.inserted, report.duplicates) == (1000, 1000, 0)
    assert progress[-1] == 1000
    assert await CostRecord.filter(organization_id=org.id).count() == 1000
    expected = expected_totals(rows, account_of)
    # The sample spans two billing months, and all four groups are there.
    assert {key[1] for key in expected} == {date(2024, 9, 1), date(2024, 10, 1)}
    assert expected[(aws.id, date(2024, 9, 1), "USD")] > 0
    assert await database_totals(org.id) == expected
    reported = {(t.managed_account_id, t.billing_month, t.currency): t.billed_cost for t in report.totals}
    assert reported == expected
    assert sum(t.rows for t in report.totals) == 1000
    assert await CostRecord.filter(managed_account_id=aws.id).count() == 225 + 215
    assert await CostRecord.filter(managed_account_id=azure.id).count() == 45
    assert await CostRecord.filter(managed_account_id=oracle.id).count() == 3

    cost_import = await CostImport.get(id=report.cost_import_id)
    counted = (cost_import.row_count, cost_import.inserted_count, cost_import.duplicate_count)
    assert counted == (1000, 1000, 0)
    assert cost_import.filename == "focus.csv"
    assert len(cost_import.file_sha256) == 64


async def test_unmatched_sub_accounts_are_stored_and_reported_with_their_rows_and_cost():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=[AWS_BIG, AZURE])
    _, rows = sample_rows()
    expected_rows: Counter[str] = Counter()
    expected_cost: dict[str, Decimal] = defaultdict(Decimal)
    names: dict[str, str] = {}
    for row in rows:
        if row["SubAccountId"] not in (AWS_BIG, AZURE):
            expected_rows[row["SubAccountId"]] += 1
            expected_cost[row["SubAccountId"]] += Decimal(row["BilledCost"])
            names.setdefault(row["SubAccountId"], row["SubAccountName"])

    report = await import_costs(org.id, SAMPLE.read_bytes())

    assert len(report.unmatched) == len(expected_rows) == 71
    assert {u.sub_account_id: u.rows for u in report.unmatched} == dict(expected_rows)
    assert {u.sub_account_id: u.billed_cost for u in report.unmatched} == dict(expected_cost)
    second = next(u for u in report.unmatched if u.sub_account_id == AWS_SECOND)
    assert (second.rows, second.provider_name, second.currency) == (215, "AWS", "USD")
    assert second.sub_account_name == names[AWS_SECOND]
    oracle = next(u for u in report.unmatched if u.sub_account_id == ORACLE)
    assert (oracle.rows, oracle.provider_name) == (3, "Oracle")
    # Stored, without an account, ready to be linked.
    unlinked = CostRecord.filter(organization_id=org.id, managed_account_id=None)
    assert await unlinked.count() == sum(expected_rows.values())
    saved = (await CostImport.get(id=report.cost_import_id)).unmatched_sub_accounts
    saved_second = next(entry for entry in saved if entry["subAccountId"] == AWS_SECOND)
    assert saved_second["rows"] == 215
    assert Decimal(saved_second["billedCost"]) == expected_cost[AWS_SECOND]
    assert isinstance(saved_second["billedCost"], str)


async def test_importing_the_same_file_again_inserts_nothing_and_changes_no_total():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=[AWS_BIG])
    first = await import_costs(org.id, SAMPLE.read_bytes())
    before = await database_totals(org.id)

    again = await import_costs(org.id, SAMPLE)  # a Path this time

    assert (again.rows, again.inserted, again.duplicates) == (1000, 0, 1000)
    assert await CostRecord.filter(organization_id=org.id).count() == 1000
    assert await database_totals(org.id) == before
    # The report still describes the file, and the attempt is recorded.
    assert again.totals == first.totals
    second = await CostImport.get(id=again.cost_import_id)
    assert (second.row_count, second.inserted_count, second.duplicate_count) == (1000, 0, 1000)
    assert second.file_sha256 == (await CostImport.get(id=first.cost_import_id)).file_sha256


async def test_a_later_delivery_of_the_same_scope_replaces_it_whole():
    org = await f.organization()
    header, rows = sample_rows()
    first = await import_costs(org.id, to_csv(header, rows[:600]))

    report = await import_costs(org.id, io.BytesIO(to_csv(header, rows[400:])))

    # Every scope (provider, billing account, month) the second delivery names is now what it
    # says; a scope only the first named keeps the first's rows.
    scope = lambda row: (row["ProviderName"], row["BillingAccountId"], month_of(row["BillingPeriodStart"]))
    named = {scope(row) for row in rows[400:]}
    expected = [row for row in rows[:600] if scope(row) not in named] + rows[400:]
    assert (report.rows, report.inserted, report.duplicates) == (600, 600, 0)
    assert await CostRecord.filter(organization_id=org.id).count() == len(expected)
    assert await database_totals(org.id) == expected_totals(expected, {})
    assert report.replaced == sum(1 for row in rows[:600] if scope(row) in named)
    replaced = {(s.provider_name, s.billing_month): s for s in report.scopes if s.outcome == "REPLACED"}
    assert replaced[("AWS", date(2024, 9, 1))].superseded_import_id == first.cost_import_id


def _break(column: str, value: str):
    def change(header, rows):
        rows[15][column] = value  # line 17: the header is line 1
        return header, rows
    return change


def _drop(column: str):
    def change(header, rows):
        header = [name for name in header if name != column]
        return header, [{k: v for k, v in row.items() if k != column} for row in rows]
    return change


@pytest.mark.parametrize(
    "change,line,column,message",
    [
        (_break("BilledCost", "abc"), 17, "BilledCost", "line 17: BilledCost 'abc' is not a number"),
        (_break("BilledCost", "1e400"), 17, "BilledCost", "'1e400' has more than 22 digits before the decimal point"),
        (_break("BilledCost", "NaN"), 17, "BilledCost", "line 17: BilledCost 'NaN' is not a number"),
        (_break("BilledCost", "1,5"), 17, "BilledCost", "line 17: BilledCost '1,5' is not a number"),
        (_break("BilledCost", "0.00000000000000001"), 17, "BilledCost", "more than 16 decimal places"),
        (_break("BilledCost", "1" * 23), 17, "BilledCost", "more than 22 digits before the decimal point"),
        (_break("ListCost", "12.5.1"), 17, "ListCost", "line 17: ListCost '12.5.1' is not a number"),
        (_break("BilledCost", ""), 17, "BilledCost", "line 17: BilledCost is empty"),
        (_break("BillingPeriodStart", "2024-13-01 00:00:00"), 17, "BillingPeriodStart", "is not a date and time"),
        (_break("ChargePeriodEnd", "yesterday"), 17, "ChargePeriodEnd", "ChargePeriodEnd 'yesterday' is not a date"),
        (_break("BillingPeriodEnd", "2024-09-01 00:00:00"), 17, "BillingPeriodEnd", "is not after BillingPeriodStart"),
        (_break("BillingCurrency", "US"), 17, "BillingCurrency", "'US' is not a 3-letter currency code"),
        (_break("BillingCurrency", "US1"), 17, "BillingCurrency", "is not a 3-letter currency code"),
        (_break("Tags", '{"env": "dev"'), 17, "Tags", "is not valid JSON"),
        (_break("Tags", '["dev"]'), 17, "Tags", "is not a JSON object"),
        (_break("ChargeCategory", "NULL"), 17, "ChargeCategory", "ChargeCategory is empty"),
        (_break("ProviderName", "x" * 129), 17, "ProviderName", "longer than 128 characters"),
        (_drop("BilledCost"), 1, "BilledCost", "line 1: missing required column BilledCost"),
        (_drop("SubAccountId"), 1, "SubAccountId", "missing required column SubAccountId"),
    ],
)
async def test_a_bad_row_refuses_the_whole_file_and_writes_nothing(change, line, column, message):
    org = await f.organization()
    await f.managed_account(org, sub_accounts=[AWS_BIG])
    header, rows = change(*sample_rows())

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, to_csv(header, rows))

    assert refused.value.line == line
    assert refused.value.column == column
    assert message in refused.value.message
    assert refused.value.code == "INVALID_COST_FILE"
    assert isinstance(refused.value, ValidationFailed)
    assert await counts() == (0, 0)


async def test_a_refused_file_leaves_earlier_imports_as_they_were():
    org = await f.organization()
    header, rows = sample_rows()
    await import_costs(org.id, to_csv(header, rows[:500]))
    rows[700]["BilledCost"] = "12,34"

    with pytest.raises(CostFileRejected, match="line 702: BilledCost '12,34' is not a number"):
        await import_costs(org.id, to_csv(header, rows))

    assert await counts() == (1, 500)


async def test_the_earliest_bad_row_is_the_one_reported():
    header, rows = sample_rows()
    rows[500]["BilledCost"] = "x"
    rows[300]["Tags"] = "{"
    rows[400]["BillingCurrency"] = "dollars"
    org = await f.organization()

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, to_csv(header, rows))

    assert (refused.value.line, refused.value.column) == (302, "Tags")


async def test_line_numbers_count_the_lines_of_quoted_multi_line_fields():
    header, rows = sample_rows()
    rows[2]["ChargeDescription"] = "first line\nsecond line\nthird line"
    rows[10]["BilledCost"] = "oops"
    org = await f.organization()

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, to_csv(header, rows))

    # Row 11 starts on line 12, two lines later for the two line breaks in row 3.
    assert refused.value.line == 14


async def test_a_row_with_a_field_too_many_is_refused_with_its_line():
    data = SAMPLE.read_bytes().split(b"\n")
    data[5] += b',"stray"'
    org = await f.organization()

    with pytest.raises(CostFileRejected, match="line 6: the row has 45 fields but the header has 44"):
        await import_costs(org.id, b"\n".join(data))
    assert await counts() == (0, 0)


async def test_two_identical_rows_in_one_file_are_both_kept_and_not_imported_twice():
    header, rows = sample_rows()
    rows = rows[:10] + [dict(rows[3])]
    org = await f.organization()

    first = await import_costs(org.id, to_csv(header, rows))
    again = await import_costs(org.id, to_csv(header, rows))

    assert (first.inserted, first.duplicates) == (11, 0)
    assert (again.inserted, again.duplicates) == (0, 11)
    copies = CostRecord.filter(organization_id=org.id, extra__contains={"Id": rows[3]["Id"]})
    assert await copies.count() == 2


async def test_bom_crlf_reordered_columns_and_other_timestamp_forms_are_the_same_data():
    header, rows = sample_rows()
    rows = rows[:50]
    org = await f.organization()
    plain = await import_costs(org.id, to_csv(header, rows))
    variant_rows = []
    for index, row in enumerate(rows):
        row = dict(row)
        for column in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            stamp = row[column].replace(" ", "T")
            row[column] = stamp + ("Z" if index % 2 else ".000+00:00")
        # Nulls written the other way, numbers with other trailing zeros.
        row = {k: ("" if v == "NULL" else "NULL" if v == "" else v) for k, v in row.items()}
        row["BilledCost"] = row["BilledCost"] + "000"
        variant_rows.append(row)
    reordered = list(reversed(header)) + ["x_Custom"]
    for row in variant_rows:
        row["x_Custom"] = ""
    variant = b"\xef\xbb\xbf" + to_csv(reordered, variant_rows, lineterminator="\r\n")
    assert variant.count(b"\r\n") == 51

    before = await database_totals(org.id)

    report = await import_costs(org.id, variant)

    # The same data written another way: it replaces the first delivery with equal values.
    assert (plain.inserted, report.rows, report.inserted, report.replaced) == (50, 50, 50, 50)
    assert await database_totals(org.id) == before
    assert await CostRecord.filter(organization_id=org.id).count() == 50
    stored = await CostRecord.filter(organization_id=org.id).order_by("id").first()
    assert stored.billing_period_start.isoformat() == "2024-09-01T00:00:00+00:00"
    assert stored.billing_month == date(2024, 9, 1)
    assert stored.billed_cost == Decimal(rows[0]["BilledCost"])
    assert stored.extra == {"Id": rows[0]["Id"]}


async def test_a_hand_made_file_parses_every_supported_form():
    text = (
        "\ufeffSubAccountId,x_Discount,BillingCurrency,BilledCost,ServiceProviderName,ChargeCategory,"
        "BillingPeriodEnd,BillingPeriodStart,Tags,ConsumedQuantity\r\n"
        "acct-1,5%,usd,1.50000000000000000000,Google Cloud,Usage,2024-10-01T00:00:00Z,"
        "2024-09-01T00:00:00.000+00:00,\"{\"\"team\"\": \"\"a, b\"\"}\",1234567890123456789012.1234567890123456\r\n"
        "acct-1,NULL,EUR,-2E-3,Google Cloud,Credit,2024-10-01 00:00:00,2024-09-01 00:00:00,NULL,\r\n"
        "\r\n"
    )
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=["acct-1"])

    report = await import_costs(org.id, text)

    assert (report.rows, report.inserted) == (2, 2)
    first, second = await CostRecord.filter(organization_id=org.id).order_by("billed_cost")
    assert (first.billed_cost, first.billing_currency) == (Decimal("-0.002"), "EUR")
    assert first.charge_category == "Credit"
    assert (second.billed_cost, second.billing_currency) == (Decimal("1.5"), "USD")
    assert second.consumed_quantity == Decimal("1234567890123456789012.1234567890123456")
    assert second.provider_name == "Google Cloud"
    assert second.tags == {"team": "a, b"}
    assert second.extra == {"x_Discount": "5%"}
    assert first.tags is None and first.extra == {} and first.consumed_quantity is None
    assert {(t.managed_account_id, t.currency, t.billed_cost) for t in report.totals} == {
        (account.id, "EUR", Decimal("-0.002")), (account.id, "USD", Decimal("1.5"))
    }


async def test_set_sub_accounts_relinks_existing_records():
    org = await f.organization()
    account = await f.managed_account(org)
    await import_costs(org.id, SAMPLE.read_bytes())
    assert await CostRecord.filter(managed_account_id=account.id).count() == 0

    await set_sub_accounts(account, [AWS_BIG, AZURE, AWS_BIG])

    assert await CostRecord.filter(managed_account_id=account.id).count() == 225 + 45
    mine = SubAccount.filter(managed_account_id=account.id).values_list("sub_account_id", flat=True)
    assert sorted(await mine) == sorted([AWS_BIG, AZURE])
    _, rows = sample_rows()
    assert (await database_totals(org.id)) == expected_totals(rows, {AWS_BIG: account.id, AZURE: account.id})

    await set_sub_accounts(account, [AZURE, ORACLE])

    assert await CostRecord.filter(managed_account_id=account.id).count() == 45 + 3
    unlinked = CostRecord.filter(organization_id=org.id, sub_account_id=AWS_BIG, managed_account_id=None)
    assert await unlinked.count() == 225
    # A later import links by the new list.
    await import_costs(org.id, SAMPLE.read_bytes())
    assert await CostRecord.filter(managed_account_id=account.id).count() == 45 + 3

    await set_sub_accounts(account, [])

    assert await CostRecord.filter(managed_account_id=account.id).count() == 0
    assert await SubAccount.filter(managed_account_id=account.id).count() == 0


async def test_set_sub_accounts_refuses_a_sub_account_another_account_has():
    org = await f.organization()
    first = await f.managed_account(org, name="First", sub_accounts=[AWS_BIG])
    second = await f.managed_account(org, sub_accounts=[AZURE])
    await import_costs(org.id, SAMPLE.read_bytes())

    with pytest.raises(ValidationFailed) as refused:
        await set_sub_accounts(second, [ORACLE, AWS_BIG])

    assert refused.value.field == "subAccountIds"
    assert AWS_BIG in refused.value.message and "First" in refused.value.message
    kept = SubAccount.filter(managed_account_id=second.id).values_list("sub_account_id", flat=True)
    assert await kept == [AZURE]
    assert await CostRecord.filter(managed_account_id=first.id).count() == 225
    assert await CostRecord.filter(managed_account_id=second.id).count() == 45
    with pytest.raises(ValidationFailed):
        await set_sub_accounts(second, ["  "])


async def test_another_organizations_rows_are_never_touched():
    org, other = await f.organization(), await f.organization()
    other_account = await f.managed_account(other, sub_accounts=[AZURE])
    await import_costs(other.id, SAMPLE.read_bytes())
    other_before = await database_totals(other.id)

    mine = await f.managed_account(org, sub_accounts=[AZURE])  # the same id, another tenant
    report = await import_costs(org.id, SAMPLE.read_bytes())
    await set_sub_accounts(mine, [AWS_BIG, AZURE])
    await set_sub_accounts(mine, [AWS_BIG])

    assert report.inserted == 1000  # scopes are per organization
    assert await database_totals(other.id) == other_before
    theirs = CostRecord.filter(organization_id=other.id)
    assert await theirs.filter(managed_account_id=other_account.id).count() == 45
    assert await theirs.filter(sub_account_id=AWS_BIG, managed_account_id=None).count() == 225
    assert await CostRecord.filter(managed_account_id=mine.id).count() == 225


async def test_an_unknown_organization_is_not_found_and_nothing_is_written():
    with pytest.raises(NotFound):
        await import_costs("00000000-0000-0000-0000-000000000000", SAMPLE.read_bytes())
    assert await counts() == (0, 0)


async def test_unmatched_json_is_what_the_report_says():
    org = await f.organization()
    report = await import_costs(org.id, SAMPLE.read_bytes())
    saved = (await CostImport.get(id=report.cost_import_id)).unmatched_sub_accounts
    assert saved == json.loads(json.dumps([u.as_json() for u in report.unmatched]))
    assert sum(entry["rows"] for entry in saved) == 1000


async def test_a_file_with_only_a_header_is_recorded_as_an_empty_import():
    header, _ = sample_rows()
    org = await f.organization()

    report = await import_costs(org.id, ",".join(header) + "\n")  # text this time

    assert (report.rows, report.inserted, report.duplicates, report.totals) == (0, 0, 0, ())
    assert await counts() == (1, 0)


# ---------------------------------------------------------------- origins


def account_rows(*sub_accounts: str) -> bytes:
    """The sample's rows of these sub-accounts, as a file of their own."""
    header, rows = sample_rows()
    return to_csv(header, [row for row in rows if row["SubAccountId"] in sub_accounts])


async def test_a_delegated_import_is_the_default_and_names_no_account():
    org = await f.organization()
    await f.managed_account(org, sub_accounts=[AZURE])

    report = await import_costs(org.id, account_rows(AZURE))

    assert (report.origin, report.managed_account_id) == (CostOrigin.MSP_DELEGATED, None)
    cost_import = await CostImport.get(id=report.cost_import_id)
    assert (cost_import.origin, cost_import.managed_account_id) == (CostOrigin.MSP_DELEGATED, None)
    assert await CostRecord.filter(origin=CostOrigin.MSP_DELEGATED).count() == 45


async def test_an_account_integration_import_marks_the_import_and_its_rows():
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AWS_BIG, AZURE])

    report = await import_costs(
        org.id, account_rows(AWS_BIG, AZURE), origin=CostOrigin.ACCOUNT_INTEGRATION, account_id=account.id
    )

    assert (report.origin, report.managed_account_id, report.inserted) == (
        CostOrigin.ACCOUNT_INTEGRATION, account.id, 225 + 45
    )
    cost_import = await CostImport.get(id=report.cost_import_id)
    assert (cost_import.origin, cost_import.managed_account_id) == (CostOrigin.ACCOUNT_INTEGRATION, account.id)
    records = CostRecord.filter(managed_account_id=account.id)
    assert await records.filter(origin=CostOrigin.ACCOUNT_INTEGRATION).count() == await records.count() == 270


@pytest.mark.parametrize("claimed", [True, False], ids=["another account's", "nobody's"])
async def test_an_account_integration_file_with_a_row_of_another_sub_account_is_refused_whole(claimed):
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AZURE])
    if claimed:
        await f.managed_account(org, sub_accounts=[ORACLE])
    header, rows = sample_rows()
    mine = [row for row in rows if row["SubAccountId"] == AZURE]
    foreign = next(row for row in rows if row["SubAccountId"] == ORACLE)
    data = to_csv(header, mine[:5] + [foreign] + mine[5:])

    with pytest.raises(CostFileRejected) as refused:
        await import_costs(org.id, data, origin=CostOrigin.ACCOUNT_INTEGRATION, account_id=account.id)

    assert (refused.value.line, refused.value.column) == (7, "SubAccountId")  # header, 5 rows, then it
    assert f"sub-account {ORACLE} is not one of {account.name}'s" in refused.value.message
    assert await counts() == (0, 0)


@pytest.mark.parametrize("origin,named", [
    (CostOrigin.ACCOUNT_INTEGRATION, False), (CostOrigin.MSP_DELEGATED, True),
])
async def test_only_an_account_integration_names_its_account(origin, named):
    org = await f.organization()
    account = await f.managed_account(org, sub_accounts=[AZURE])
    with pytest.raises(ValidationFailed) as refused:
        await import_costs(org.id, account_rows(AZURE), origin=origin, account_id=account.id if named else None)
    assert refused.value.field == "accountId"
    assert await counts() == (0, 0)


@pytest.mark.parametrize("account_id", ["not-an-id", "other organization's"])
async def test_an_account_integration_of_an_unknown_account_is_not_found(account_id):
    org, other = await f.organization(), await f.organization()
    theirs = await f.managed_account(other, sub_accounts=[AZURE])
    account_id = theirs.id if account_id == "other organization's" else account_id
    with pytest.raises(NotFound) as missing:
        await import_costs(
            org.id, account_rows(AZURE), origin=CostOrigin.ACCOUNT_INTEGRATION, account_id=account_id
        )
    assert missing.value.field == "accountId"
    assert await counts() == (0, 0)


async def test_the_command_line_imports_an_account_integration_named_by_account(tmp_path, capsys):
    org = await f.organization(name="Northwind")
    account = await f.managed_account(org, name="Contoso", sub_accounts=[AZURE])
    path = tmp_path / "contoso.csv"
    path.write_bytes(account_rows(AZURE))

    report, names = await cli._import_costs(path, "Northwind", CostOrigin.ACCOUNT_INTEGRATION, "Contoso")
    cli._print_report(report, names)

    assert (report.origin, report.managed_account_id, report.inserted) == (
        CostOrigin.ACCOUNT_INTEGRATION, account.id, 45
    )
    assert "From Contoso's own integration" in capsys.readouterr().out
    assert await CostRecord.filter(origin=CostOrigin.ACCOUNT_INTEGRATION).count() == 45
    with pytest.raises(NotFound):
        await cli._import_costs(path, "Northwind", CostOrigin.ACCOUNT_INTEGRATION, "Nobody")


async def test_the_command_line_imports_delegated_costs_by_default():
    org = await f.organization(name="Northwind")
    await f.managed_account(org, name="Contoso", sub_accounts=[AZURE])
    defaults = {name: param.default for name, param in inspect.signature(cli.import_costs).parameters.items()}
    assert (defaults["origin"].default, defaults["account"].default) == (CostOrigin.MSP_DELEGATED, None)

    report, _ = await cli._import_costs(SAMPLE, None, CostOrigin.MSP_DELEGATED, None)

    assert (report.origin, report.inserted) == (CostOrigin.MSP_DELEGATED, 1000)
