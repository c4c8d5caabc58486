"""Billing profiles over GraphQL: the scope matrix of every query and mutation, validation
with nothing written, partial updates, the logo upload (multipart, judged by content) and
the absence of N+1 queries."""

from __future__ import annotations

import base64
import json
import logging
import struct
import zlib
from decimal import Decimal

import pytest
from strawberry.relay import to_base64

from models import BillingProfile, BillingProfileCharge, ManagedAccount
from models.billing_profiles import MAX_LOGO_BYTES, ChargeKind
from tests import factories as f
from tests.graphql import StatementCounter as _Counter
from tests.graphql import error_codes, gql

FIELDS = """id nickname companyName hasLogo logoUrl xeroAccountCode xeroTaxType managedAccountsCount
  address { line1 line2 line3 line4 city region postalCode country }
  businessFields { key value } bankingFields { key value }
  taxesAndCharges { name kind value isTax }"""
LIST = """query($first: Int, $after: String, $last: Int, $before: String, $order: BillingProfileOrder) {
  billingProfiles(first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    edges { cursor node { %s } } } }""" % FIELDS
NODE = "query($id: ID!) { node(id: $id) { ... on BillingProfile { nickname managedAccountsCount } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on BillingProfile { nickname } } }"
ERROR = "... on UserError { __typename code field message }"
CREATE = """mutation($input: CreateBillingProfileInput!) { createBillingProfile(input: $input) {
  __typename ... on BillingProfileSaved { billingProfile { %s } } %s } }""" % (FIELDS, ERROR)
UPDATE = """mutation($id: ID!, $input: UpdateBillingProfileInput!) { updateBillingProfile(id: $id, input: $input) {
  __typename ... on BillingProfileSaved { billingProfile { %s } } %s } }""" % (FIELDS, ERROR)
DELETE = """mutation($id: ID!) { deleteBillingProfile(id: $id) {
  __typename ... on BillingProfileDeleted { deletedId detachedManagedAccounts } %s } }""" % ERROR
SET_LOGO = """mutation($id: ID!, $file: Upload!, $all: Boolean) {
  setBillingProfileLogo(id: $id, file: $file, applyToAllProfiles: $all) {
  __typename ... on BillingProfileLogoSet { billingProfile { id hasLogo logoUrl }
    billingProfiles { id nickname hasLogo } } %s } }""" % ERROR
REMOVE_LOGO = """mutation($id: ID!) { removeBillingProfileLogo(id: $id) {
  __typename ... on BillingProfileSaved { billingProfile { hasLogo logoUrl } } %s } }""" % ERROR

MSP = ("owner", "viewer")
CUSTOMERS = ("customer", "other_customer")
WRITERS_DENIED = ("viewer", "customer", "other_customer")


def gid(profile) -> str:
    return to_base64("BillingProfile", str(profile.id))


def png(width: int = 2, height: int = 1) -> bytes:
    """A real RGB PNG, built by hand: signature, IHDR, one IDAT, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x1f\x3a\x5f" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


# A real 1x1 grey baseline JPEG (Chromium decodes it to rgb(128, 128, 128)): quantization
# table, frame header, one-code DC and AC Huffman tables, scan header, one entropy-coded
# byte (DC diff 0, then end of block, padded with 1 bits), end of image.
JPEG = (
    b"\xff\xd8"
    + _segment(0xDB, b"\x00" + b"\x01" * 64)
    + _segment(0xC0, b"\x08" + struct.pack(">HH", 1, 1) + b"\x01" + b"\x01\x11\x00")
    + _segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
    + _segment(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00")
    + _segment(0xDA, b"\x01" + b"\x01\x00" + b"\x00\x3f\x00")
    + b"\x3f\xff\xd9"
)
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
       b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><script>alert(1)</script></svg>'
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"


async def upload(client, token, profile_id, data, *, filename="logo.png", content_type="image/png", apply_to_all=None):
    """`setBillingProfileLogo` as the GraphQL multipart request spec says: an `operations`
    part with the file variable null, a `map` part pointing file part "0" at it, then the file."""
    variables = {"id": profile_id, "file": None}
    if apply_to_all is not None:
        variables["all"] = apply_to_all
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": SET_LOGO, "variables": variables}),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": (filename, data, content_type)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def snapshot():
    """Everything the billing profile tables hold, to prove a refused input wrote nothing."""
    profiles = await BillingProfile.all().order_by("id").values()
    charges = await BillingProfileCharge.all().order_by("id").values()
    return profiles, charges


async def _foreign_profile(world):
    return await f.billing_profile(world.foreign_org, nickname="Fabrikam main")


# ---------------------------------------------------------------- queries


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_billing_profiles_scope_matrix(client, world, role):
    foreign = await _foreign_profile(world)
    await BillingProfileCharge.create(
        billing_profile=world.profile, position=1, name="VAT", kind=ChargeKind.PERCENT, value=Decimal("20")
    )
    token = world.tokens[role]
    result = await gql(client, LIST, token=token)
    node = await gql(client, NODE, {"id": gid(world.profile)}, token=token)
    nodes = await gql(client, NODES, {"ids": [gid(world.profile), gid(foreign)]}, token=token)
    assert "errors" not in node and "errors" not in nodes
    if role in CUSTOMERS:
        assert error_codes(result) == ["FORBIDDEN"]
        assert node["data"]["node"] is None
        assert nodes["data"]["nodes"] == [None, None]
        return
    edges = [e["node"] for e in result["data"]["billingProfiles"]["edges"]]
    if role == "foreign_owner":
        assert [e["nickname"] for e in edges] == ["Fabrikam main"]
        assert node["data"]["node"] is None
        assert nodes["data"]["nodes"] == [None, {"nickname": "Fabrikam main"}]
        return
    assert result["data"]["billingProfiles"]["totalCount"] == 1
    (profile,) = edges
    assert profile["nickname"] == world.profile.nickname
    assert profile["managedAccountsCount"] == 2
    assert profile["taxesAndCharges"] == [{"name": "VAT", "kind": "PERCENT", "value": "20", "isTax": True}]
    assert profile["hasLogo"] is False and profile["logoUrl"] is None
    assert profile["xeroAccountCode"] == "200" and profile["xeroTaxType"] == "Tax Exempt"
    assert node["data"]["node"] == {"nickname": world.profile.nickname, "managedAccountsCount": 2}
    assert nodes["data"]["nodes"] == [{"nickname": world.profile.nickname}, None]


async def test_an_unauthenticated_request_is_refused(client, world):
    assert error_codes(await gql(client, LIST)) == ["UNAUTHENTICATED"]


async def test_pages_are_ordered_counted_and_capped(client, world, settings):
    for name in ("delta", "Alpha", "charlie", "bravo", "echo"):
        await f.billing_profile(world.org, nickname=name)
    token = world.tokens["owner"]
    seen, after = [], None
    while True:
        variables = {"first": 2, "after": after, "order": {"field": "CREATED_AT", "direction": "ASC"}}
        page = (await gql(client, LIST, variables, token=token))["data"]["billingProfiles"]
        assert page["totalCount"] == 6
        seen += [e["node"]["nickname"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [world.profile.nickname, "delta", "Alpha", "charlie", "bravo", "echo"]
    default = (await gql(client, LIST, token=token))["data"]["billingProfiles"]["edges"]
    names = [e["node"]["nickname"] for e in default]
    assert names == sorted(names)  # NICKNAME ascending by default
    desc = await gql(client, LIST, {"order": {"field": "NICKNAME", "direction": "DESC"}, "last": 2}, token=token)
    assert [e["node"]["nickname"] for e in desc["data"]["billingProfiles"]["edges"]] == sorted(names, reverse=True)[-2:]
    too_big = await gql(client, LIST, {"first": settings.max_page_size + 1}, token=token)
    assert error_codes(too_big) == ["BAD_USER_INPUT"]




async def _statements_for_list(client, token, count):
    logger = logging.getLogger("tortoise.db_client")
    counter = _Counter()
    logger.addHandler(counter)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        result = await gql(
            client, "{ billingProfiles(first: 50) { edges { node { nickname managedAccountsCount taxesAndCharges { name } } } } }",
            token=token,
        )
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)
    assert len(result["data"]["billingProfiles"]["edges"]) == count
    return counter.statements


async def test_nested_fields_do_not_query_per_profile(client, world):
    token = world.tokens["owner"]
    await gql(client, "{ viewer { scope } }", token=token)  # the token's first use is recorded once
    for i in range(4):
        await f.billing_profile(world.org, nickname=f"small {i}")
    small = await _statements_for_list(client, token, 5)
    for i in range(40):
        profile = await f.billing_profile(world.org, nickname=f"large {i}")
        await BillingProfileCharge.create(billing_profile=profile, position=1, name="VAT", kind=ChargeKind.PERCENT, value=Decimal(20))
        await f.managed_account(world.org, billing_profile=profile)
    large = await _statements_for_list(client, token, 45)
    # The query's snapshot (SET TRANSACTION ISOLATION LEVEL) and at most five reads.
    assert len(small) == len(large) <= 6, large


# ---------------------------------------------------------------- create


FULL_INPUT = {
    "nickname": "  EU  ",
    "companyName": "Northwind Europe BV",
    "address": {"line1": "Herengracht 1", "city": "Amsterdam", "postalCode": "1015 BA", "country": "Netherlands"},
    "businessFields": [{"key": "VAT", "value": "NL123"}, {"key": "KvK", "value": "555"}],
    "bankingFields": [{"key": "IBAN", "value": "NL91ABNA0417164300"}],
    "taxesAndCharges": [
        {"name": "Support", "kind": "FIXED", "value": "150.5000", "isTax": False},
        {"name": "VAT", "kind": "PERCENT", "value": "21"},
    ],
    "xeroAccountCode": "4000",
    "xeroTaxType": "OUTPUT2",
}


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_create_billing_profile_scope_matrix(client, world, role):
    before = await snapshot()
    result = await gql(client, CREATE, {"input": FULL_INPUT}, token=world.tokens[role])
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
        return
    payload = result["data"]["createBillingProfile"]
    assert payload["__typename"] == "BillingProfileSaved"
    made = payload["billingProfile"]
    assert made["nickname"] == "EU"
    assert made["address"] == {"line1": "Herengracht 1", "line2": "", "line3": "", "line4": "", "city": "Amsterdam",
                               "region": "", "postalCode": "1015 BA", "country": "Netherlands"}
    assert made["businessFields"] == FULL_INPUT["businessFields"]
    assert made["bankingFields"] == FULL_INPUT["bankingFields"]
    assert made["taxesAndCharges"] == [
        {"name": "Support", "kind": "FIXED", "value": "150.5", "isTax": False},
        {"name": "VAT", "kind": "PERCENT", "value": "21", "isTax": True},
    ]
    assert made["managedAccountsCount"] == 0 and made["hasLogo"] is False
    row = await BillingProfile.get(nickname="EU")
    assert row.organization_id == world.users[role].organization_id
    assert [c.position for c in await BillingProfileCharge.filter(billing_profile=row).order_by("position")] == [1, 2]


async def test_create_defaults(client, world):
    result = await gql(client, CREATE, {"input": {"nickname": "Bare"}}, token=world.tokens["owner"])
    made = result["data"]["createBillingProfile"]["billingProfile"]
    assert made["companyName"] == "" and made["taxesAndCharges"] == [] and made["businessFields"] == []
    assert made["xeroAccountCode"] == "200" and made["xeroTaxType"] == "Tax Exempt"


def _many(count, **pair):
    return [{"key": f"k{i}", "value": "v", **pair} for i in range(count)]


def _charge(**overrides):
    return {"name": "VAT", "kind": "PERCENT", "value": "20", **overrides}


INVALID = [
    ({"nickname": "   "}, "nickname"),
    ({"nickname": "x" * 256}, "nickname"),
    ({"nickname": "a\x00b"}, "nickname"),
    ({"companyName": "x" * 256}, "companyName"),
    ({"xeroAccountCode": "x" * 33}, "xeroAccountCode"),
    ({"xeroTaxType": "x" * 65}, "xeroTaxType"),
    ({"address": {"line1": "x" * 256}}, "address.line1"),
    ({"address": {"line4": "x" * 256}}, "address.line4"),
    ({"address": {"city": "x" * 256}}, "address.city"),
    ({"address": {"region": "x" * 256}}, "address.region"),
    ({"address": {"postalCode": "x" * 65}}, "address.postalCode"),
    ({"address": {"country": "x" * 256}}, "address.country"),
    ({"businessFields": [{"key": " ", "value": "v"}]}, "businessFields"),
    ({"businessFields": [{"key": "k" * 101, "value": "v"}]}, "businessFields"),
    ({"businessFields": [{"key": "k", "value": "v" * 501}]}, "businessFields"),
    ({"businessFields": _many(51)}, "businessFields"),
    ({"bankingFields": [{"key": "", "value": "v"}]}, "bankingFields"),
    ({"bankingFields": _many(51)}, "bankingFields"),
    ({"taxesAndCharges": [_charge(name=" ")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(name="n" * 256)]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(value="100.0001")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(value="-1")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(value="12.34567")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(value="NaN")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(kind="FIXED", value="-0.01")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(kind="FIXED", value="1.00001")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(kind="FIXED", value="1e16")]}, "taxesAndCharges"),
    ({"taxesAndCharges": [_charge(name=f"c{i}") for i in range(21)]}, "taxesAndCharges"),
    # A bad entry after good ones still writes none of them.
    ({"taxesAndCharges": [_charge(), _charge(name="Fee", kind="FIXED", value="5"), _charge(value="101")]}, "taxesAndCharges"),
]


@pytest.mark.parametrize("changes,field", INVALID)
async def test_create_validation_writes_nothing(client, world, changes, field):
    before = await snapshot()
    result = await gql(client, CREATE, {"input": {**FULL_INPUT, **changes}}, token=world.tokens["owner"])
    payload = result["data"]["createBillingProfile"]
    assert payload["__typename"] == "ValidationError", payload
    assert payload["code"] == "INVALID" and payload["field"] == field
    assert await snapshot() == before


async def test_limits_themselves_are_accepted(client, world):
    result = await gql(client, CREATE, {"input": {
        "nickname": "n" * 255,
        "businessFields": _many(50, value="v" * 500),
        "taxesAndCharges": [_charge(name=f"c{i}", value="100") for i in range(19)] + [_charge(kind="FIXED", value="0.0001")],
    }}, token=world.tokens["owner"])
    assert result["data"]["createBillingProfile"]["__typename"] == "BillingProfileSaved"
    assert await BillingProfileCharge.all().count() == 20


@pytest.mark.parametrize("nickname", ["Main", "main", "  MAIN "])
async def test_nicknames_are_unique_in_the_organization(client, world, nickname):
    await f.billing_profile(world.org, nickname="Main")
    await f.billing_profile(world.foreign_org, nickname="EU")
    before = await snapshot()
    result = await gql(client, CREATE, {"input": {"nickname": nickname}}, token=world.tokens["owner"])
    assert result["data"]["createBillingProfile"]["field"] == "nickname"
    assert await snapshot() == before
    # Another organization may use the same nickname.
    other = await gql(client, CREATE, {"input": {"nickname": "Main"}}, token=world.tokens["foreign_owner"])
    assert other["data"]["createBillingProfile"]["__typename"] == "BillingProfileSaved"


async def test_a_missing_nickname_is_a_graphql_input_error(client, world):
    result = await gql(client, CREATE, {"input": {"companyName": "X"}}, token=world.tokens["owner"])
    assert error_codes(result) == ["BAD_USER_INPUT"] and result["data"] is None
    assert await BillingProfile.all().count() == 1


# ---------------------------------------------------------------- update


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_update_billing_profile_scope_matrix(client, world, role):
    before = await snapshot()
    result = await gql(client, UPDATE, {"id": gid(world.profile), "input": {"companyName": "Renamed"}}, token=world.tokens[role])
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
    elif role == "foreign_owner":
        payload = result["data"]["updateBillingProfile"]
        assert payload["__typename"] == "NotFoundError" and payload["field"] == "id"
        assert await snapshot() == before
    else:
        assert result["data"]["updateBillingProfile"]["billingProfile"]["companyName"] == "Renamed"
        assert (await BillingProfile.get(id=world.profile.id)).company_name == "Renamed"


async def test_update_changes_only_the_given_fields(client, world):
    token = world.tokens["owner"]
    created = (await gql(client, CREATE, {"input": FULL_INPUT}, token=token))["data"]["createBillingProfile"]["billingProfile"]
    untouched = await BillingProfile.get(nickname="EU")
    result = await gql(client, UPDATE, {"id": created["id"], "input": {
        "address": {"line2": "Floor 3", "city": ""},
        "taxesAndCharges": [{"name": "VAT", "kind": "PERCENT", "value": "9"},
                            {"name": "Fee", "kind": "FIXED", "value": "2.5", "isTax": False}],
        "bankingFields": [],
    }}, token=token)
    updated = result["data"]["updateBillingProfile"]["billingProfile"]
    assert updated["address"] == {**created["address"], "line2": "Floor 3", "city": ""}
    assert updated["taxesAndCharges"] == [
        {"name": "VAT", "kind": "PERCENT", "value": "9", "isTax": True},
        {"name": "Fee", "kind": "FIXED", "value": "2.5", "isTax": False},
    ]
    assert updated["bankingFields"] == []
    for same in ("nickname", "companyName", "businessFields", "xeroAccountCode", "xeroTaxType"):
        assert updated[same] == created[same]
    row = await BillingProfile.get(id=untouched.id)
    assert row.updated_at > untouched.updated_at
    charges = await BillingProfileCharge.filter(billing_profile=row).order_by("position").values_list("position", "name")
    assert charges == [(1, "VAT"), (2, "Fee")]
    # No charges given: the list stays as it is.
    await gql(client, UPDATE, {"id": created["id"], "input": {"nickname": "EU"}}, token=token)
    assert await BillingProfileCharge.filter(billing_profile=row).count() == 2


@pytest.mark.parametrize("changes,field", INVALID + [({"nickname": "taken"}, "nickname"), ({"nickname": "TAKEN "}, "nickname")])
async def test_update_validation_writes_nothing(client, world, changes, field):
    await f.billing_profile(world.org, nickname="taken")
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind=ChargeKind.PERCENT, value=Decimal(20))
    before = await snapshot()
    result = await gql(client, UPDATE, {"id": gid(world.profile), "input": {"companyName": "Changed", **changes}},
                       token=world.tokens["owner"])
    payload = result["data"]["updateBillingProfile"]
    assert payload["__typename"] == "ValidationError", payload
    assert payload["field"] == field
    assert await snapshot() == before


@pytest.mark.parametrize("bad_id", ["garbage", to_base64("ManagedAccount", "00000000-0000-0000-0000-000000000000"),
                                    to_base64("BillingProfile", "00000000-0000-0000-0000-000000000000"),
                                    to_base64("BillingProfile", "not-a-uuid")])
async def test_update_an_unknown_id_is_not_found(client, world, bad_id):
    before = await snapshot()
    result = await gql(client, UPDATE, {"id": bad_id, "input": {"companyName": "X"}}, token=world.tokens["owner"])
    assert result["data"]["updateBillingProfile"]["__typename"] == "NotFoundError"
    assert await snapshot() == before


# ---------------------------------------------------------------- delete


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_delete_billing_profile_scope_matrix(client, world, role):
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind=ChargeKind.PERCENT, value=Decimal(20))
    before = await snapshot()
    result = await gql(client, DELETE, {"id": gid(world.profile)}, token=world.tokens[role])
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
        return
    if role == "foreign_owner":
        assert result["data"]["deleteBillingProfile"]["__typename"] == "NotFoundError"
        assert await snapshot() == before
        return
    assert result["data"]["deleteBillingProfile"] == {
        "__typename": "BillingProfileDeleted", "deletedId": gid(world.profile), "detachedManagedAccounts": 2,
    }
    assert await BillingProfile.all().count() == 0 and await BillingProfileCharge.all().count() == 0
    # The accounts remain, without a profile.
    assert set(await ManagedAccount.all().values_list("billing_profile_id", flat=True)) == {None}
    assert await ManagedAccount.all().count() == 3


async def test_delete_twice_is_not_found(client, world):
    token = world.tokens["owner"]
    await gql(client, DELETE, {"id": gid(world.profile)}, token=token)
    again = await gql(client, DELETE, {"id": gid(world.profile)}, token=token)
    assert again["data"]["deleteBillingProfile"]["__typename"] == "NotFoundError"


# ---------------------------------------------------------------- logo


def _decoded(data_url: str) -> tuple[str, bytes]:
    head, _, body = data_url.partition(",")
    return head, base64.b64decode(body)


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_set_logo_scope_matrix(client, world, role):
    before = await snapshot()
    result = await upload(client, world.tokens[role], gid(world.profile), png())
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
    elif role == "foreign_owner":
        assert result["data"]["setBillingProfileLogo"]["__typename"] == "NotFoundError"
        assert await snapshot() == before
    else:
        payload = result["data"]["setBillingProfileLogo"]
        assert payload["billingProfile"]["hasLogo"] is True
        assert _decoded(payload["billingProfile"]["logoUrl"]) == ("data:image/png;base64", png())


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "other_customer", "foreign_owner"])
async def test_remove_logo_scope_matrix(client, world, role):
    await BillingProfile.filter(id=world.profile.id).update(logo=png(), logo_content_type="image/png")
    before = await snapshot()
    result = await gql(client, REMOVE_LOGO, {"id": gid(world.profile)}, token=world.tokens[role])
    if role in WRITERS_DENIED:
        assert error_codes(result) == ["FORBIDDEN"]
        assert await snapshot() == before
    elif role == "foreign_owner":
        assert result["data"]["removeBillingProfileLogo"]["__typename"] == "NotFoundError"
        assert await snapshot() == before
    else:
        assert result["data"]["removeBillingProfileLogo"]["billingProfile"] == {"hasLogo": False, "logoUrl": None}
        row = await BillingProfile.get(id=world.profile.id)
        assert row.logo is None and row.logo_content_type is None


@pytest.mark.parametrize("data,filename,content_type,stored", [
    (png(), "logo.png", "image/png", "image/png"),
    (png(640, 480), "big.png", "application/octet-stream", "image/png"),
    (JPEG, "logo.jpg", "image/jpeg", "image/jpeg"),
    # The content decides, not the name or the declared type.
    (png(), "logo.jpg", "image/jpeg", "image/png"),
    (JPEG, "logo.png", "image/png", "image/jpeg"),
])
async def test_png_and_jpeg_are_accepted_by_content(client, world, data, filename, content_type, stored):
    result = await upload(client, world.tokens["owner"], gid(world.profile), data, filename=filename, content_type=content_type)
    assert result["data"]["setBillingProfileLogo"]["__typename"] == "BillingProfileLogoSet", result
    row = await BillingProfile.get(id=world.profile.id)
    assert bytes(row.logo) == data and row.logo_content_type == stored
    url = result["data"]["setBillingProfileLogo"]["billingProfile"]["logoUrl"]
    assert _decoded(url) == (f"data:{stored};base64", data)


def _bad_crc(data: bytes) -> bytes:
    return data[:29] + bytes([data[29] ^ 0xFF]) + data[30:]


REFUSED = [
    (HTML, "file"),
    (SVG, "file"),
    (GIF, "file"),
    (b"", "file"),
    (b"\x89PNG\r\n\x1a\n", "file"),
    (png()[:-12], "file"),                      # no IEND: truncated
    (png() + b"<script>", "file"),              # bytes after IEND
    (_bad_crc(png()), "file"),
    (png(6000, 1), "file"),                     # a canvas wider than the renderer should decode
    (png(0, 1), "file"),
    (JPEG[:-2], "file"),                        # no EOI
    (b"\xff\xd8" + b"\x00" * 10 + b"\xff\xd9", "file"),
    (b"\xff\xd8\xff\xd9", "file"),              # markers but no frame
    (png() + b"\x00" * MAX_LOGO_BYTES, "file"),  # too big, whatever it is
]


@pytest.mark.parametrize("data,field", REFUSED)
async def test_anything_but_a_sound_png_or_jpeg_is_refused(client, world, data, field):
    await f.billing_profile(world.org, nickname="Second")
    before = await snapshot()
    result = await upload(client, world.tokens["owner"], gid(world.profile), data, apply_to_all=True)
    payload = result["data"]["setBillingProfileLogo"]
    assert payload["__typename"] == "ValidationError" and payload["field"] == field, payload
    assert await snapshot() == before


async def test_the_size_limit_is_exact(client, world):
    padding = MAX_LOGO_BYTES - len(png())
    # A PNG may carry ancillary chunks: pad one in so the file is exactly at the limit.
    body = b"x" * (padding - 12)
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    data = png()[:-12] + chunk + png()[-12:]
    assert len(data) == MAX_LOGO_BYTES
    ok = await upload(client, world.tokens["owner"], gid(world.profile), data)
    assert ok["data"]["setBillingProfileLogo"]["__typename"] == "BillingProfileLogoSet"
    too_big = await upload(client, world.tokens["owner"], gid(world.profile), data + b"\x00")
    assert "512 KiB" in too_big["data"]["setBillingProfileLogo"]["message"]


async def test_apply_to_all_copies_onto_every_profile_of_the_organization_only(client, world):
    second = await f.billing_profile(world.org, nickname="Second")
    third = await f.billing_profile(world.org, nickname="Third", logo=JPEG, logo_content_type="image/jpeg")
    foreign = await _foreign_profile(world)
    result = await upload(client, world.tokens["owner"], gid(third), png(), apply_to_all=True)
    payload = result["data"]["setBillingProfileLogo"]
    assert payload["billingProfile"]["id"] == gid(third)
    assert [p["id"] for p in payload["billingProfiles"]][0] == gid(third)
    assert {p["id"] for p in payload["billingProfiles"]} == {gid(world.profile), gid(second), gid(third)}
    assert all(p["hasLogo"] for p in payload["billingProfiles"])
    for profile in (world.profile, second, third):
        row = await BillingProfile.get(id=profile.id)
        assert bytes(row.logo) == png() and row.logo_content_type == "image/png"
    assert (await BillingProfile.get(id=foreign.id)).logo is None


@pytest.mark.parametrize("apply_to_all", [False, None])
async def test_without_apply_to_all_only_the_one_profile_changes(client, world, apply_to_all):
    second = await f.billing_profile(world.org, nickname="Second")
    result = await upload(client, world.tokens["owner"], gid(world.profile), JPEG, apply_to_all=apply_to_all)
    assert [p["id"] for p in result["data"]["setBillingProfileLogo"]["billingProfiles"]] == [gid(world.profile)]
    assert (await BillingProfile.get(id=second.id)).logo is None


async def test_logo_of_an_unknown_profile_is_not_found(client, world):
    foreign = await _foreign_profile(world)
    before = await snapshot()
    result = await upload(client, world.tokens["owner"], gid(foreign), png(), apply_to_all=True)
    assert result["data"]["setBillingProfileLogo"]["__typename"] == "NotFoundError"
    result = await gql(client, REMOVE_LOGO, {"id": "garbage"}, token=world.tokens["owner"])
    assert result["data"]["removeBillingProfileLogo"]["__typename"] == "NotFoundError"
    assert await snapshot() == before
