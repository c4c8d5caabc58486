"""Cost records over GraphQL: the scope matrix of `costs`, node/nodes and `importCosts`
(a real GraphQL multipart request of the FinOps Foundation's FOCUS sample); filters, order,
totals per currency; refused files with nothing written; no N+1 queries."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from models import CostImport, CostRecord, Invoice, SubAccount
from models.actors import Actor
from models.billing_periods import close_period
from models.costs import CostOrigin, import_costs
from models.currencies import round_money
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.tables import InvoiceStatus
from schema.core.scalars import plain
from tests import factories as f
from tests.graphql import StatementCounter as _Counter
from tests.graphql import error_codes, gql
from tests.test_costs_import import AWS_BIG, AWS_SECOND, AZURE, ORACLE, SAMPLE, account_rows, sample_rows, to_csv

COST_FIELDS = """id billingMonth chargePeriodStart chargePeriodEnd providerName publisherName invoiceIssuerName
  billingAccountId billingAccountName subAccountId subAccountName billedCost billingCurrency effectiveCost
  listCost listUnitPrice contractedCost contractedUnitPrice consumedQuantity consumedUnit pricingQuantity
  pricingUnit pricingCategory serviceName serviceCategory chargeCategory chargeClass chargeDescription
  chargeFrequency regionId regionName availabilityZone resourceId resourceName resourceType skuId skuPriceId
  tags extra origin account { name }"""
COSTS = """query($accountId: ID, $period: Month, $first: Int, $after: String, $last: Int, $before: String,
  $filter: CostRecordFilter, $order: CostRecordOrder) {
  costs(accountId: $accountId, period: $period, first: $first, after: $after, last: $last, before: $before,
        filter: $filter, orderBy: $order) {
    totalCount totals { currency billedCost rows } pageInfo { hasNextPage endCursor }
    edges { node { %s } } } }""" % COST_FIELDS
NODE = "query($id: ID!) { node(id: $id) { ... on CostRecord { subAccountId billedCost } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on CostRecord { subAccountId } } }"
IMPORT = """mutation($file: Upload!, $origin: CostOrigin! = MSP_DELEGATED, $accountId: ID) {
  importCosts(file: $file, origin: $origin, accountId: $accountId, wait: true) { __typename
  ... on CostsImported { origin account { name } rows inserted duplicates
    unmatchedSubAccounts { subAccountId subAccountName providerName currency rows billedCost }
    totals { account { name } billingMonth currency rows billedCost } }
  ... on CostFileRejectedError { line column }
  ... on UserError { code field message } } }"""

ROLES = ("owner", "viewer", "customer", "other_customer", "foreign_owner")
MSP = ("owner", "viewer")


def account_gid(account) -> str:
    return to_base64("ManagedAccount", str(account.id))


def cost_gid(record) -> str:
    return to_base64("CostRecord", str(record.id))


async def upload(client, token, data: bytes, filename="focus.csv", query=IMPORT, **variables):
    """`importCosts` as the GraphQL multipart request spec says: an `operations` part whose
    file variable is null, a `map` part pointing file part "0" at it, then the file."""
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": query, "variables": {"file": None, **variables}}),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": (filename, data, "text/csv")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _costs(world):
    """The sample in `org` (Contoso claims AWS_BIG, Tailspin AZURE); ten rows of it in
    `foreign_org`, whose Litware claims AWS_BIG there."""
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    await SubAccount.create(organization=world.org, managed_account=world.other_account, sub_account_id=AZURE)
    await SubAccount.create(organization=world.foreign_org, managed_account=world.foreign_account, sub_account_id=AWS_BIG)
    await import_costs(world.org.id, SAMPLE.read_bytes())
    header, rows = sample_rows()
    await import_costs(world.foreign_org.id, to_csv(header, rows[:10]))


def _sum(rows) -> Decimal:
    return sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0))


def _plain(value: Decimal) -> str:
    """A decimal as the API writes it: no trailing zeros, no exponent."""
    return str(plain(value))


# ---------------------------------------------------------------- queries


@pytest.mark.parametrize("role", ROLES)
async def test_costs_scope_matrix(client, world, role):
    await _costs(world)
    _, rows = sample_rows()
    result = await gql(client, COSTS, {"first": 3}, token=world.tokens[role])
    if role in ("customer", "other_customer"):
        assert error_codes(result) == ["FORBIDDEN"]
        assert result["data"] is None
        return
    assert "errors" not in result, result
    page = result["data"]["costs"]
    expected = rows if role in MSP else rows[:10]
    assert page["totalCount"] == len(expected)
    assert page["totals"] == [{"currency": "USD", "billedCost": _plain(_sum(expected)), "rows": len(expected)}]
    # Costs of another organization are never listed, whatever the filter.
    other_org_account = world.foreign_account if role in MSP else world.account
    filtered = await gql(client, COSTS, {"accountId": account_gid(other_org_account)}, token=world.tokens[role])
    assert filtered["data"]["costs"]["totalCount"] == 0
    assert filtered["data"]["costs"]["totals"] == []


async def test_costs_needs_a_token(client, world):
    assert error_codes(await gql(client, COSTS)) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("role", ROLES)
async def test_cost_node_and_nodes_scope_matrix(client, world, role):
    await _costs(world)
    own = await CostRecord.filter(organization_id=world.org.id).order_by("id").first()
    foreign = await CostRecord.filter(organization_id=world.foreign_org.id).order_by("id").first()
    ids = [cost_gid(own), cost_gid(foreign), to_base64("CostRecord", "007"), to_base64("CostRecord", "x"),
           to_base64("CostRecord", "99999999999999999999")]
    visible = {"owner": own, "viewer": own, "foreign_owner": foreign}.get(role)
    expected = [r.sub_account_id if r == visible else None for r in (own, foreign)] + [None, None, None]
    token = world.tokens[role]
    singles = [(await gql(client, NODE, {"id": i}, token=token))["data"]["node"] for i in ids]
    many = (await gql(client, NODES, {"ids": ids}, token=token))["data"]["nodes"]
    for answers in (singles, many):
        assert [a["subAccountId"] if a else None for a in answers] == expected
    if visible is not None:
        assert singles[[own, foreign].index(visible)]["billedCost"] == _plain(visible.billed_cost)


async def test_a_cost_record_shows_its_focus_columns_as_they_came(client, world):
    await _costs(world)
    _, rows = sample_rows()
    # The second row of the file: AWS, tagged, of a sub-account nobody claims.
    row = rows[1]
    record = await CostRecord.get(organization_id=world.org.id, resource_id=row["ResourceId"], sku_id=row["SkuId"])
    query = "query($id: ID!) { node(id: $id) { ... on CostRecord { %s } } }" % COST_FIELDS
    node = (await gql(client, query, {"id": cost_gid(record)}, token=world.tokens["owner"]))["data"]["node"]
    assert node["id"] == cost_gid(record)
    assert node["billingMonth"] == "2024-09"
    assert node["chargePeriodStart"] == "2024-09-30T22:00:00+00:00"
    assert node["chargePeriodEnd"] == "2024-09-30T23:00:00+00:00"
    assert (node["providerName"], node["publisherName"], node["invoiceIssuerName"]) == (
        "AWS", "Amazon Web Services, Inc.", "Amazon Web Services, Inc.",
    )
    assert (node["billingAccountId"], node["billingAccountName"]) == ("1234567890123", "SunBird")
    assert (node["subAccountId"], node["subAccountName"]) == ("43883916739", "Zenith Eclipse")
    assert node["billedCost"] == "0.0000160599" and node["billingCurrency"] == "USD"
    assert (node["effectiveCost"], node["listCost"], node["listUnitPrice"]) == ("0", "0.0000160599", "0.008")
    assert (node["contractedCost"], node["contractedUnitPrice"]) == ("0", "0")
    assert (node["consumedQuantity"], node["consumedUnit"]) == ("0.00200749", "LCU-Hours")
    assert (node["pricingQuantity"], node["pricingUnit"], node["pricingCategory"]) == ("0.00200749", "LCU-Hours", "Standard")
    assert (node["serviceName"], node["serviceCategory"]) == ("Elastic Load Balancing", "Networking")
    assert (node["chargeCategory"], node["chargeClass"], node["chargeFrequency"]) == ("Usage", None, "Usage-Based")
    assert node["chargeDescription"] == row["ChargeDescription"]
    assert (node["regionId"], node["regionName"], node["availabilityZone"]) == ("us-west-2", "US West (Oregon)", None)
    assert (node["resourceName"], node["resourceType"]) == (None, None)
    assert (node["skuId"], node["skuPriceId"]) == ("2ETY8Y426S4237JU", "2ETY8Y426S4237JU.JRTCKXETXF.6YS6EN2CT7")
    assert node["tags"] == {"application": "BrightLensMatrix", "environment": "dev", "business_unit": "ViennaAI"}
    assert node["extra"]["Id"] == "19384"
    assert node["account"] is None


async def test_filters_order_totals_and_pages(client, world, settings):
    await _costs(world)
    header, rows = sample_rows()
    # Three rows again in EUR: new rows (another currency), for totals of two currencies. They
    # come from a billing account of their own: a delivery replaces its billing account's month.
    euro = [{**r, "BillingCurrency": "EUR", "BillingAccountId": "eur-billing"} for r in rows[:3]]
    await import_costs(world.org.id, to_csv(header, euro))
    token = world.tokens["owner"]

    async def costs(**variables):
        result = await gql(client, COSTS, {"first": 100, **variables}, token=token)
        assert "errors" not in result, result
        return result["data"]["costs"]

    def totals(selected):
        by_currency = defaultdict(list)
        for r in selected:
            by_currency[r["BillingCurrency"]].append(r)
        return [{"currency": c, "billedCost": _plain(_sum(rs)), "rows": len(rs)} for c, rs in sorted(by_currency.items())]

    everything = rows + euro
    assert (await costs())["totals"] == totals(everything)
    contoso = await costs(accountId=account_gid(world.account))
    assert contoso["totalCount"] == 225
    assert contoso["totals"] == totals([r for r in everything if r["SubAccountId"] == AWS_BIG])
    assert {e["node"]["account"]["name"] for e in contoso["edges"]} == {"Contoso"}
    assert (await costs(accountId="garbage"))["totalCount"] == 0
    assert (await costs(period="2024-10"))["totalCount"] == Counter(r["BillingPeriodStart"][:7] for r in everything)["2024-10"]
    assert (await costs(filter={"providers": ["Oracle", "Microsoft"]}))["totalCount"] == 58
    compute = [r for r in everything if r["ServiceCategory"] in ("Compute", "Storage")]
    assert (await costs(filter={"serviceCategories": ["Compute", "Storage"]}))["totals"] == totals(compute)
    claimed = [r for r in everything if r["SubAccountId"] in (AWS_BIG, AZURE)]
    assert (await costs(filter={"unassigned": False}))["totalCount"] == len(claimed)
    assert (await costs(filter={"unassigned": True}))["totalCount"] == len(everything) - len(claimed)
    oracle_unclaimed = await costs(filter={"unassigned": True, "providers": ["Oracle"]}, period="2024-09")
    assert {e["node"]["subAccountId"] for e in oracle_unclaimed["edges"]} >= {ORACLE}

    by_cost = await costs(order={"field": "BILLED_COST", "direction": "DESC"}, first=5)
    top = sorted((Decimal(r["BilledCost"]) for r in everything), reverse=True)[:5]
    assert [Decimal(e["node"]["billedCost"]) for e in by_cost["edges"]] == top
    by_service = await costs(order={"field": "SERVICE_NAME", "direction": "ASC"}, first=3)
    assert [e["node"]["serviceName"] for e in by_service["edges"]] == sorted(r["ServiceName"] for r in everything)[:3]

    seen, after = [], None
    while True:
        page = (await gql(client, COSTS, {"first": 100, "after": after, "accountId": account_gid(world.account)},
                          token=token))["data"]["costs"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 225
    too_big = await gql(client, COSTS, {"first": settings.max_page_size + 1}, token=token)
    assert error_codes(too_big) == ["BAD_USER_INPUT"]




async def test_the_account_of_each_row_is_loaded_once_per_page(client, world):
    await _costs(world)
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    counts = []
    for first in (2, 100):
        logger = logging.getLogger("tortoise.db_client")
        counter = _Counter()
        logger.addHandler(counter)
        old_level = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            result = await gql(
                client, "query($first: Int) { costs(first: $first, filter: {unassigned: false}) "
                "{ totals { rows } edges { node { account { name billingProfile { nickname } } } } } }",
                {"first": first}, token=token,
            )
        finally:
            logger.removeHandler(counter)
            logger.setLevel(old_level)
        assert len(result["data"]["costs"]["edges"]) == first
        counts.append(len(counter.statements))
    assert counts[0] == counts[1]


# ---------------------------------------------------------------- importCosts


@pytest.mark.parametrize("role", ROLES)
async def test_import_costs_scope_matrix(client, world, role):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    result = await upload(client, world.tokens[role], SAMPLE.read_bytes())
    if role in ("viewer", "customer", "other_customer"):
        assert error_codes(result) == ["FORBIDDEN"]
        assert await CostImport.all().count() == await CostRecord.all().count() == 0
        return
    payload = result["data"]["importCosts"]
    assert payload["__typename"] == "CostsImported", payload
    assert (payload["origin"], payload["account"]) == ("MSP_DELEGATED", None)
    assert (payload["rows"], payload["inserted"], payload["duplicates"]) == (1000, 1000, 0)
    organization_id = world.users[role].organization_id
    assert await CostRecord.filter(organization_id=organization_id).count() == 1000
    assert await CostRecord.all().count() == 1000
    cost_import = await CostImport.get()
    assert (cost_import.imported_by_id, cost_import.filename) == (world.users[role].id, "focus.csv")
    # Only the importing organization's mapping applies: Contoso is Northwind's.
    claimed = await CostRecord.exclude(managed_account_id=None).count()
    assert claimed == (225 if role == "owner" else 0)


async def test_import_reports_unmatched_sub_accounts_and_totals_and_a_second_import_inserts_nothing(client, world):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    _, rows = sample_rows()
    token = world.tokens["owner"]
    first = (await upload(client, token, SAMPLE.read_bytes()))["data"]["importCosts"]

    unmatched = {u["subAccountId"]: u for u in first["unmatchedSubAccounts"]}
    assert len(unmatched) == 72 and AWS_BIG not in unmatched
    second = [r for r in rows if r["SubAccountId"] == AWS_SECOND]
    assert unmatched[AWS_SECOND] == {
        "subAccountId": AWS_SECOND, "subAccountName": second[0]["SubAccountName"], "providerName": "AWS",
        "currency": "USD", "rows": 215, "billedCost": _plain(_sum(second)),
    }
    contoso = [r for r in rows if r["SubAccountId"] == AWS_BIG]
    assert {"account": {"name": "Contoso"}, "billingMonth": "2024-09", "currency": "USD", "rows": 225,
            "billedCost": _plain(_sum(contoso))} in first["totals"]
    assert sum(t["rows"] for t in first["totals"]) == 1000

    again = (await upload(client, token, SAMPLE.read_bytes()))["data"]["importCosts"]
    assert (again["rows"], again["inserted"], again["duplicates"]) == (1000, 0, 1000)
    assert again["totals"] == first["totals"]
    assert await CostRecord.all().count() == 1000


async def test_a_malformed_file_is_rejected_with_its_line_and_nothing_is_written(client, world):
    header, rows = sample_rows()
    await import_costs(world.org.id, to_csv(header, rows[:5]))
    before = await CostImport.all().count(), await CostRecord.all().count()
    rows[700]["BilledCost"] = "12,34"
    result = await upload(client, world.tokens["owner"], to_csv(header, rows))
    payload = result["data"]["importCosts"]
    assert (payload["__typename"], payload["code"], payload["line"], payload["column"], payload["field"]) == (
        "CostFileRejectedError", "INVALID_COST_FILE", 702, "BilledCost", "file",
    )
    assert payload["message"].startswith("line 702: BilledCost '12,34' is not a number")
    # No cost is written; the refused delivery stays on record, FAILED with its reason.
    assert await CostRecord.all().count() == before[1]
    assert await CostImport.all().count() == before[0] + 1
    failed = await CostImport.all().order_by("-created_at").first()
    assert failed is not None and (failed.state, failed.error_line, failed.error_column) == ("FAILED", 702, "BilledCost")


@pytest.mark.parametrize("data,line,message", [
    (b"", 1, "line 1: the file is empty"),
    (b"just,some,csv\n1,2,3\n", 1, "line 1: missing required columns BilledCost"),
    # Not UTF-8: refused by the importer's decoding, with the line of the first bad byte.
    ("AvailabilityZone,BilledCost\n\xe9t\xe9,1\n".encode("latin-1"), 2, "line 2: the file is not UTF-8 text"),
])
async def test_files_that_are_not_focus_are_rejected_and_nothing_is_written(client, world, data, line, message):
    result = await upload(client, world.tokens["owner"], data)
    payload = result["data"]["importCosts"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("CostFileRejectedError", "INVALID_COST_FILE", "file")
    assert payload["line"] == line and payload["message"].startswith(message)
    assert await CostRecord.all().count() == 0
    assert await CostImport.filter(state="FAILED").count() == await CostImport.all().count() == 1, "kept, FAILED"


async def test_a_file_over_the_upload_cap_is_refused_unread(client, world, settings, monkeypatch):
    data = SAMPLE.read_bytes()
    monkeypatch.setattr(settings, "max_upload_bytes", len(data) - 1)
    result = await upload(client, world.tokens["owner"], data)
    payload = result["data"]["importCosts"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("ValidationError", "INVALID", "file")
    assert await CostImport.all().count() == await CostRecord.all().count() == 0
    monkeypatch.setattr(settings, "max_upload_bytes", len(data))
    accepted = await upload(client, world.tokens["owner"], data)
    assert accepted["data"]["importCosts"]["inserted"] == 1000


@pytest.mark.parametrize("role", ROLES)
async def test_import_costs_of_an_account_integration_scope_matrix(client, world, role):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AZURE)
    result = await upload(
        client, world.tokens[role], account_rows(AZURE),
        origin="ACCOUNT_INTEGRATION", accountId=account_gid(world.account),
    )
    if role in ("viewer", "customer", "other_customer"):
        assert error_codes(result) == ["FORBIDDEN"]
    elif role == "foreign_owner":  # Contoso is Northwind's: not found, as if it did not exist
        payload = result["data"]["importCosts"]
        assert (payload["__typename"], payload["code"], payload["field"]) == ("NotFoundError", "NOT_FOUND", "accountId")
    else:
        payload = result["data"]["importCosts"]
        assert payload["__typename"] == "CostsImported", payload
        assert (payload["origin"], payload["account"], payload["inserted"]) == (
            "ACCOUNT_INTEGRATION", {"name": "Contoso"}, 45
        )
        cost_import = await CostImport.get()
        assert (cost_import.origin, cost_import.managed_account_id) == ("ACCOUNT_INTEGRATION", world.account.id)
        return
    assert await CostImport.all().count() == await CostRecord.all().count() == 0


async def test_costs_show_each_rows_origin(client, world):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AZURE)
    token = world.tokens["owner"]
    await upload(client, token, account_rows(AZURE), origin="ACCOUNT_INTEGRATION", accountId=account_gid(world.account))
    await upload(client, token, account_rows(ORACLE))

    result = await gql(client, COSTS, {"first": 100}, token=token)

    origins = Counter((e["node"]["origin"], e["node"]["subAccountId"]) for e in result["data"]["costs"]["edges"])
    assert origins == {("ACCOUNT_INTEGRATION", AZURE): 45, ("MSP_DELEGATED", ORACLE): 3}


async def test_an_account_integration_file_with_another_accounts_row_is_rejected_with_its_line(client, world):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AZURE)
    await SubAccount.create(organization=world.org, managed_account=world.other_account, sub_account_id=ORACLE)
    header, rows = sample_rows()
    result = await upload(
        client, world.tokens["owner"], to_csv(header, [r for r in rows if r["SubAccountId"] in (AZURE, ORACLE)]),
        origin="ACCOUNT_INTEGRATION", accountId=account_gid(world.account),
    )
    payload = result["data"]["importCosts"]
    first_foreign = 2 + [r["SubAccountId"] for r in rows if r["SubAccountId"] in (AZURE, ORACLE)].index(ORACLE)
    assert (payload["__typename"], payload["line"], payload["column"]) == (
        "CostFileRejectedError", first_foreign, "SubAccountId",
    )
    assert payload["message"].startswith(f"line {first_foreign}: sub-account {ORACLE} is not one of Contoso's")
    assert await CostRecord.all().count() == 0
    assert await CostImport.filter(state="FAILED").count() == await CostImport.all().count() == 1, "kept, FAILED"


@pytest.mark.parametrize("variables", [{"origin": "ACCOUNT_INTEGRATION"}, {"accountId": "account"}])
async def test_only_an_account_integration_names_an_account(client, world, variables):
    variables = {name: account_gid(world.account) if value == "account" else value for name, value in variables.items()}
    result = await upload(client, world.tokens["owner"], account_rows(AZURE), **variables)
    payload = result["data"]["importCosts"]
    assert (payload["__typename"], payload["field"]) == ("ValidationError", "accountId")
    assert await CostImport.all().count() == await CostRecord.all().count() == 0


LATE_IMPORT = """mutation($file: Upload!) { importCosts(file: $file, wait: true) { __typename
  ... on CostsImported { costImport { id late lateCosts { billingMonth currency difference account { id name } } } }
  ... on UserError { code message } } }"""
LATE_IMPORTS = """{ costImports(first: 10) { edges { node { late lateCosts { difference account { id name } } } } } }"""


@pytest.mark.parametrize("role", ("owner", "viewer"))
async def test_a_late_cost_names_its_account_in_the_import_and_the_list(client, world, role):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    header, rows = sample_rows()
    await import_costs(world.org.id, to_csv(header, rows))
    period = await f.billing_period(world.org, date(2024, 9, 1))
    await f.generated_invoice(world.account, period, status=InvoiceStatus.APPROVED, number="INV-2024-0001")
    restated = next(i for i, row in enumerate(rows)
                    if row["SubAccountId"] == AWS_BIG and row["BillingPeriodStart"].startswith("2024-09"))
    rows[restated]["BilledCost"] = str(Decimal(rows[restated]["BilledCost"]) + Decimal("1.25"))

    result = await upload(client, world.tokens["owner"], to_csv(header, rows), query=LATE_IMPORT)

    payload = result["data"]["importCosts"]
    assert payload["__typename"] == "CostsImported", result
    expected = {"difference": "1.25", "account": {"id": account_gid(world.account), "name": "Contoso"}}
    (late,) = payload["costImport"]["lateCosts"]
    assert (late["billingMonth"], late["currency"]) == ("2024-09", "USD")
    assert {"difference": late["difference"], "account": late["account"]} == expected
    listed = await gql(client, LATE_IMPORTS, token=world.tokens[role])
    assert "errors" not in listed, listed
    entries = [e for edge in listed["data"]["costImports"]["edges"] for e in edge["node"]["lateCosts"]]
    assert entries == [expected]


@pytest.mark.parametrize("role", ("customer", "other_customer", "foreign_owner"))
async def test_late_costs_are_not_shown_outside_the_msp(client, world, role):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=AWS_BIG)
    header, rows = sample_rows()
    await import_costs(world.org.id, to_csv(header, rows))
    period = await f.billing_period(world.org, date(2024, 9, 1))
    await f.generated_invoice(world.account, period, status=InvoiceStatus.APPROVED, number="INV-2024-0001")
    rows[0]["BilledCost"] = str(Decimal(rows[0]["BilledCost"]) + 1)
    await import_costs(world.org.id, to_csv(header, rows))

    listed = await gql(client, LATE_IMPORTS, token=world.tokens[role])

    if role == "foreign_owner":
        assert listed["data"]["costImports"]["edges"] == []
    else:
        assert error_codes(listed) == ["FORBIDDEN"]


DRILL = """query($accountId: ID, $period: Month, $filter: CostRecordFilter) {
  costs(accountId: $accountId, period: $period, first: 100, filter: $filter) {
    totalCount totals { currency billedCost rows }
    edges { node { origin invoiced subAccountId providerName serviceName serviceCategory billedCost } } } }"""
DELEGATED = ("10961396247", "15196455530")  # 6 and 10 rows, the MSP's export


async def _own_integration_costs(world):
    """Contoso (includeAccountIntegrations off) has DELEGATED's rows from the MSP's export and
    AZURE's from its own integration; ORACLE's rows are nobody's; Litware (another
    organization) has DELEGATED's rows too."""
    for sub_account in (*DELEGATED, AZURE):
        await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id=sub_account)
    await SubAccount.create(organization=world.foreign_org, managed_account=world.foreign_account, sub_account_id=DELEGATED[0])
    await import_costs(world.org.id, account_rows(*DELEGATED, ORACLE))
    await import_costs(world.org.id, account_rows(AZURE), origin=CostOrigin.ACCOUNT_INTEGRATION, account_id=world.account.id)
    await import_costs(world.foreign_org.id, account_rows(DELEGATED[0]))


def _rows_of(*sub_accounts):
    _, rows = sample_rows()
    return [row for row in rows if row["SubAccountId"] in sub_accounts]


async def test_the_drill_down_says_what_the_invoice_counts_and_sums_what_it_bills(client, world):
    await _own_integration_costs(world)
    token, contoso = world.tokens["owner"], account_gid(world.account)
    variables = {"accountId": contoso, "period": "2024-09"}

    every = (await gql(client, DRILL, variables, token=token))["data"]["costs"]
    invoiced = (await gql(client, DRILL, {**variables, "filter": {"invoiced": True}}, token=token))["data"]["costs"]
    left_out = (await gql(client, DRILL, {**variables, "filter": {"invoiced": False}}, token=token))["data"]["costs"]

    delegated, own = _rows_of(*DELEGATED), _rows_of(AZURE)
    assert every["totalCount"] == len(delegated) + len(own)
    assert Counter((e["node"]["origin"], e["node"]["invoiced"]) for e in every["edges"]) == {
        ("MSP_DELEGATED", True): len(delegated), ("ACCOUNT_INTEGRATION", False): len(own)}
    assert invoiced["totals"] == [{"currency": "USD", "billedCost": _plain(_sum(delegated)), "rows": len(delegated)}]
    assert {e["node"]["invoiced"] for e in invoiced["edges"]} == {True}
    assert left_out["totals"] == [{"currency": "USD", "billedCost": _plain(_sum(own)), "rows": len(own)}]
    # Without an account, the rows nobody claims are left out too.
    unclaimed = (await gql(client, DRILL, {"period": "2024-09", "filter": {"invoiced": False, "unassigned": True}},
                           token=token))["data"]["costs"]
    assert unclaimed["totalCount"] == len(_rows_of(ORACLE))
    assert {e["node"]["invoiced"] for e in unclaimed["edges"]} == {False}

    # The invoice bills exactly the invoiced rows: each usage line is their group's sum, rounded.
    await close_period(world.org.id, date(2024, 9, 1), Actor.system("test"))
    draft = await compute(await load_context((await Invoice.get(managed_account_id=world.account.id)).id))
    groups: dict[tuple, Decimal] = defaultdict(Decimal)
    for edge in invoiced["edges"]:
        node = edge["node"]
        groups[(node["providerName"], node["serviceName"], node["serviceCategory"])] += Decimal(node["billedCost"])
    billed = sorted(round_money(total, "USD") for total in groups.values() if total)
    assert sorted(line.amount for line in draft.usage) == billed
    assert draft.subtotal == sum(billed, Decimal(0))

    # Once the account includes its integrations, every row of it is invoiced.
    world.account.include_account_integrations = True
    await world.account.save()
    now = (await gql(client, DRILL, {**variables, "filter": {"invoiced": True}}, token=token))["data"]["costs"]
    assert now["totalCount"] == every["totalCount"]
    assert {e["node"]["invoiced"] for e in now["edges"]} == {True}


@pytest.mark.parametrize("role", ROLES)
async def test_the_invoiced_filter_scope_matrix(client, world, role):
    await _own_integration_costs(world)
    variables = {"accountId": account_gid(world.account), "period": "2024-09", "filter": {"invoiced": True}}
    result = await gql(client, DRILL, variables, token=world.tokens[role])
    if role in ("customer", "other_customer"):
        assert error_codes(result) == ["FORBIDDEN"] and result["data"] is None
        return
    page = result["data"]["costs"]
    if role == "foreign_owner":  # Contoso is Northwind's: nothing, even where Litware has the same sub-account
        assert (page["totalCount"], page["totals"]) == (0, [])
        own = {**variables, "accountId": account_gid(world.foreign_account)}
        mine = (await gql(client, DRILL, own, token=world.tokens[role]))["data"]["costs"]
        assert mine["totalCount"] == len(_rows_of(DELEGATED[0]))
        assert {e["node"]["invoiced"] for e in mine["edges"]} == {True}
        return
    assert page["totalCount"] == len(_rows_of(*DELEGATED))
