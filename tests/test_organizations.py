"""The organization's settings: `updateOrganization`, who reads them, and where they act
(numbering, the month's close, new accounts' payment terms, the mailer's sender)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from invoicing.cli.data import _create_organization
from jobs.mailer import organization_sender, send_mail
from models import Invoice, Organization
from models.billing_periods import periods_to_close
from models.errors import ValidationFailed
from models.invoices.numbering import ensure_number
from tests import factories as f
from tests.graphql import error_codes, gql

SETTINGS = """{ viewer { organization { name timezone invoicePrefix dataIngestionDelay dataIngestionDelayDays
  nextInvoiceNumber defaultPaymentTermsDays emailSenderName emailReplyTo reminderDays
  autoInvoice { enabled approveAndSend graceHours } } } }"""
UPDATE = """mutation($input: UpdateOrganizationInput!) { updateOrganization(input: $input) { __typename
  ... on OrganizationUpdated { organization { name timezone invoicePrefix dataIngestionDelayDays nextInvoiceNumber
    defaultPaymentTermsDays emailSenderName emailReplyTo reminderDays autoInvoice { enabled approveAndSend graceHours } } }
  ... on UserError { code field message } } }"""
CREATE_ACCOUNT = """mutation($input: CreateManagedAccountInput!) { createManagedAccount(input: $input) {
  ... on ManagedAccountSaved { managedAccount { paymentTermsDays } } } }"""
EVERYTHING = {
    "name": "Northwind Partners", "timezone": "Europe/London", "invoicePrefix": "NW", "nextInvoiceNumber": 1000,
    "dataIngestionDelayDays": 3, "defaultPaymentTermsDays": 14, "emailSenderName": "Northwind Billing",
    "emailReplyTo": "Billing@Northwind.example", "reminderDays": [14, 3, 7, 7],
    "autoInvoice": {"enabled": True, "approveAndSend": True, "graceHours": 48},
}


async def _columns(org_id):
    return await Organization.filter(id=org_id).values()


async def test_an_owner_changes_every_setting_and_everyone_of_the_organization_reads_them(client, world):
    result = await gql(client, UPDATE, {"input": EVERYTHING}, token=world.tokens["owner"])
    organization = result["data"]["updateOrganization"]["organization"]
    assert organization == {
        "name": "Northwind Partners", "timezone": "Europe/London", "invoicePrefix": "NW", "nextInvoiceNumber": 1000,
        "dataIngestionDelayDays": 3, "defaultPaymentTermsDays": 14, "emailSenderName": "Northwind Billing",
        "emailReplyTo": "billing@northwind.example", "reminderDays": [3, 7, 14],
        "autoInvoice": {"enabled": True, "approveAndSend": True, "graceHours": 48},
    }
    viewer = await gql(client, SETTINGS, token=world.tokens["viewer"])
    assert viewer["data"]["viewer"]["organization"] == {**organization, "dataIngestionDelay": True}
    # Only the fields given change.
    again = await gql(client, UPDATE, {"input": {"autoInvoice": {"graceHours": 2}}}, token=world.tokens["owner"])
    assert again["data"]["updateOrganization"]["organization"]["autoInvoice"] == {
        "enabled": True, "approveAndSend": True, "graceHours": 2,
    }
    assert again["data"]["updateOrganization"]["organization"]["name"] == "Northwind Partners"
    foreign = await gql(client, "{ viewer { organization { name reminderDays } } }", token=world.tokens["foreign_owner"])
    assert foreign["data"]["viewer"]["organization"] == {"name": "Fabrikam", "reminderDays": []}


async def test_customers_see_only_what_they_saw_before(client, world):
    result = await gql(client, SETTINGS, token=world.tokens["customer"])
    assert set(error_codes(result)) == {"FORBIDDEN"}
    plain = await gql(client, "{ viewer { organization { name timezone invoicePrefix dataIngestionDelay } } }",
                      token=world.tokens["customer"])
    assert plain["data"]["viewer"]["organization"] == {
        "name": "Northwind", "timezone": "UTC", "invoicePrefix": "INV", "dataIngestionDelay": False,
    }


@pytest.mark.parametrize("role", ["viewer", "customer"])
async def test_only_owners_change_settings(client, world, role):
    before = await _columns(world.org.id)
    result = await gql(client, UPDATE, {"input": {"name": "Taken over"}}, token=world.tokens[role])
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _columns(world.org.id) == before


async def test_another_organizations_owner_changes_only_its_own(client, world):
    before = await _columns(world.org.id)
    result = await gql(client, UPDATE, {"input": {"name": "Fabrikam Ltd"}}, token=world.tokens["foreign_owner"])
    assert result["data"]["updateOrganization"]["organization"]["name"] == "Fabrikam Ltd"
    assert await _columns(world.org.id) == before


@pytest.mark.parametrize("input,field", [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"invoicePrefix": "inv-"}, "invoicePrefix"),
    ({"invoicePrefix": ""}, "invoicePrefix"),
    ({"name": "  "}, "name"),
    ({"dataIngestionDelayDays": 28}, "dataIngestionDelayDays"),
    ({"dataIngestionDelayDays": -1}, "dataIngestionDelayDays"),
    ({"defaultPaymentTermsDays": 366}, "defaultPaymentTermsDays"),
    ({"emailReplyTo": "not an address"}, "emailReplyTo"),
    ({"emailSenderName": "Evil\nBcc: x@example.com"}, "emailSenderName"),
    ({"reminderDays": [0]}, "reminderDays"),
    ({"reminderDays": list(range(1, 12))}, "reminderDays"),
    ({"autoInvoice": {"graceHours": 721}}, "autoInvoice.graceHours"),
    ({"nextInvoiceNumber": 0}, "nextInvoiceNumber"),
])
async def test_a_refused_setting_is_a_typed_error_and_changes_nothing(client, world, input, field):
    before = await _columns(world.org.id)
    result = await gql(client, UPDATE, {"input": {"name": "Renamed", **input}}, token=world.tokens["owner"])
    payload = result["data"]["updateOrganization"]
    assert (payload["__typename"], payload["code"], payload["field"]) == ("ValidationError", "INVALID", field)
    assert await _columns(world.org.id) == before


async def _numbered(world, count):
    period = await f.billing_period(world.org)
    numbers = []
    for account in [world.account, world.other_account][:count]:
        invoice = await f.invoice(account, period)
        numbers.append(await ensure_number(invoice.id, datetime.now(UTC).year))
    return numbers


async def test_the_next_number_starts_a_year_anywhere_but_never_leaves_a_gap_or_a_repeat(client, world):
    year = datetime.now(UTC).year
    set_to = await gql(client, UPDATE, {"input": {"nextInvoiceNumber": 500, "invoicePrefix": "NW"}}, token=world.tokens["owner"])
    assert set_to["data"]["updateOrganization"]["organization"]["nextInvoiceNumber"] == 500
    assert await _numbered(world, 1) == [f"NW-{year}-0500"]
    for refused in (500, 400, 502):
        result = await gql(client, UPDATE, {"input": {"nextInvoiceNumber": refused}}, token=world.tokens["owner"])
        assert result["data"]["updateOrganization"]["field"] == "nextInvoiceNumber"
        assert "the next one is 501" in result["data"]["updateOrganization"]["message"]
    same = await gql(client, UPDATE, {"input": {"nextInvoiceNumber": 501}}, token=world.tokens["owner"])
    assert same["data"]["updateOrganization"]["organization"]["nextInvoiceNumber"] == 501
    numbers = await Invoice.filter(number__not_isnull=True).values_list("number", flat=True)
    assert numbers == [f"NW-{year}-0500"]


async def test_the_months_close_waits_for_the_ingestion_delay_in_the_organizations_time_zone(client, world):
    await Organization.exclude(id=world.org.id).delete()
    await gql(client, UPDATE, {"input": {"dataIngestionDelayDays": 2, "timezone": "Asia/Tokyo"}}, token=world.tokens["owner"])
    # 2 December 16:00 UTC is already the 3rd in Tokyo: two days after November's end.
    assert await periods_to_close(datetime(2026, 12, 2, 14, 59, tzinfo=UTC)) == []
    assert await periods_to_close(datetime(2026, 12, 2, 15, 0, tzinfo=UTC)) == [(world.org.id, date(2026, 11, 1))]


async def test_new_accounts_take_the_default_payment_terms(client, world):
    await gql(client, UPDATE, {"input": {"defaultPaymentTermsDays": 45}}, token=world.tokens["owner"])
    made = await gql(client, CREATE_ACCOUNT, {"input": {"name": "Adventure Works"}}, token=world.tokens["owner"])
    assert made["data"]["createManagedAccount"]["managedAccount"]["paymentTermsDays"] == 45
    own = await gql(client, CREATE_ACCOUNT, {"input": {"name": "Wingtip", "paymentTermsDays": 7}}, token=world.tokens["owner"])
    assert own["data"]["createManagedAccount"]["managedAccount"]["paymentTermsDays"] == 7


async def test_the_mailer_sends_under_the_organizations_name_and_reply_to(settings, smtp):
    url, mailbox = smtp
    org = await f.organization(email_sender_name="Northwind Billing", email_reply_to="ar@northwind.example")
    await send_mail(settings.model_copy(update={"smtp_url": url}), to=["ap@contoso.example"], subject="Hello",
                    text="Hi", **organization_sender(org))
    ((_, message),) = mailbox.messages
    assert message["From"] == "Northwind Billing <no-reply@invoicing.local>"
    assert message["Reply-To"] == "ar@northwind.example"
    plain = await f.organization()
    await send_mail(settings.model_copy(update={"smtp_url": url}), to=["ap@contoso.example"], subject="Hello",
                    text="Hi", **organization_sender(plain))
    assert mailbox.messages[1][1]["From"] == settings.smtp_from and mailbox.messages[1][1]["Reply-To"] is None


async def test_the_command_line_creates_organizations_with_the_same_checks():
    org = await _create_organization("Contoso MSP", "Europe/Paris", "CT")
    assert (org.timezone, org.invoice_prefix) == ("Europe/Paris", "CT")
    with pytest.raises(ValidationFailed):
        await _create_organization("Bad", "Nowhere/Town", "CT")


CORRECTIONS = """mutation($input: UpdateOrganizationInput!) { updateOrganization(input: $input) { __typename
  ... on OrganizationUpdated { organization { lateCostBilling checks { changePercent changeAmount } } }
  ... on UserError { code field } } }"""


async def test_late_cost_billing_and_the_checks_thresholds_are_settings(client, world):
    owner = world.tokens["owner"]
    changed = await gql(client, CORRECTIONS, {"input": {
        "lateCostBilling": "SUPPLEMENTARY_INVOICE", "checks": {"changePercent": "10", "changeAmount": "50.5"}}}, owner)
    assert changed["data"]["updateOrganization"]["organization"] == {
        "lateCostBilling": "SUPPLEMENTARY_INVOICE", "checks": {"changePercent": "10", "changeAmount": "50.5"},
    }
    refused = await gql(client, CORRECTIONS, {"input": {"checks": {"changePercent": "-1"}}}, owner)
    assert refused["data"]["updateOrganization"] == {"__typename": "ValidationError", "code": "INVALID", "field": "checks.changePercent"}
    org = await world.org.__class__.get(id=world.org.id)
    assert (org.late_cost_billing, org.check_change_percent, org.check_change_amount) == ("SUPPLEMENTARY_INVOICE", 10, Decimal("50.5"))
    viewer = await gql(client, CORRECTIONS, {"input": {"lateCostBilling": "NEXT_INVOICE"}}, world.tokens["viewer"])
    assert viewer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
