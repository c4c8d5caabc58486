"""A month closes when its data is complete: completeness per cost source and provider from
real deliveries written into moto's S3 (as AWS lays them out) and synced; the scheduled close
held while a source is not complete, then made at the latest close day with a warning the
approval must acknowledge; the forced close; per-organization sync intervals; and sources of
a managed account's own integration, with the origin rules of its uploads."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from strawberry.relay import to_base64

from jobs import dispatch
from jobs.cost_sources import sync_due_cost_sources
from jobs.periods import close_due_periods
from models import BillingPeriod, CostImport, CostRecord, CostSource, Invoice, Organization, SubAccount
from models.costs.records import CostOrigin
from models.errors import ErrorCode, ValidationFailed
from tests import factories as f
from tests.graphql import error_codes, gql
from tests.test_checks import APPROVE, generated
from tests.test_cost_delivery_layout import period_rows
from tests.test_cost_sources import (  # noqa: F401 (fixtures)
    _raw,
    bucket,
    create,
    deliver,
    s3_client,
    s3_settings,
    source_input,
    sync,
)

PERIOD = """query($id: ID!) { node(id: $id) { ... on BillingPeriod { state completeness forcedAt forcedBy
  sourceCompleteness { costSource { name } provider state writtenAt } } } }"""
CLOSE = """mutation($month: Month!, $force: Boolean) { closeBillingPeriod(month: $month, force: $force) { __typename
  ... on BillingPeriodClosed { invoicesCreated billingPeriod { state completeness forcedAt forcedBy } }
  ... on UserError { code field message } } }"""
SETTINGS = """mutation($input: UpdateOrganizationInput!) { updateOrganization(input: $input) { __typename
  ... on OrganizationUpdated { organization { costData { syncEveryHours settleHours latestCloseDay } } }
  ... on UserError { code field } } }"""


def this_month() -> date:
    return datetime.now(UTC).date().replace(day=1)


def last_month() -> date:
    return (this_month() - timedelta(days=1)).replace(day=1)


def month_rows(month: date) -> list[dict[str, str]]:
    """The sample's AWS rows of September 2024 moved into `month` (days past the 27th left
    out: every month has them)."""
    following = (month + timedelta(days=32)).replace(day=1)
    moved = []
    for row in period_rows("2024-09"):
        if int(row["ChargePeriodStart"][8:10]) > 27:
            continue
        moved.append(
            {
                name: value.replace("2024-10-01", f"{following:%Y-%m-%d}").replace("2024-09-", f"{month:%Y-%m-}")
                for name, value in row.items()
            }
        )
    return moved


async def settle(org_id, hours: int, **more) -> None:
    await Organization.filter(id=org_id).update(data_settle_hours=hours, **more)


async def period_of(world, month: date) -> BillingPeriod:
    return await BillingPeriod.get_or_none(organization_id=world.org.id, start_date=month) or await f.billing_period(world.org, month)


async def read(client, world, period: BillingPeriod, role: str = "owner") -> dict:
    result = await gql(client, PERIOD, {"id": to_base64("BillingPeriod", str(period.id))}, world.tokens[role])
    return result["data"]["node"]


async def aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, *months: date, name="AWS billing") -> dict:
    """A source whose bucket holds a delivery of each month (written now), synced."""
    for month in months:
        deliver(moto_s3["s3"], bucket, f"{month:%Y-%m}", month_rows(month), execution=f"run-{month:%Y-%m}")
    source = (await create(s3_client, world.tokens["owner"], source_input(bucket, moto_s3, name=name)))["costSource"]
    outcome = await sync(redis, s3_settings, source["id"])
    assert outcome["state"] == "OK" and len(outcome["imported"]) == len(months), outcome
    return source


# ---------------------------------------------------------------- completeness


async def test_completeness_per_source_and_provider_from_real_deliveries(s3_client, world, redis, s3_settings, moto_s3, bucket):
    previous, current = last_month(), this_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, previous, current)
    empty = f"{bucket}-empty"
    moto_s3["s3"].create_bucket(Bucket=empty)
    other = (await create(s3_client, world.tokens["owner"], source_input(empty, moto_s3, name="Azure billing")))["costSource"]
    assert (await sync(redis, s3_settings, other["id"]))["state"] == "OK"
    await settle(world.org.id, 0)

    finished, running = await period_of(world, previous), await period_of(world, current)
    seen = await read(s3_client, world, finished)
    written = seen["sourceCompleteness"][0]["writtenAt"]
    assert [(s["costSource"]["name"], s["provider"], s["state"]) for s in seen["sourceCompleteness"]] == [
        ("AWS billing", "AWS", "COMPLETE"),
        ("Azure billing", None, "MISSING"),
    ]
    assert seen["completeness"] == "MISSING" and seen["sourceCompleteness"][1]["writtenAt"] is None
    store_time = datetime.fromisoformat(written)
    assert abs(store_time - datetime.now(UTC)) < timedelta(minutes=5)
    # This month's delivery was written before the month ended: partial, whatever the settle time.
    ongoing = await read(s3_client, world, running)
    assert [(s["costSource"]["name"], s["state"]) for s in ongoing["sourceCompleteness"]] == [
        ("AWS billing", "PARTIAL"),
        ("Azure billing", "MISSING"),
    ]

    # Written less than the settle time after the month's end: partial.
    assert (await gql(s3_client, SETTINGS, {"input": {"costData": {"settleHours": 720}}}, world.tokens["owner"]))["data"][
        "updateOrganization"
    ]["organization"]["costData"]["settleHours"] == 720
    assert [s["state"] for s in (await read(s3_client, world, finished))["sourceCompleteness"]] == ["PARTIAL", "MISSING"]
    await gql(s3_client, "mutation($id: ID!) { deleteCostSource(id: $id) { __typename } }", {"id": other["id"]}, world.tokens["owner"])
    assert (await read(s3_client, world, finished, "viewer"))["completeness"] == "PARTIAL"
    await settle(world.org.id, 0)
    assert (await read(s3_client, world, finished))["completeness"] == "COMPLETE"
    # Without any source there is nothing to wait for.
    await CostSource.all().delete()
    alone = await read(s3_client, world, finished)
    assert (alone["completeness"], alone["sourceCompleteness"]) == (None, [])


@pytest.mark.parametrize("role, sees", [("owner", True), ("viewer", True), ("customer", None), ("foreign_owner", False)])
async def test_completeness_is_the_organizations_own(s3_client, world, redis, s3_settings, moto_s3, bucket, role, sees):
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, last_month())
    period = await period_of(world, last_month())
    result = await gql(s3_client, PERIOD, {"id": to_base64("BillingPeriod", str(period.id))}, world.tokens[role])
    if sees:
        assert result["data"]["node"]["sourceCompleteness"][0]["costSource"]["name"] == "AWS billing"
    else:
        # A customer reaches no billing period, nor another organization's owner.
        assert result["data"]["node"] is None and "errors" not in result


# ---------------------------------------------------------------- the held and the forced close


async def test_the_scheduled_close_waits_for_complete_data_then_closes_with_a_warning_to_acknowledge(
    s3_client,
    world,
    redis,
    s3_settings,
    moto_s3,
    bucket,
):
    month = last_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, month)
    await settle(world.org.id, 720, latest_close_day=10)
    ctx = {"redis": redis, "settings": s3_settings}
    early = datetime.combine(this_month().replace(day=2), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    await close_due_periods(ctx, now=early)
    await close_due_periods(ctx, now=early.replace(day=9))
    assert not await BillingPeriod.filter(organization_id=world.org.id, start_date=month).exists()
    # Another organization, without sources, closed as it always did.
    assert await BillingPeriod.filter(organization_id=world.foreign_org.id, start_date=month, state="CLOSED").exists()

    await close_due_periods(ctx, now=early.replace(day=10))
    period = await BillingPeriod.get(organization_id=world.org.id, start_date=month)
    assert period.state == "CLOSED" and period.forced_at is not None and period.forced_by_label == "scheduler"
    assert [(s["source"], s["provider"], s["state"]) for s in period.incomplete_at_close] == [("AWS billing", "AWS", "PARTIAL")]
    shown = await read(s3_client, world, period)
    assert (shown["state"], shown["completeness"], shown["forcedBy"]) == ("CLOSED", "PARTIAL", "scheduler")
    assert shown["forcedAt"]

    # Every invoice of the month is fed by the MSP's source: each carries the warning.
    invoice = await generated(world, month)
    other = await generated(world, month, world.other_account)
    checks = await gql(
        s3_client,
        """query($id: ID!) { node(id: $id) { ... on Invoice { checks { code severity figures } } } }""",
        {"id": to_base64("Invoice", str(invoice.id))},
        world.tokens["owner"],
    )
    warning = [c for c in checks["data"]["node"]["checks"] if c["code"] == "INCOMPLETE_DATA"]
    assert warning == [
        {
            "code": "INCOMPLETE_DATA",
            "severity": "WARNING",
            "figures": {
                "source": "AWS billing",
                "provider": "AWS",
                "state": "PARTIAL",
                "writtenAt": period.incomplete_at_close[0]["writtenAt"],
            },
        }
    ]
    ids = [to_base64("Invoice", str(invoice.id)), to_base64("Invoice", str(other.id))]
    others = sorted({c["code"] for c in checks["data"]["node"]["checks"] if c["severity"] == "WARNING"} - {"INCOMPLETE_DATA"})
    refused = (await gql(s3_client, APPROVE, {"ids": ids, "ack": others}, world.tokens["owner"]))["data"]["approveInvoices"]
    assert [r["error"]["code"] for r in refused["results"]] == ["CHECKS_UNACKNOWLEDGED"] * 2
    assert "INCOMPLETE_DATA" in refused["results"][0]["error"]["message"]
    assert await Invoice.filter(id__in=[invoice.id, other.id], status="APPROVED").count() == 0
    approved = (await gql(s3_client, APPROVE, {"ids": ids[:1], "ack": [*others, "INCOMPLETE_DATA"]}, world.tokens["owner"]))["data"][
        "approveInvoices"
    ]
    assert approved["results"][0]["invoice"]["status"] == "APPROVED", approved


async def test_the_scheduled_close_comes_as_soon_as_the_data_is_complete(s3_client, world, redis, s3_settings, moto_s3, bucket):
    month = last_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, month)
    await settle(world.org.id, 0)
    now = datetime.combine(this_month().replace(day=2), datetime.min.time(), tzinfo=UTC)
    await close_due_periods({"redis": redis, "settings": s3_settings}, now=now)
    period = await BillingPeriod.get(organization_id=world.org.id, start_date=month)
    assert (period.state, period.forced_at, period.incomplete_at_close) == ("CLOSED", None, [])
    invoice = await generated(world, month)
    checks = await gql(
        s3_client,
        """query($id: ID!) { node(id: $id) { ... on Invoice { checks { code } } } }""",
        {"id": to_base64("Invoice", str(invoice.id))},
        world.tokens["owner"],
    )
    assert "INCOMPLETE_DATA" not in {c["code"] for c in checks["data"]["node"]["checks"]}


async def test_closing_an_incomplete_month_needs_force_and_is_recorded(s3_client, world, redis, s3_settings, moto_s3, bucket):
    month = last_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, month)
    await settle(world.org.id, 720)
    owner = world.tokens["owner"]
    refused = (await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}"}, owner))["data"]["closeBillingPeriod"]
    assert (refused["__typename"], refused["code"], refused["field"]) == ("ValidationError", "DATA_INCOMPLETE", "force")
    assert "AWS billing (AWS) PARTIAL" in refused["message"]
    assert not await BillingPeriod.filter(organization_id=world.org.id, start_date=month).exists()
    assert await Invoice.filter(organization_id=world.org.id).count() == 0

    closed = (await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}", "force": True}, owner))["data"]["closeBillingPeriod"]
    assert closed["__typename"] == "BillingPeriodClosed" and closed["invoicesCreated"] == 2
    period = closed["billingPeriod"]
    assert (period["state"], period["completeness"], period["forcedBy"]) == (
        "CLOSED",
        "PARTIAL",
        world.users["owner"].name or world.users["owner"].email,
    )
    row = await BillingPeriod.get(organization_id=world.org.id, start_date=month)
    assert row.forced_by_id == world.users["owner"].id and abs(row.forced_at - datetime.now(UTC)) < timedelta(minutes=1)
    # Closing again changes nothing, and needs no force.
    again = (await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}"}, owner))["data"]["closeBillingPeriod"]
    assert again["__typename"] == "BillingPeriodClosed" and again["invoicesCreated"] == 0
    assert (await BillingPeriod.get(id=row.id)).forced_at == row.forced_at
    # A viewer may not force.
    assert error_codes(await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}", "force": True}, world.tokens["viewer"])) == ["FORBIDDEN"]


async def test_a_complete_month_closes_without_force_and_is_not_recorded_as_forced(s3_client, world, redis, s3_settings, moto_s3, bucket):
    month = last_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, month)
    await settle(world.org.id, 0)
    closed = (await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}", "force": True}, world.tokens["owner"]))["data"]["closeBillingPeriod"]
    assert closed["billingPeriod"] == {"state": "CLOSED", "completeness": "COMPLETE", "forcedAt": None, "forcedBy": None}


# ---------------------------------------------------------------- an account's own source


async def test_a_source_of_an_accounts_own_integration_imports_as_its_and_refuses_other_accounts_rows(
    s3_client,
    world,
    redis,
    s3_settings,
    moto_s3,
    bucket,
):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id="11353890204")
    await SubAccount.create(organization=world.org, managed_account=world.other_account, sub_account_id="18938484842")
    rows = period_rows("2024-09")
    own = [row for row in rows if row["SubAccountId"] == "11353890204"]
    deliver(moto_s3["s3"], bucket, "2024-09", own, execution="run-1")
    account_id = to_base64("ManagedAccount", str(world.account.id))
    created = await create(s3_client, world.tokens["owner"], source_input(bucket, moto_s3, accountId=account_id))
    assert created["__typename"] == "CostSourceSaved", created
    source_id = created["costSource"]["id"]
    listed = await gql(s3_client, "{ costSources { edges { node { account { name } } } } }", token=world.tokens["viewer"])
    assert listed["data"]["costSources"]["edges"][0]["node"]["account"] == {"name": "Contoso"}

    assert len((await sync(redis, s3_settings, source_id))["imported"]) == 1
    taken = await CostImport.get(cost_source_id=_raw(source_id))
    assert (taken.origin, taken.managed_account_id, taken.state) == (CostOrigin.ACCOUNT_INTEGRATION, world.account.id, "DONE")
    assert await CostRecord.filter(origin=CostOrigin.ACCOUNT_INTEGRATION, managed_account_id=world.account.id).count() == len(own)

    # A re-delivery holding Tailspin's rows is refused whole: Contoso's costs stay as they were.
    mixed = [row for row in rows if row["SubAccountId"] in ("11353890204", "18938484842")]
    deliver(moto_s3["s3"], bucket, "2024-09", mixed, execution="run-2")
    outcome = await sync(redis, s3_settings, source_id)
    assert len(outcome["refused"]) == 1, outcome
    failed = await CostImport.filter(cost_source_id=_raw(source_id), state="FAILED").get()
    assert "18938484842" in failed.error_message and "Contoso" in failed.error_message
    assert await CostRecord.filter(organization_id=world.org.id).count() == len(own)
    assert await CostRecord.filter(managed_account_id=world.other_account.id).count() == 0


async def test_an_accounts_source_names_an_account_of_the_organization(s3_client, world, moto_s3):
    foreign = to_base64("ManagedAccount", str(world.foreign_account.id))
    for account_id in (foreign, to_base64("ManagedAccount", str(uuid.uuid4())), "not-an-id"):
        answer = await create(s3_client, world.tokens["owner"], source_input("exports", moto_s3, accountId=account_id))
        assert (answer["__typename"], answer["field"]) == ("NotFoundError", "accountId")
    assert await CostSource.all().count() == 0


async def test_an_incomplete_source_of_one_account_warns_only_that_accounts_invoice(s3_client, world, redis, s3_settings, moto_s3, bucket):
    month = last_month()
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id="11353890204")
    deliver(
        moto_s3["s3"],
        bucket,
        f"{month:%Y-%m}",
        [row for row in month_rows(month) if row["SubAccountId"] == "11353890204"],
        execution="run-1",
    )
    source = (
        await create(
            s3_client, world.tokens["owner"], source_input(bucket, moto_s3, accountId=to_base64("ManagedAccount", str(world.account.id)))
        )
    )["costSource"]
    assert len((await sync(redis, s3_settings, source["id"]))["imported"]) == 1
    await settle(world.org.id, 720)
    closed = (await gql(s3_client, CLOSE, {"month": f"{month:%Y-%m}", "force": True}, world.tokens["owner"]))["data"]["closeBillingPeriod"]
    assert closed["__typename"] == "BillingPeriodClosed"
    query = """query($id: ID!) { node(id: $id) { ... on Invoice { checks { code } } } }"""
    codes = {}
    for account in (world.account, world.other_account):
        invoice = await generated(world, month, account)
        answer = await gql(s3_client, query, {"id": to_base64("Invoice", str(invoice.id))}, world.tokens["owner"])
        codes[account.name] = "INCOMPLETE_DATA" in {c["code"] for c in answer["data"]["node"]["checks"]}
    assert codes == {"Contoso": True, "Tailspin": False}


# ---------------------------------------------------------------- sync intervals


@pytest.mark.parametrize(
    "own_hours, state, failures, minutes_ago, due",
    [
        (None, "OK", 0, 61, False),
        (1, "OK", 0, 61, True),
        (1, "OK", 0, 50, False),
        (24, "OK", 0, 7 * 60, False),
        (24, "OK", 0, 24 * 60, True),
        # The back-off still starts at the retry time, and never waits longer than the organization's interval.
        (1, "FAILING", 1, 16, True),
        (1, "FAILING", 3, 59, False),
        (1, "FAILING", 30, 61, True),
        (24, "FAILING", 30, 7 * 60, False),
    ],
)
async def test_each_organization_syncs_its_sources_on_its_own_interval(
    client, world, redis, settings, moto_s3, own_hours, state, failures, minutes_ago, due
):
    await Organization.filter(id=world.org.id).update(cost_sync_hours=own_hours)
    source = (await create(client, world.tokens["owner"], source_input("exports", moto_s3)))["costSource"]
    # Another organization's source on the server's interval, synced as long ago, is not due.
    foreign = await CostSource.create(
        organization=world.foreign_org,
        name="Fabrikam",
        kind="AWS_S3",
        bucket="fabrikam",
        region="us-east-1",
        credentials="sealed",
        state="OK",
    )
    synced = datetime.now(UTC) - timedelta(minutes=minutes_ago, seconds=1)
    await CostSource.filter(id=_raw(source["id"])).update(state=state, failures=failures, last_sync_at=synced)
    await CostSource.filter(id=foreign.id).update(last_sync_at=synced)
    ctx = {"redis": redis, "settings": settings.model_copy(update={"cost_source_sync_hours": 6, "cost_source_retry_minutes": 15})}
    assert await sync_due_cost_sources(ctx) == int(due) + int(minutes_ago >= 6 * 60)
    assert await dispatch.is_held(redis, dispatch.cost_source_sync_job_id(_raw(source["id"]))) == due


async def test_the_cost_data_settings_are_checked_and_read_back(client, world):
    owner = world.tokens["owner"]
    answer = await gql(client, SETTINGS, {"input": {"costData": {"syncEveryHours": 2, "settleHours": 48, "latestCloseDay": 8}}}, owner)
    assert answer["data"]["updateOrganization"]["organization"]["costData"] == {"syncEveryHours": 2, "settleHours": 48, "latestCloseDay": 8}
    for wrong, field in (
        ({"syncEveryHours": 169}, "costData.syncEveryHours"),
        ({"settleHours": -1}, "costData.settleHours"),
        ({"latestCloseDay": 29}, "costData.latestCloseDay"),
        ({"latestCloseDay": 0}, "costData.latestCloseDay"),
    ):
        refused = (await gql(client, SETTINGS, {"input": {"costData": wrong, "name": "Renamed"}}, owner))["data"]["updateOrganization"]
        assert (refused["__typename"], refused["field"]) == ("ValidationError", field)
    back = await gql(client, SETTINGS, {"input": {"costData": {"syncEveryHours": 0}}}, owner)
    assert back["data"]["updateOrganization"]["organization"]["costData"] == {
        "syncEveryHours": None,
        "settleHours": 48,
        "latestCloseDay": 8,
    }
    organization = await Organization.get(id=world.org.id)
    assert (organization.name, organization.cost_sync_hours) == ("Northwind", None)
    read = "{ viewer { organization { costData { settleHours } } } }"
    assert (await gql(client, read, token=world.tokens["viewer"]))["data"]["viewer"]["organization"]["costData"] == {"settleHours": 48}
    assert error_codes(await gql(client, read, token=world.tokens["customer"])) == ["FORBIDDEN"]
    assert error_codes(await gql(client, SETTINGS, {"input": {"costData": {"settleHours": 1}}}, world.tokens["viewer"])) == ["FORBIDDEN"]


async def test_the_command_line_shows_completeness_and_closes_an_incomplete_month_only_with_force(
    s3_client, world, redis, s3_settings, moto_s3, bucket
):
    from rich.console import Console

    from invoicing.cli.billing import _close_period, _completeness

    month = last_month()
    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, month)
    await settle(world.org.id, 720)
    console = Console(record=True, width=200)
    console.print(await _completeness(month, "Northwind"))
    shown = console.export_text()
    assert f"{month:%Y-%m}: PARTIAL" in shown and "AWS billing" in shown and "PARTIAL" in shown.split("AWS billing")[1]

    with pytest.raises(ValidationFailed) as refused:
        await _close_period(month, "Northwind", False)
    assert refused.value.code == ErrorCode.DATA_INCOMPLETE
    assert not await BillingPeriod.filter(organization_id=world.org.id, start_date=month).exists()
    assert await _close_period(month, "Northwind", True) == 2
    period = await BillingPeriod.get(organization_id=world.org.id, start_date=month)
    assert (period.forced_by_id, period.forced_by_label) == (None, "cli")
    console.print(await _completeness(month, "Northwind"))
    assert "closed before complete" in console.export_text()


async def test_the_completeness_of_many_periods_takes_one_query(s3_client, world, redis, s3_settings, moto_s3, bucket):
    from tests.graphql import gql_counted

    await aws_source(s3_client, world, redis, s3_settings, moto_s3, bucket, last_month())
    token = world.tokens["owner"]
    query = "{ billingPeriods(first: 100) { edges { node { month completeness sourceCompleteness { state } } } } }"

    async def statements(months: int) -> list[str]:
        for number in range(1, months + 1):
            await period_of(world, date(2024, number, 1))
        await gql(s3_client, "{ viewer { scope } }", token=token)  # the token's use is recorded once
        result, ran = await gql_counted(s3_client, query, token=token)
        assert len(result["data"]["billingPeriods"]["edges"]) == months
        assert {edge["node"]["completeness"] for edge in result["data"]["billingPeriods"]["edges"]} == {"MISSING"}
        return [statement for statement in ran if "cost_delivery_scopes" in statement]

    assert len(await statements(2)) == len(await statements(6)) == 1
