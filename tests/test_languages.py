"""Documents in the customer's language: each kind of document printed in each language by real
Chromium and read back with pdftotext (labels translated, amounts and dates as Babel writes them
for the locale, "Page n of m" on every page), the VOID copy of a voided invoice beside its frozen
PDF, a stored revision printed again byte for byte, and the locales set over the API."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal

import pikepdf
import pytest
from babel.dates import format_date
from babel.numbers import format_currency, format_percent
from strawberry.relay import to_base64

from infra import storage
from infra.links import signed_download
from jobs.locales import page_label, translate
from jobs.pdf import PdfRenderer
from jobs.rendering import TEMPLATE_VERSION, render_credit_note_html, render_invoice_html, sample_view
from jobs.void_copies import print_void_copy
from models import Invoice, Organization
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.generation.view import build_view
from models.invoices.tables import InvoiceRevision
from models.locales import SUPPORTED_LOCALES
from tests.graphql import error_codes, gql
from tests.test_exports import _principal
from tests.test_invoice_generation import SEPT
from tests.test_invoice_generation import _costs as costs

LOCALES = list(SUPPORTED_LOCALES)
# How each language names the invoice and the credit note at the top of the page.
HEADINGS = {
    "en": ("INVOICE", "CREDIT NOTE", "Billing period", "Page {n} of {m}"),
    "de": ("RECHNUNG", "GUTSCHRIFT", "Abrechnungszeitraum", "Seite {n} von {m}"),
    "fr": ("FACTURE", "AVOIR", "Période de facturation", "Page {n} sur {m}"),
    "nl": ("FACTUUR", "CREDITNOTA", "Factuurperiode", "Pagina {n} van {m}"),
    "es": ("FACTURA", "FACTURA RECTIFICATIVA", "Periodo de facturación", "Página {n} de {m}"),
}


@pytest.fixture(scope="module")
async def renderer(settings):
    async with PdfRenderer(settings, pool_size=2) as pdf:
        yield pdf


def text_of(pdf: bytes, page: int | None = None) -> str:
    """The PDF's text as pdftotext reads it, its spaces (no-break and narrow ones included) as one."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    done = subprocess.run(["pdftotext", *pages, "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(done.stdout.decode().replace("\u202f", " ").replace("\xa0", " ").split())


def pages_of(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        return len(document.pages)


def numbered(pdf: bytes, label: str) -> bool:
    """Whether each page of the PDF says "Page n of m" (in `label`'s words), its own n only."""
    count = pages_of(pdf)
    return all(
        label.format(n=n, m=count) in text_of(pdf, n)
        and not any(label.format(n=other, m=count) in text_of(pdf, n) for other in range(1, count + 1) if other != n)
        for n in range(1, count + 1)
    )


def squeezed(text: str) -> str:
    """Without spaces: a heading's letter spacing reads back as spaces between some letters."""
    return "".join(text.split())


def spaced(text: str) -> str:
    return " ".join(text.replace("\u202f", " ").replace("\xa0", " ").split())


def invoice_view(locale: str, **changes) -> dict:
    return {**sample_view(), "locale": locale, **changes}


def credit_note_view(locale: str) -> dict:
    invoice = sample_view()
    return {
        "template_version": "1",
        "number": "CN-2024-0007",
        "issue_date": "2024-10-20",
        "locale": locale,
        "invoice": {"number": "INV-2024-0042", "issue_date": "2024-10-01", "total": invoice["total"]},
        "period": {"label": "September 2024", "start": "2024-09-01"},
        "currency": "EUR",
        "reason": "Billed twice",
        "msp": invoice["msp"],
        "customer": invoice["customer"],
        "lines": [{"description": "Amazon EC2 – m6i.xlarge, eu-central-1", "amount": "1234.56"}],
        "subtotal": "1234.56",
        "charges": [{"description": "VAT (19%)", "amount": "234.57", "is_tax": True, "percent": "19"}],
        "total": "1469.13",
    }


@pytest.mark.parametrize("locale", LOCALES)
async def test_an_invoice_reads_in_each_language(renderer, locale):
    view = invoice_view(locale)
    pdf = await renderer.render(render_invoice_html(view), page_label=page_label(locale))
    text = text_of(pdf)
    heading, _, period_label, page = HEADINGS[locale]
    assert squeezed(heading) in squeezed(text) and period_label in text and numbered(pdf, page)
    # Money, dates and the month as Babel writes them for the locale (English as it always printed).
    total = Decimal(view["total"])
    money = f"EUR {total:,.2f}" if locale == "en" else spaced(format_currency(total, "EUR", locale=locale))
    assert money in text
    issued = "1 October 2024" if locale == "en" else spaced(format_date(date(2024, 10, 1), "long", locale=locale))
    assert issued in text
    assert spaced(translate(locale, "Due date")) in text
    if locale != "en":
        assert "Amount due" not in text and "Bill to" not in text


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_credit_note_reads_in_each_language_and_names_its_invoice(renderer, locale):
    view = credit_note_view(locale)
    pdf = await renderer.render(render_credit_note_html(view), page_label=page_label(locale))
    text = text_of(pdf)
    _, heading, period_label, page = HEADINGS[locale]
    assert squeezed(heading) in squeezed(text) and period_label in text and numbered(pdf, page)
    assert "INV-2024-0042" in text and spaced(translate(locale, "Credits invoice")) in text
    credited = "EUR 1,469.13" if locale == "en" else spaced(format_currency(Decimal("1469.13"), "EUR", locale=locale))
    assert credited in text
    # The VAT rate written the locale's way: 19 % in German, French and Spanish.
    assert ("VAT (19 %)" if locale in ("de", "fr", "es") else "VAT (19%)") in text


def test_legal_phrases_of_reverse_charge_are_the_ones_the_rules_name():
    view = invoice_view("de", einvoice={"vat": {"category": "REVERSE_CHARGE"}})
    assert "Steuerschuldnerschaft des Leistungsempfängers" in render_invoice_html(view)
    for locale, phrase in (
        ("fr", "Autoliquidation"),
        ("nl", "Btw verlegd"),
        ("es", "Inversión del sujeto pasivo"),
        ("en", "Reverse charge"),
    ):
        assert phrase in render_invoice_html(dict(view, locale=locale))
    # A revision printed before documents had a language prints as it did.
    old = {key: value for key, value in view.items() if key != "locale"}
    assert "Reverse charge" not in render_invoice_html(old) and "Rechnung" not in render_invoice_html(old)


async def test_every_page_of_a_three_page_invoice_says_which_it_is(renderer):
    view = invoice_view("de")
    lines = 30
    while True:  # as many lines as make three pages
        view["lines"] = [dict(sample_view()["lines"][i % 9], description=f"Zeile {i}") for i in range(lines)]
        pdf = await renderer.render(render_invoice_html(view), page_label=page_label("de"))
        if pages_of(pdf) >= 3:
            break
        lines += 10
    assert pages_of(pdf) == 3
    assert [f"Seite {n} von 3" in text_of(pdf, n) for n in (1, 2, 3)] == [True, True, True]
    assert numbered(pdf, HEADINGS["de"][3])


async def test_invoices_printed_together_are_numbered_each_from_its_first_page(settings):
    """A batch prints several invoices in one Chromium print job: each still counts its own pages."""
    long = invoice_view("fr")
    long["lines"] = [dict(long["lines"][i % 9], description=f"Ligne {i}") for i in range(40)]
    async with PdfRenderer(settings, pool_size=1, batch_size=4) as batching:
        pdfs = await asyncio.gather(
            batching.render(render_invoice_html(long), group="org", page_label=page_label("fr")),
            batching.render(render_invoice_html(invoice_view("fr", number="INV-2024-0043")), group="org", page_label=page_label("fr")),
        )
        assert batching.batches == 1
    assert pages_of(pdfs[0]) > 2 and numbered(pdfs[0], HEADINGS["fr"][3])
    assert numbered(pdfs[1], HEADINGS["fr"][3]) and "INV-2024-0043" in text_of(pdfs[1])


async def _approved_and_printed(world, renderer, settings) -> Invoice:
    """An approved invoice printed in German, its PDF stored as generation stores it."""
    from tests import factories

    view = invoice_view("de", number="INV-2024-0009")
    invoice = await factories.invoice(world.account, await factories.billing_period(world.org), currency="EUR", number="INV-2024-0009")
    frozen = await renderer.render(render_invoice_html(view), page_label=page_label("de"))
    sha = storage.save(settings, "invoices/frozen.pdf", frozen)
    total, issued, due = Decimal(view["total"]), date(2024, 10, 1), date(2024, 10, 31)
    revision = await InvoiceRevision.create(
        invoice=invoice,
        revision=1,
        template_version="1",
        currency="EUR",
        cost_currency="USD",
        subtotal=total,
        adjustments=0,
        charges=0,
        total=total,
        issue_date=issued,
        due_date=due,
        snapshot=view,
        locale="de",
        pdf_path="invoices/frozen.pdf",
        pdf_sha256=sha,
        pdf_size=len(frozen),
    )
    await Invoice.filter(id=invoice.id).update(
        current_revision_id=revision.id,
        subtotal=total,
        total=total,
        issue_date=issued,
        due_date=due,
        status="APPROVED",
        approved_at=datetime.now(UTC),
    )
    return await Invoice.get(id=invoice.id)


async def test_a_voided_invoice_gets_a_void_copy_beside_its_frozen_pdf(renderer, settings, world):
    invoice = await _approved_and_printed(world, renderer, settings)
    frozen = storage.load(settings, "invoices/frozen.pdf")
    sha = hashlib.sha256(frozen).hexdigest()
    ctx = {"pdf": renderer, "settings": settings}
    assert await print_void_copy(ctx, str(invoice.id)) == "nothing to do"  # not voided (yet)
    await Invoice.filter(id=invoice.id).update(status="VOIDED")
    assert await print_void_copy(ctx, str(invoice.id)) == "printed"
    assert await print_void_copy(ctx, str(invoice.id)) == "printed already"
    invoice = await Invoice.get(id=invoice.id)
    assert (await InvoiceRevision.get(id=invoice.current_revision_id)).pdf_path == "invoices/frozen.pdf" and invoice.void_pdf_path
    assert hashlib.sha256(storage.load(settings, "invoices/frozen.pdf")).hexdigest() == sha
    void = storage.load(settings, invoice.void_pdf_path)
    assert "STORNIERT" in text_of(void) and "STORNIERT" not in text_of(frozen)
    assert numbered(void, HEADINGS["de"][3])
    # The customer's download is the VOID copy from now on (the frozen PDF before it was voided).
    download = await signed_download(await _principal(world.tokens["customer"]), "pdf", str(invoice.id), "")
    assert download is not None and download.stored == invoice.void_pdf_path


async def test_an_english_voided_invoice_says_void():
    html = render_invoice_html(invoice_view("en", void={"date": "2024-11-02"}))
    assert ">VOID<" in html and "voided on 2 November 2024" in html


async def test_a_revision_is_printed_in_its_accounts_language_and_again_byte_for_byte(renderer, world):
    world.account.locale = "nl"
    await world.account.save()
    await costs(world.org, world.account, [("AWS", "Amazon EC2", "Compute", "1234.5678", "Hrs", "744")])
    from models.billing_periods import close_period
    from models.invoices.lifecycle import Actor

    await close_period(world.org.id, SEPT, Actor.system("test"))
    invoice = await Invoice.get(managed_account_id=world.account.id)
    context = await load_context(invoice.id)
    view = build_view(context, await compute(context), "INV-2024-0001", TEMPLATE_VERSION)
    assert view["locale"] == "nl"
    # Stored as JSON and read back, it prints the same HTML and the same PDF, byte for byte, in Dutch.
    stored = json.loads(json.dumps(view))
    assert render_invoice_html(stored).encode() == render_invoice_html(view).encode()
    first = await renderer.render(render_invoice_html(view), page_label=page_label("nl"))
    again = await renderer.render(render_invoice_html(copy.deepcopy(stored)), page_label=page_label("nl"))
    assert first == again and "FACTUUR" in squeezed(text_of(first))
    # The account falls back to its organization's language.
    world.account.locale = None
    await world.account.save()
    await Organization.filter(id=world.org.id).update(locale="es")
    context = await load_context(invoice.id)
    assert build_view(context, await compute(context), "INV-2024-0001", TEMPLATE_VERSION)["locale"] == "es"


async def test_zero_usage_lines_are_left_out_unless_the_organization_asks(world):
    await costs(
        world.org,
        world.account,
        [
            ("AWS", "Amazon EC2", "Compute", "100.00", "Hrs", "10"),
            ("AWS", "Amazon S3", "Storage", "0.001", "GB-Mo", "0.01"),
        ],
    )
    from models.billing_periods import close_period
    from models.invoices.lifecycle import Actor

    await close_period(world.org.id, SEPT, Actor.system("test"))
    invoice = await Invoice.get(managed_account_id=world.account.id)
    context = await load_context(invoice.id)
    computed = await compute(context)
    assert any(line.amount == 0 for line in computed.printed_items)
    view = build_view(context, computed, "INV-2024-0001", TEMPLATE_VERSION)
    assert [line["amount"] for line in view["lines"]] == ["100.00"]
    context.organization.show_zero_usage_lines = True
    assert len(build_view(context, computed, "INV-2024-0001", TEMPLATE_VERSION)["lines"]) == 2


UPDATE_ACCOUNT = """mutation($id: ID!, $input: UpdateManagedAccountInput!) { updateManagedAccount(id: $id, input: $input) {
  __typename ... on ManagedAccountSaved { managedAccount { locale } } ... on UserError { code field } } }"""
UPDATE_ORGANIZATION = """mutation($input: UpdateOrganizationInput!) { updateOrganization(input: $input) { __typename
  ... on OrganizationUpdated { organization { locale showZeroUsageLines } } ... on UserError { code field } } }"""


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "foreign_owner"])
async def test_an_accounts_locale_is_set_by_its_owner_only(client, world, role):
    variables = {"id": to_base64("ManagedAccount", str(world.account.id)), "input": {"locale": "de"}}
    result = await gql(client, UPDATE_ACCOUNT, variables, token=world.tokens[role])
    await world.account.refresh_from_db()
    if role == "owner":
        assert result["data"]["updateManagedAccount"] == {"__typename": "ManagedAccountSaved", "managedAccount": {"locale": "de"}}
        assert world.account.locale == "de"
        read = await gql(
            client,
            "query($id: ID!) { node(id: $id) { ... on ManagedAccount { locale } } }",
            {"id": variables["id"]},
            token=world.tokens["customer"],
        )
        assert read["data"]["node"] == {"locale": "de"}
        cleared = await gql(client, UPDATE_ACCOUNT, {**variables, "input": {"locale": None}}, token=world.tokens[role])
        assert cleared["data"]["updateManagedAccount"]["managedAccount"] == {"locale": None}
    elif role == "foreign_owner":
        assert result["data"]["updateManagedAccount"]["__typename"] == "NotFoundError"
        assert world.account.locale is None
    else:
        assert error_codes(result) == ["FORBIDDEN"] and world.account.locale is None


@pytest.mark.parametrize("role", ["owner", "viewer", "customer", "foreign_owner"])
async def test_an_organizations_locale_and_zero_lines_are_set_by_its_owner_only(client, world, role):
    result = await gql(client, UPDATE_ORGANIZATION, {"input": {"locale": "fr", "showZeroUsageLines": True}}, token=world.tokens[role])
    mine = await Organization.get(id=world.org.id)
    foreign = await Organization.get(id=world.foreign_org.id)
    if role in ("owner", "foreign_owner"):
        assert result["data"]["updateOrganization"]["organization"] == {"locale": "fr", "showZeroUsageLines": True}
        changed, kept = (mine, foreign) if role == "owner" else (foreign, mine)
        assert (changed.locale, changed.show_zero_usage_lines) == ("fr", True)
        assert (kept.locale, kept.show_zero_usage_lines) == ("en", False)
    else:
        assert error_codes(result) == ["FORBIDDEN"] and mine.locale == "en"


@pytest.mark.parametrize("wrong", ["xx", "", "german", "de-DE-x"])
async def test_a_locale_outside_the_supported_list_is_a_typed_error(client, world, wrong):
    variables = {"id": to_base64("ManagedAccount", str(world.account.id)), "input": {"locale": wrong}}
    result = await gql(client, UPDATE_ACCOUNT, variables, token=world.tokens["owner"])
    assert result["data"]["updateManagedAccount"] == {"__typename": "ValidationError", "code": "INVALID", "field": "locale"}
    organization = await gql(client, UPDATE_ORGANIZATION, {"input": {"locale": wrong}}, token=world.tokens["owner"])
    assert organization["data"]["updateOrganization"] == {"__typename": "ValidationError", "code": "INVALID", "field": "locale"}
    await world.account.refresh_from_db()
    assert world.account.locale is None and (await Organization.get(id=world.org.id)).locale == "en"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_customer_e_mails_are_in_the_accounts_language(locale):
    from jobs.mailer import render_invoice_email, render_notification_email, render_reminder_email

    context = {
        "msp_company_name": "Northwind",
        "customer_name": "Contoso",
        "number": "INV-2024-0042",
        "total": "1234.5",
        "period_label": "September 2024",
        "currency": "EUR",
        "due_date": "2024-10-31",
        "payment_terms_days": 30,
        "locale": locale,
    }
    subject, text, html = render_invoice_email(context)
    _, reminder = render_reminder_email({**context, "amount_due": "1234.50", "days_after_due": 3})
    _, voided = render_notification_email("voided", {**context, "reason": "Issued twice"})
    invoice_word = translate(locale, "Invoice %(number)s", number="INV-2024-0042")
    assert subject.startswith(invoice_word) and translate(locale, "Kind regards,") in text
    if locale == "en":
        assert "1234.5 EUR" in text and "2024-10-31" in text
    else:
        money = format_currency(Decimal("1234.50"), "EUR", locale=locale)
        due = format_date(date(2024, 10, 31), "long", locale=locale)
        assert money in text and due in text and money in reminder and money in voided
        assert "Dear" not in text + reminder + voided and "Kind regards" not in html
        assert f'<html lang="{locale}">' in html


async def test_voiding_queues_the_void_copy_and_the_sweeper_queues_it_again(renderer, settings, world, redis):
    from datetime import timedelta

    from jobs.effects import following
    from jobs.generate import requeue_stuck
    from models.invoices.actions import void

    invoice = await _approved_and_printed(world, renderer, settings)
    async with following(redis):
        await void(await _principal(world.tokens["owner"]), [invoice.id], notify_customer=False)
    queued = [(job.function, job.args) for job in await redis.queued_jobs()]
    assert ("print_void_copy", (str(invoice.id),)) in queued
    # The job was lost (Redis emptied): the sweeper queues it again once the void is a while old.
    await redis.flushdb()
    await Invoice.filter(id=invoice.id).update(updated_at=datetime.now(UTC) - timedelta(hours=1))
    await requeue_stuck({"redis": redis, "settings": settings})
    assert ("print_void_copy", (str(invoice.id),)) in [(job.function, job.args) for job in await redis.queued_jobs()]


async def test_a_new_account_may_choose_its_language(client, world):
    create = """mutation($input: CreateManagedAccountInput!) { createManagedAccount(input: $input) {
      __typename ... on ManagedAccountSaved { managedAccount { locale } } ... on UserError { field } } }"""
    made = await gql(client, create, {"input": {"name": "Languages Ltd", "locale": "es"}}, token=world.tokens["owner"])
    assert made["data"]["createManagedAccount"] == {"__typename": "ManagedAccountSaved", "managedAccount": {"locale": "es"}}
    plain = await gql(client, create, {"input": {"name": "Languages Two Ltd"}}, token=world.tokens["owner"])
    assert plain["data"]["createManagedAccount"]["managedAccount"] == {"locale": None}
    wrong = await gql(client, create, {"input": {"name": "Languages Three Ltd", "locale": "klingon"}}, token=world.tokens["owner"])
    assert wrong["data"]["createManagedAccount"] == {"__typename": "ValidationError", "field": "locale"}
    viewer = await gql(client, create, {"input": {"name": "Languages Three Ltd", "locale": "de"}}, token=world.tokens["viewer"])
    assert error_codes(viewer) == ["FORBIDDEN"]


OCT = date(2024, 10, 1)
# What the generator writes itself, and how each language must read it back.
GENERATED = {
    "de": ("Aufschlag: Managed service", "Nach der Rechnungsstellung eingegangene Kosten für September 2024", "VAT (19 %)"),
    "fr": ("Majoration : Managed service", "Coûts de septembre 2024 reçus après facturation", "VAT (19 %)"),
}


async def _october_usage(world) -> None:
    """A line of October usage for `world.account`, so that its October invoice has a line to mark up."""
    from models import CostImport, CostRecord
    from models.costs import CostOrigin
    from tests import factories

    imp = await CostImport.create(
        organization=world.org, file_sha256="1" * 64, row_count=1, inserted_count=1, duplicate_count=0, origin=CostOrigin.MSP_DELEGATED
    )
    await CostRecord.create(
        organization=world.org,
        managed_account=world.account,
        cost_import=imp,
        fingerprint="october-usage",
        origin=CostOrigin.MSP_DELEGATED,
        billing_month=OCT,
        billing_period_start=datetime(2024, 10, 1, tzinfo=UTC),
        billing_period_end=datetime(2024, 11, 1, tzinfo=UTC),
        provider_name="AWS",
        sub_account_id="1",
        billed_cost=Decimal("200"),
        billing_currency="USD",
        service_name="Amazon EC2",
        service_category="Compute",
        charge_category="Usage",
        consumed_unit="Hrs",
        consumed_quantity=Decimal("10"),
    )
    await factories.summed_costs(world.org.id)


@pytest.mark.parametrize("locale", sorted(GENERATED))
async def test_the_generators_own_line_labels_are_in_the_invoices_language(renderer, world, locale):
    """A markup rule's line, a late cost's line (its month as Babel names it) and a percentage
    charge are written in the account's language: in the stored lines, the HTML and the PDF."""
    from models import BillingProfileCharge, BillingRule
    from models.actors import Actor
    from models.billing_periods import close_period
    from models.costs import import_costs
    from tests.test_corrections import _approved_september, restate
    from tests.test_costs_import import to_csv

    world.account.locale = locale
    await world.account.save()
    header, rows, _ = await _approved_september(world)
    await import_costs(world.org.id, to_csv(header, restate(rows, Decimal("2"))))  # a late cost of September
    await _october_usage(world)
    await BillingRule.create(
        organization=world.org,
        name="Managed service",
        kind="MARKUP",
        calculation="PERCENT",
        value=Decimal("10"),
        managed_account=world.account,
    )
    await BillingProfileCharge.create(billing_profile=world.profile, position=1, name="VAT", kind="PERCENT", value=Decimal("19"))
    await close_period(world.org.id, OCT, Actor.system("test"))
    october = await Invoice.get(managed_account_id=world.account.id, billing_period__start_date=OCT)
    context = await load_context(october.id)
    computed = await compute(context)
    markup, late, vat = GENERATED[locale]
    assert [(line.kind, spaced(line.description)) for line in computed.lines] == [
        ("USAGE", "AWS Amazon EC2 (Compute)"),
        ("RULE", markup),
        ("LATE_COST", late),
        ("TAX", vat),
    ]
    assert [line.description for line in computed.lines][1:] == [
        translate(locale, "Markup: %(name)s", name="Managed service"),
        translate(
            locale, "Costs for %(month)s received after invoicing", month=spaced(format_date(date(2024, 9, 1), "MMMM y", locale=locale))
        ),
        f"VAT ({format_percent(Decimal('0.19'), locale=locale)})",
    ]
    view = build_view(context, computed, "INV-2024-0002", TEMPLATE_VERSION)
    html = render_invoice_html(view)
    pdf = await renderer.render(html, page_label=page_label(locale))
    text = text_of(pdf)
    for label in (markup, late, vat):
        assert label in spaced(html) and label in text
    assert not any(english in text for english in ("Markup:", "Costs for", "received after invoicing"))


async def test_an_english_invoice_keeps_its_generated_labels_word_for_word(world):
    from tests.test_invoice_generation import SEPT as september

    await costs(world.org, world.account, [("", "", "", "12.5", None, None)])
    from models import BillingRule
    from models.billing_periods import close_period
    from models.invoices.lifecycle import Actor

    await BillingRule.create(organization=world.org, name="Care", kind="MARKUP", calculation="PERCENT", value=Decimal("10"))
    await close_period(world.org.id, september, Actor.system("test"))
    computed = await compute(await load_context((await Invoice.get(managed_account_id=world.account.id)).id))
    assert [line.description for line in computed.lines] == ["Cloud usage", "Markup: Care"]
    world.account.locale = "es"
    await world.account.save()
    computed = await compute(await load_context((await Invoice.get(managed_account_id=world.account.id)).id))
    assert [line.description for line in computed.lines] == ["Uso de la nube", "Recargo: Care"]


@pytest.mark.parametrize(
    "locale,label", [("en", "Credit on invoice INV-1"), ("de", "Gutschrift zur Rechnung INV-1"), ("nl", "Creditering van factuur INV-1")]
)
def test_a_credit_notes_own_line_is_in_its_invoices_language(locale, label):
    from models.credit_notes import amounts
    from models.credit_notes.tables import CreditMode

    printed = [{"position": 1, "kind": "USAGE", "description": "AWS Amazon EC2", "amount": Decimal("100.00")}]
    note = amounts.credit(CreditMode.AMOUNT, printed, {}, Decimal("100.00"), "EUR", "INV-1", None, "30", locale=locale)
    assert [(line.description, line.amount) for line in note] == [(label, Decimal("30.00"))]
