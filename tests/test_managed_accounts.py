"""Managed accounts over GraphQL: the scope matrix of the list, node/nodes, the MSP-only
fields and both mutations; every validation error with nothing written; partial updates,
sub-account claims relinking costs; filters, order and pages; no N+1 queries."""

from __future__ import annotations

from datetime import date

import pytest
from strawberry.relay import to_base64

from models import CostRecord, ManagedAccount, SubAccount
from models.costs import import_costs
from tests import factories as f
from tests.graphql import error_codes, gql, gql_counted
from tests.test_costs_import import AWS_BIG, AWS_SECOND, SAMPLE

FIELDS = """id name contactEmail paymentTermsDays currency includeAccountIntegrations createdAt updatedAt
  billingProfile { nickname }
  billingInformation { officialCompanyName billingEmails poNumber
    address { line1 line2 line3 line4 city region postalCode country } }
  businessFields { key value }"""
LIST = """query($first: Int, $after: String, $last: Int, $before: String, $filter: ManagedAccountFilter,
  $order: ManagedAccountOrder) {
  managedAccounts(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    edges { cursor node { %s } } } }""" % FIELDS
NODE = "query($id: ID!) { node(id: $id) { ... on ManagedAccount { name } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on ManagedAccount { name } } }"
MSP_FIELDS = "query($id: ID!) { node(id: $id) { ... on ManagedAccount { name subAccountIds internalNotes } } }"
INVOICES = """query($id: ID!, $filter: InvoiceFilter) { node(id: $id) { ... on ManagedAccount {
  invoices(filter: $filter) { totalCount edges { node { number account { name } } } } } } }"""
ERROR = "... on UserError { __typename code field message }"
SAVED = "... on ManagedAccountSaved { managedAccount { %s subAccountIds internalNotes } }" % FIELDS
CREATE = """mutation($input: CreateManagedAccountInput!) { createManagedAccount(input: $input) {
  __typename %s %s } }""" % (SAVED, ERROR)
UPDATE = """mutation($id: ID!, $input: UpdateManagedAccountInput!) { updateManagedAccount(id: $id, input: $input) {
  __typename %s %s } }""" % (SAVED, ERROR)

ROLES = ("owner", "viewer", "customer", "other_customer", "foreign_owner")
WRITERS_DENIED = ("viewer", "customer", "other_customer")


def gid(account) -> str:
    return to_base64("ManagedAccount", str(account.id))


def profile_gid(profile) -> str:
    return to_base64("BillingProfile", str(profile.id))


def names(result) -> list[str]:
    return [edge["node"]["name"] for edge in result["data"]["managedAccounts"]["edges"]]


async def snapshot():
    """Everything the account tables hold, to prove a refused input wrote nothing."""
    accounts = await ManagedAccount.all().order_by("id").values()
    sub_accounts = await SubAccount.all().order_by("id").values()
    links = await CostRecord.all().order_by("id").values_list("id", "managed_account_id")
    return accounts, sub_accounts, links


# ---------------------------------------------------------------- queries


@pytest.mark.parametrize("role,visible", [
    ("owner", ["Contoso", "Tailspin"]), ("viewer", ["Contoso", "Tailspin"]),
    ("customer", ["Contoso"]), ("other_customer", ["Tailspin"]), ("foreign_owner", ["Litware"]),
])
async def test_managed_accounts_scope_matrix(client, world, role, visible):
    result = await gql(client, LIST, token=world.tokens[role])
    assert "errors" not in result
    assert names(result) == visible
    assert result["data"]["managedAccounts"]["totalCount"] == len(visible)
    profiles = [e["node"]["billingProfile"] for e in result["data"]["managedAccounts"]["edges"]]
    if role in ("owner", "viewer"):
        assert profiles == [{"nickname": world.profile.nickname}] * 2
    else:
        # Customers see no billing profile; Litware has none.
        assert profiles == [None]


async def test_managed_accounts_needs_a_token(client, world):
    assert error_codes(await gql(client, LIST)) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("role", ROLES)
async def test_node_and_nodes_scope_matrix(client, world, role):
    token = world.tokens[role]
    ids = [gid(world.account), gid(world.other_account), gid(world.foreign_account)]
    expected = {
        "owner": ["Contoso", "Tailspin", None], "viewer": ["Contoso", "Tailspin", None],
        "customer": ["Contoso", None, None], "other_customer": [None, "Tailspin", None],
        "foreign_owner": [None, None, "Litware"],
    }[role]
    singles = [(await gql(client, NODE, {"id": i}, token=token))["data"]["node"] for i in ids]
    many = (await gql(client, NODES, {"ids": ids}, token=token))["data"]["nodes"]
    for answers in (singles, many):
        assert [a["name"] if a else None for a in answers] == expected


@pytest.mark.parametrize("role", ROLES)
async def test_sub_account_ids_and_internal_notes_are_for_msp_users(client, world, role):
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id="222")
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id="111")
    await ManagedAccount.filter(id=world.account.id).update(internal_notes="Late payer")
    await ManagedAccount.filter(id=world.foreign_account.id).update(internal_notes="Fabrikam note")
    target = world.foreign_account if role == "foreign_owner" else (
        world.other_account if role == "other_customer" else world.account
    )
    result = await gql(client, MSP_FIELDS, {"id": gid(target)}, token=world.tokens[role])
    node = result["data"]["node"]
    if role in ("owner", "viewer"):
        assert "errors" not in result
        assert node == {"name": "Contoso", "subAccountIds": ["111", "222"], "internalNotes": "Late payer"}
    elif role == "foreign_owner":
        assert node == {"name": "Litware", "subAccountIds": [], "internalNotes": "Fabrikam note"}
    else:
        # The account itself is visible to its customer; the MSP's fields are refused.
        assert sorted(error_codes(result)) == ["FORBIDDEN", "FORBIDDEN"]
        assert node == {"name": target.name, "subAccountIds": None, "internalNotes": None}


async def _invoices(world):
    period = await f.billing_period(world.org)
    october = await f.billing_period(world.org, date(2024, 10, 1))
    await f.generated_invoice(world.account, period, number="INV-2024-0001", status="APPROVED")
    await f.generated_invoice(world.account, october, number="INV-2024-0002", status="AWAITING_APPROVAL")
    await f.generated_invoice(world.other_account, period, number="INV-2024-0003", status="APPROVED")
    foreign_period = await f.billing_period(world.foreign_org)
    await f.generated_invoice(world.foreign_account, foreign_period, number="INV-2024-0001", status="APPROVED")


@pytest.mark.parametrize("role,target,numbers", [
    ("owner", "account", ["INV-2024-0002", "INV-2024-0001"]),
    ("viewer", "account", ["INV-2024-0002", "INV-2024-0001"]),
    ("customer", "account", ["INV-2024-0001"]),
    ("other_customer", "account", None),
    ("foreign_owner", "account", None),
    ("foreign_owner", "foreign_account", ["INV-2024-0001"]),
    ("other_customer", "other_account", ["INV-2024-0003"]),
])
async def test_an_accounts_invoices_follow_the_invoice_scope(client, world, role, target, numbers):
    await _invoices(world)
    account = getattr(world, target)
    result = await gql(client, INVOICES, {"id": gid(account)}, token=world.tokens[role])
    assert "errors" not in result
    if numbers is None:
        assert result["data"]["node"] is None
        return
    page = result["data"]["node"]["invoices"]
    assert [e["node"]["number"] for e in page["edges"]] == numbers
    assert page["totalCount"] == len(numbers)
    assert {e["node"]["account"]["name"] for e in page["edges"]} == {account.name}


async def test_an_accounts_invoices_take_the_invoice_filters_within_the_account(client, world):
    await _invoices(world)
    token = world.tokens["owner"]

    async def numbers(filter):
        result = await gql(client, INVOICES, {"id": gid(world.account), "filter": filter}, token=token)
        return [e["node"]["number"] for e in result["data"]["node"]["invoices"]["edges"]]

    assert await numbers({"status": ["APPROVED"]}) == ["INV-2024-0001"]
    assert await numbers({"search": "0002"}) == ["INV-2024-0002"]
    # Naming only another account cannot widen the list beyond this account.
    assert await numbers({"accountIds": [gid(world.other_account)]}) == []
    assert await numbers({"accountIds": [gid(world.other_account), gid(world.account)]}) == [
        "INV-2024-0002", "INV-2024-0001",
    ]


async def test_filters_order_and_pages(client, world, settings):
    token = world.tokens["owner"]
    second = await f.billing_profile(world.org, nickname="Second")
    await f.managed_account(world.org, name="Alpine Ski", currency="EUR", billing_profile=second)
    await f.managed_account(world.org, name="Zephyr", currency="GBP", official_company_name="Contoso Holdings")
    await f.managed_account(world.org, name="Bluebird", contact_email="ap@bluebird.example")

    async def listed(**variables):
        result = await gql(client, LIST, variables, token=token)
        assert "errors" not in result, result
        return names(result)

    assert await listed() == ["Alpine Ski", "Bluebird", "Contoso", "Tailspin", "Zephyr"]
    assert await listed(order={"field": "NAME", "direction": "DESC"}) == [
        "Zephyr", "Tailspin", "Contoso", "Bluebird", "Alpine Ski",
    ]
    assert await listed(order={"field": "CREATED_AT", "direction": "ASC"}) == [
        "Contoso", "Tailspin", "Alpine Ski", "Zephyr", "Bluebird",
    ]
    assert await listed(filter={"search": "contoso"}) == ["Contoso", "Zephyr"]
    assert await listed(filter={"search": "BLUEBIRD.example"}) == ["Bluebird"]
    assert await listed(filter={"currencies": ["eur", "gbp"]}) == ["Alpine Ski", "Zephyr"]
    assert await listed(filter={"billingProfileIds": [profile_gid(second)]}) == ["Alpine Ski"]
    assert await listed(filter={"billingProfileIds": ["not-an-id"]}) == []
    assert await listed(filter={"hasBillingProfile": False}) == ["Bluebird", "Zephyr"]
    assert await listed(filter={"hasBillingProfile": True, "search": "a"}) == ["Alpine Ski", "Tailspin"]

    seen, after = [], None
    while True:
        page = (await gql(client, LIST, {"first": 2, "after": after}, token=token))["data"]["managedAccounts"]
        assert page["totalCount"] == 5
        seen += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["Alpine Ski", "Bluebird", "Contoso", "Tailspin", "Zephyr"]
    last = (await gql(client, LIST, {"last": 2}, token=token))["data"]["managedAccounts"]
    assert [e["node"]["name"] for e in last["edges"]] == ["Tailspin", "Zephyr"]
    too_big = await gql(client, LIST, {"first": settings.max_page_size + 1}, token=token)
    assert error_codes(too_big) == ["BAD_USER_INPUT"]




async def _statements_for_list(client, token):
    result, statements = await gql_counted(
        client,
        "{ managedAccounts(first: 50) { edges { node { name subAccountIds billingProfile { nickname "
        "taxesAndCharges { name } } invoices(first: 5) { totalCount } } } } }",
        token=token,
    )
    assert "errors" not in result, result
    return len(result["data"]["managedAccounts"]["edges"]), statements


async def test_nested_fields_do_not_query_per_account(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    count, few = await _statements_for_list(client, token)
    for i in range(10):
        profile = await f.billing_profile(world.org, nickname=f"P{i}")
        await f.managed_account(world.org, name=f"Extra {i}", billing_profile=profile, sub_accounts=[f"sub-{i}"])
    more, many = await _statements_for_list(client, token)
    assert (count, more) == (2, 12)

    def split(statements):
        nested_pages = [s for s in statements if 'FROM "invoices"' in s]
        return len(nested_pages), len(statements) - len(nested_pages)

    # Every relation is one query per level, however many accounts; the accounts' invoice
    # pages are one grouped COUNT and one windowed page query.
    assert split(few) == split(many)
    assert split(many)[0] == 2


PAGE = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id number status } }"
ARGS = "first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order"
VARIABLES = "$first: Int, $after: String, $last: Int, $before: String, $filter: InvoiceFilter, $order: InvoiceOrder"
NESTED = f"query({VARIABLES}) {{ managedAccounts(first: 50) {{ edges {{ node {{ id invoices({ARGS}) {{ {PAGE} }} }} }} }} }}"
ALONE = f"query({VARIABLES}) {{ invoices({ARGS}) {{ {PAGE} }} }}"


async def _account_invoices(world) -> None:
    """Invoices of every status in `world`, some without an issue date (READY_TO_INVOICE)."""
    months = [await f.billing_period(world.org, date(2024, m, 1)) for m in range(1, 6)]
    statuses = ["APPROVED", "AWAITING_APPROVAL", "VOIDED", "APPROVED"]
    for n, status in enumerate(statuses):
        await f.generated_invoice(
            world.account, months[n], number=f"INV-A-{n}", status=status, issue_date=date(2024, 7 - n % 2, 1)
        )
        if n % 2:
            await f.generated_invoice(world.other_account, months[n], number=f"INV-B-{n}", status=status)
    await f.invoice(world.account, months[4])
    await f.invoice(world.foreign_account, await f.billing_period(world.foreign_org))


def _cursor(position: int) -> str:
    return to_base64("cursor", position)


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_account_invoices_answer_as_the_invoice_list_of_each_account(client, world, role):
    await _account_invoices(world)
    token = world.tokens[role]
    cases = [
        {"first": 2}, {}, {"first": 0}, {"first": 2, "after": _cursor(0)}, {"first": 2, "after": _cursor(1)},
        {"first": 2, "after": _cursor(9)}, {"first": 2, "after": _cursor(-3)},
        {"first": 1, "order": {"field": "ISSUE_DATE", "direction": "ASC"}},
        {"first": 3, "order": {"field": "ISSUE_DATE", "direction": "DESC"}},
        {"first": 3, "after": _cursor(0), "order": {"field": "NUMBER", "direction": "ASC"}},
        {"first": 5, "filter": {"status": ["APPROVED", "VOIDED"]}},
        {"first": 5, "filter": {"search": "inv-a"}},
        {"first": 5, "filter": {"accountIds": [to_base64("ManagedAccount", str(world.other_account.id))]}},
        {"first": 5, "filter": {"accountIds": ["not-an-id"]}},
        # Counted from the end: fetched one account at a time, the same way.
        {"last": 2}, {"first": 3, "before": _cursor(2)}, {"last": 1, "after": _cursor(0)},
    ]
    for variables in cases:
        result = await gql(client, NESTED, variables, token=token)
        assert "errors" not in result, (variables, result)
        for edge in result["data"]["managedAccounts"]["edges"]:
            account = edge["node"]["id"]
            wanted = (variables.get("filter") or {}).get("accountIds")
            within = {**variables.get("filter", {}), "accountIds": [account] if wanted is None or account in wanted else []}
            alone = await gql(client, ALONE, {**variables, "filter": within}, token=token)
            assert edge["node"]["invoices"] == alone["data"]["invoices"], (variables, account)
    # What each scope sees through the accounts (Contoso's invoices, newest first).
    result = await gql(client, NESTED, {"first": 10}, token=token)
    seen = {
        edge["node"]["id"]: [e["node"]["number"] for e in edge["node"]["invoices"]["edges"]]
        for edge in result["data"]["managedAccounts"]["edges"]
    }
    contoso = seen.get(to_base64("ManagedAccount", str(world.account.id)))
    everything = [None, "INV-A-3", "INV-A-2", "INV-A-1", "INV-A-0"]
    assert contoso == {
        "owner": everything, "viewer": everything, "customer": ["INV-A-3", "INV-A-2", "INV-A-0"],
        "other_customer": None, "foreign_owner": None,
    }[role]


async def test_account_invoices_refuse_bad_pages_as_the_invoice_list_does(client, world, settings):
    token = world.tokens["owner"]
    for variables in ({"first": settings.max_page_size + 1}, {"first": -1}, {"first": 2, "after": "nonsense"}):
        assert error_codes(await gql(client, NESTED, variables, token=token)) == ["BAD_USER_INPUT"]
        assert error_codes(await gql(client, ALONE, variables, token=token)) == ["BAD_USER_INPUT"]


async def test_account_invoices_cost_the_same_statements_for_2_and_20_accounts(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    months = [await f.billing_period(world.org, date(2024, m, 1)) for m in range(1, 4)]

    async def with_invoices(account):
        for month in months:
            await f.invoice(account, month)

    query = f"""{{ managedAccounts(first: 50) {{ edges {{ node {{
        invoices(first: 2) {{ {PAGE} }} later: invoices(first: 2, after: "{_cursor(0)}") {{ {PAGE} }} }} }} }} }}"""

    async def statements(accounts: int) -> list[str]:
        result, statements = await gql_counted(client, query, token=token)
        edges = result["data"]["managedAccounts"]["edges"]
        assert len(edges) == accounts
        assert all(e["node"]["invoices"]["totalCount"] == 3 and len(e["node"]["later"]["edges"]) == 2 for e in edges)
        return [s for s in statements if 'FROM "invoices"' in s]

    await with_invoices(world.account)
    await with_invoices(world.other_account)
    few = await statements(2)
    for _ in range(18):
        await with_invoices(await f.managed_account(world.org))
    many = await statements(20)
    # A COUNT and a page per field (two fields), not per account.
    assert len(few) == len(many) == 4


# ---------------------------------------------------------------- mutations


FULL_INPUT = {
    "name": "  Initech  ",
    "contactEmail": " Peter@Initech.example ",
    "paymentTermsDays": 45,
    "currency": "eur",
    "includeAccountIntegrations": True,
    "officialCompanyName": "Initech LLC",
    "address": {"line1": "4120 Freidrich Lane", "city": "Austin", "region": "TX", "postalCode": "78744", "country": "USA"},
    "billingEmails": ["ap@initech.example, Bill@Initech.example", "AP@initech.example", "bill@initech.example"],
    "poNumber": "PO-7",
    "businessFields": [{"key": "Tax ID", "value": "US-123"}],
    "subAccountIds": [AWS_BIG, " " + AWS_SECOND + " "],
    "internalNotes": "Moved from the old system.",
}


@pytest.mark.parametrize("role", ROLES)
async def test_create_managed_account_scope_matrix(client, world, role):
    before = await snapshot()
    result = await gql(client, CREATE, {"input": {"name": "Initech"}}, token=world.tokens[role])
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert result["data"] is None
        assert await snapshot() == before
        return
    assert result["data"]["createManagedAccount"]["__typename"] == "ManagedAccountSaved"
    created = await ManagedAccount.get(name="Initech")
    assert created.organization_id == world.users[role].organization_id
    assert created.billing_profile_id is None and created.payment_terms_days == 30 and created.currency == "USD"


async def test_create_stores_every_field_normalized_and_claims_sub_accounts(client, world):
    org = world.org
    await import_costs(org.id, SAMPLE.read_bytes())
    result = await gql(
        client, CREATE, {"input": {**FULL_INPUT, "billingProfileId": profile_gid(world.profile)}},
        token=world.tokens["owner"],
    )
    saved = result["data"]["createManagedAccount"]
    assert saved["__typename"] == "ManagedAccountSaved", saved
    account = saved["managedAccount"]
    assert account["name"] == "Initech"
    assert account["contactEmail"] == "peter@initech.example"
    assert (account["paymentTermsDays"], account["currency"], account["includeAccountIntegrations"]) == (45, "EUR", True)
    assert account["billingProfile"] == {"nickname": world.profile.nickname}
    assert account["billingInformation"] == {
        "officialCompanyName": "Initech LLC",
        # Split at commas, lower-cased, each address once.
        "billingEmails": ["ap@initech.example", "bill@initech.example"],
        "poNumber": "PO-7",
        "address": {"line1": "4120 Freidrich Lane", "line2": "", "line3": "", "line4": "", "city": "Austin",
                    "region": "TX", "postalCode": "78744", "country": "USA"},
    }
    assert account["businessFields"] == [{"key": "Tax ID", "value": "US-123"}]
    assert account["subAccountIds"] == sorted([AWS_BIG, AWS_SECOND])
    assert account["internalNotes"] == "Moved from the old system."
    row = await ManagedAccount.get(name="Initech")
    # The cost rows already imported for the claimed sub-accounts now belong to it.
    assert await CostRecord.filter(managed_account_id=row.id).count() == 225 + 215


@pytest.mark.parametrize("role", ROLES)
async def test_update_managed_account_scope_matrix(client, world, role):
    before = await snapshot()
    result = await gql(
        client, UPDATE, {"id": gid(world.account), "input": {"poNumber": "PO-9"}}, token=world.tokens[role]
    )
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
        return
    payload = result["data"]["updateManagedAccount"]
    if role == "foreign_owner":
        # Another organization's account answers exactly like a missing one.
        assert payload == {"__typename": "NotFoundError", "code": "NOT_FOUND", "field": "id", "message": payload["message"]}
        assert await snapshot() == before
        return
    assert payload["managedAccount"]["billingInformation"]["poNumber"] == "PO-9"
    assert (await ManagedAccount.get(id=world.account.id)).po_number == "PO-9"


async def test_update_changes_only_what_is_given(client, world):
    await import_costs(world.org.id, SAMPLE.read_bytes())
    await ManagedAccount.filter(id=world.account.id).update(
        contact_email="ops@contoso.example", city="Seattle", billing_emails=["ap@contoso.example"], internal_notes="VIP"
    )
    first = await gql(client, UPDATE, {"id": gid(world.account), "input": {
        "name": "Contoso Ltd", "address": {"line1": "1 Main St"}, "subAccountIds": [AWS_BIG],
    }}, token=world.tokens["owner"])
    account = first["data"]["updateManagedAccount"]["managedAccount"]
    assert account["name"] == "Contoso Ltd"
    assert account["contactEmail"] == "ops@contoso.example"
    assert account["billingInformation"]["address"]["line1"] == "1 Main St"
    assert account["billingInformation"]["address"]["city"] == "Seattle"
    assert account["billingInformation"]["billingEmails"] == ["ap@contoso.example"]
    assert account["billingProfile"] == {"nickname": world.profile.nickname}
    assert account["internalNotes"] == "VIP" and account["subAccountIds"] == [AWS_BIG]
    assert await CostRecord.filter(managed_account_id=world.account.id).count() == 225

    # Null detaches the billing profile; an empty contact e-mail clears it; sub-accounts move.
    second = await gql(client, UPDATE, {"id": gid(world.account), "input": {
        "billingProfileId": None, "contactEmail": "", "subAccountIds": [AWS_SECOND],
    }}, token=world.tokens["owner"])
    account = second["data"]["updateManagedAccount"]["managedAccount"]
    assert account["billingProfile"] is None and account["contactEmail"] == ""
    assert account["name"] == "Contoso Ltd" and account["subAccountIds"] == [AWS_SECOND]
    assert await CostRecord.filter(managed_account_id=world.account.id).count() == 215
    assert await CostRecord.filter(sub_account_id=AWS_BIG, managed_account_id=None).count() == 225

    # A name may keep its own spelling with another case; the profile can be set again.
    third = await gql(client, UPDATE, {"id": gid(world.account), "input": {
        "name": "CONTOSO LTD", "billingProfileId": profile_gid(world.profile),
    }}, token=world.tokens["owner"])
    account = third["data"]["updateManagedAccount"]["managedAccount"]
    assert account["name"] == "CONTOSO LTD" and account["billingProfile"] == {"nickname": world.profile.nickname}


# Stand-ins for ids that exist only once `world` is built.
FOREIGN_PROFILE, ACCOUNT_AS_PROFILE = "<foreign profile>", "<an account id as profile id>"
INVALID = [
    ({"name": ""}, "ValidationError", "name"),
    ({"name": "   "}, "ValidationError", "name"),
    ({"name": "x" * 256}, "ValidationError", "name"),
    ({"name": "tailspin"}, "ValidationError", "name"),
    ({"contactEmail": "not-an-address"}, "ValidationError", "contactEmail"),
    ({"contactEmail": "a@b@c.example"}, "ValidationError", "contactEmail"),
    ({"contactEmail": "a b@c.example"}, "ValidationError", "contactEmail"),
    ({"contactEmail": "a@example"}, "ValidationError", "contactEmail"),
    ({"contactEmail": "a@" + "b" * 320 + ".example"}, "ValidationError", "contactEmail"),
    ({"contactEmail": "a\x00@c.example"}, "ValidationError", "contactEmail"),
    ({"billingEmails": ["ap@x.example", "nope"]}, "ValidationError", "billingEmails"),
    ({"billingEmails": ["ap\x07@x.example"]}, "ValidationError", "billingEmails"),
    ({"billingEmails": ["ap@x.example, nope@"]}, "ValidationError", "billingEmails"),
    ({"billingEmails": [", ".join(f"ap{i}@x.example" for i in range(21))]}, "ValidationError", "billingEmails"),
    ({"currency": "EURO"}, "ValidationError", "currency"),
    ({"currency": "XXX"}, "ValidationError", "currency"),
    ({"paymentTermsDays": -1}, "ValidationError", "paymentTermsDays"),
    ({"paymentTermsDays": 366}, "ValidationError", "paymentTermsDays"),
    ({"billingProfileId": FOREIGN_PROFILE}, "NotFoundError", "billingProfileId"),
    ({"billingProfileId": ACCOUNT_AS_PROFILE}, "NotFoundError", "billingProfileId"),
    ({"billingProfileId": "garbage"}, "NotFoundError", "billingProfileId"),
    ({"poNumber": "P" * 129}, "ValidationError", "poNumber"),
    ({"officialCompanyName": "C" * 256}, "ValidationError", "officialCompanyName"),
    ({"address": {"postalCode": "9" * 65}}, "ValidationError", "address.postalCode"),
    ({"businessFields": [{"key": " ", "value": "x"}]}, "ValidationError", "businessFields"),
    ({"businessFields": [{"key": "k", "value": "v" * 501}]}, "ValidationError", "businessFields"),
    ({"businessFields": [{"key": f"k{i}", "value": "v"} for i in range(51)]}, "ValidationError", "businessFields"),
    ({"internalNotes": "n" * 10_001}, "ValidationError", "internalNotes"),
    ({"internalNotes": "a\x00b"}, "ValidationError", "internalNotes"),
    ({"subAccountIds": ["ok", " "]}, "ValidationError", "subAccountIds"),
    ({"subAccountIds": ["s" * 513]}, "ValidationError", "subAccountIds"),
    ({"subAccountIds": ["a\x00b"]}, "ValidationError", "subAccountIds"),
    # Claimed by Tailspin: one sub-account's costs go to one customer.
    ({"subAccountIds": ["new-one", "tailspin-aws"]}, "ValidationError", "subAccountIds"),
]


async def _invalid_world(world, changes: dict) -> dict:
    """Give `world` what the refusals need (a foreign profile, claimed sub-accounts,
    imported costs), and the changes with their stand-ins replaced by real ids."""
    foreign_profile = await f.billing_profile(world.foreign_org, nickname="Fabrikam main")
    await SubAccount.create(organization=world.org, managed_account=world.other_account, sub_account_id="tailspin-aws")
    await SubAccount.create(organization=world.org, managed_account=world.account, sub_account_id="contoso-aws")
    await import_costs(world.org.id, SAMPLE.read_bytes())
    stand_ins = {FOREIGN_PROFILE: profile_gid(foreign_profile), ACCOUNT_AS_PROFILE: gid(world.other_account)}
    return {key: stand_ins.get(value, value) if isinstance(value, str) else value for key, value in changes.items()}


def _case_id(case) -> str:
    changes, _, field = case
    return f"{field}-{INVALID.index(case)}"


@pytest.mark.parametrize("changes,typename,field", INVALID, ids=[_case_id(c) for c in INVALID])
async def test_create_refuses_bad_input_and_writes_nothing(client, world, changes, typename, field):
    changes = await _invalid_world(world, changes)
    before = await snapshot()
    result = await gql(client, CREATE, {"input": {"name": "Initech", **changes}}, token=world.tokens["owner"])
    payload = result["data"]["createManagedAccount"]
    assert (payload["__typename"], payload["field"]) == (typename, field), payload
    assert await snapshot() == before


@pytest.mark.parametrize("changes,typename,field", INVALID, ids=[_case_id(c) for c in INVALID])
async def test_update_refuses_bad_input_and_writes_nothing(client, world, changes, typename, field):
    # Valid changes beside the bad one: none of them may be written either.
    changes = {"poNumber": "PO-1", "subAccountIds": [AWS_BIG], **await _invalid_world(world, changes)}
    before = await snapshot()
    result = await gql(client, UPDATE, {"id": gid(world.account), "input": changes}, token=world.tokens["owner"])
    payload = result["data"]["updateManagedAccount"]
    assert (payload["__typename"], payload["field"]) == (typename, field), payload
    assert await snapshot() == before


async def test_a_taken_sub_account_says_who_has_it(client, world):
    await _invalid_world(world, {})
    result = await gql(client, CREATE, {"input": {"name": "Initech", "subAccountIds": ["tailspin-aws"]}}, token=world.tokens["owner"])
    payload = result["data"]["createManagedAccount"]
    assert payload["code"] == "SUB_ACCOUNT_TAKEN"
    assert "tailspin-aws already belongs to Tailspin" in payload["message"]


async def test_update_of_an_unknown_or_malformed_id_is_not_found(client, world):
    ids = [
        to_base64("ManagedAccount", "8a0a4f59-5a8e-4a0c-9d4f-000000000000"),
        to_base64("BillingProfile", str(world.profile.id)),
        "garbage",
    ]
    before = await snapshot()
    for account_id in ids:
        result = await gql(client, UPDATE, {"id": account_id, "input": {"name": "X"}}, token=world.tokens["owner"])
        payload = result["data"]["updateManagedAccount"]
        assert (payload["__typename"], payload["field"]) == ("NotFoundError", "id")
    assert await snapshot() == before


async def test_a_name_is_required_on_create(client, world):
    result = await gql(client, CREATE, {"input": {"currency": "EUR"}}, token=world.tokens["owner"])
    assert error_codes(result) == ["BAD_USER_INPUT"] and result["data"] is None
    assert await ManagedAccount.all().count() == 3
