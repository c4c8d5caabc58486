"""A stored revision re-renders byte for byte: every view below, made the way generation and
credit notes make them (and by hand for what only older revisions carry), renders through
today's templates exactly as through the templates as they stood before they shared a base
(`tests/data/templates_before/`, a verbatim copy kept for this comparison only)."""

from __future__ import annotations

import base64
import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import FileSystemLoader

from jobs import rendering
from jobs.rendering import TEMPLATE_VERSION, render_credit_note_html, render_invoice_html, sample_view
from models import BillingProfileCharge, BillingRule, ExchangeRate, Invoice, InvoiceExtraLine, Organization
from models.billing_periods import close_period
from models.credit_notes.amounts import LineCredit
from models.credit_notes.operations import create_credit_note
from models.credit_notes.tables import CreditMode, CreditNote
from models.demo import load_demo
from models.invoices.generation.compute import compute
from models.invoices.generation.inputs import load_context
from models.invoices.generation.view import build_view
from models.invoices.lifecycle import Actor
from tests.test_credit_notes import approved
from tests.test_demo import SAMPLE
from tests.test_exports import _principal
from tests.test_invoice_generation import SEPT
from tests.test_invoice_generation import _costs as costs
from tests.test_rendering import hostile_view

BEFORE = Path(__file__).resolve().parent / "data" / "templates_before"
_before = rendering._env.overlay(loader=FileSystemLoader(BEFORE))
# A 1x1 PNG: the logo a billing profile stores, printed as a data: URL.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


# Added on purpose since documents have a language: the legal mention of reverse charge (Directive
# 2006/112/EC art. 226(11a)) on invoices printed with one; revisions printed before print without it.
REVERSE_CHARGE = '<p class="legal">Reverse charge</p>\n'


def _reverse_charge(view: dict[str, Any]) -> bool:
    return "locale" in view and (view.get("einvoice") or {}).get("vat", {}).get("category") == "REVERSE_CHARGE"


def assert_unchanged(views: list[dict[str, Any]], document: str) -> None:
    render = render_invoice_html if document == "invoice" else render_credit_note_html
    for view in views:
        before = _before.get_template(f"{document}/v{view['template_version']}.html").render(copy.deepcopy(view))
        now = render(view)
        if _reverse_charge(view):
            assert now.count(REVERSE_CHARGE) == 1, view["number"]
            now = now.replace(REVERSE_CHARGE, "")
        assert now.encode() == before.encode(), view["number"]


def _by_hand() -> list[dict[str, Any]]:
    """The sample and what its parts can be: every optional part present, absent, or missing
    from the view altogether (revisions made before it existed), and hostile text everywhere."""
    full = sample_view()
    full.update(
        kind="SUPPLEMENTARY",
        provider="AWS",
        memo="Restated <usage> & fees",
        payment_terms_days=0,
        exchanges=[{"from": "GBP", "to": "EUR", "rate": "1.17"}, {"from": "USD", "to": "EUR", "rate": "0.921"}],
        late_costs=[
            {
                "description": "Costs for August 2024 received after invoicing",
                "amount": "12.30",
                "cost_currency": "USD",
                "cost_amount": "13.3550",
            },
            {"description": "Costs for July 2024 received after invoicing", "amount": "-1.00"},
        ],
    )
    full["lines"][0].update(cost_currency="USD", cost_amount="418.77")
    bare = sample_view()
    bare.update(lines=[], adjustments=[], charges=[], notes=None, exchange=None, payment_terms_days=None)
    bare["msp"].update(address_lines=[], business_fields=[], banking_fields=[], logo_data_url="https://x.example/l.png")
    bare["customer"].update(address_lines=[], business_fields=[], po_number="")
    current = dict(sample_view(), kind="REGULAR", provider=None, memo=None, exchanges=[], late_costs=[])
    return [
        sample_view(),
        full,
        bare,
        current,
        hostile_view("<script>alert('1')</script> & \"q\""),
        dict(hostile_view("{{ 7*7 }}"), number="INV-{% raw %}"),
    ]


async def _generated(invoice: Invoice, number: str) -> dict[str, Any]:
    context = await load_context(invoice.id)
    return build_view(context, await compute(context), number, TEMPLATE_VERSION)


async def _invoice_views(world) -> list[dict[str, Any]]:
    """Views generation makes: one currency with rules, charges, a one-off item, a logo and every
    party field; costs in three currencies converted; reverse charge with its e-invoice section."""
    profile, account = world.profile, world.account
    profile.logo, profile.logo_content_type = PNG, "image/png"
    profile.address_line1, profile.city, profile.postal_code, profile.country = "1 Quay St", "Dublin", "D02", "Ireland"
    profile.business_fields = [{"key": "Company no.", "value": "IE 123"}]
    profile.banking_fields = [{"key": "IBAN", "value": "IE29 AIBK 9311 5212 3456 78"}]
    profile.invoice_notes = "Thank you.\nQuestions: billing@northwind.example"
    await profile.save()
    account.official_company_name, account.po_number, account.payment_terms_days = "Contoso Ltd", "PO-7", 0
    account.address_line1, account.address_line2, account.region = "2 Main St", "Suite <5>", "Leinster"
    account.business_fields = [{"key": "VAT", "value": "IE9S99999L"}]
    await account.save()
    await costs(
        world.org,
        account,
        [
            ("AWS", "Amazon EC2", "Compute", "1234.5678", "Hrs", "744"),
            ("AWS", "Amazon S3", "Storage", "0.0004", "GB-Mo", "0.01"),
            ("Azure", "Virtual Machines", "", "99.99", None, None),
        ],
    )
    for name, kind, calculation, value in (
        ("Activate", "CREDIT", "FIXED", "50"),
        ("Loyalty", "DISCOUNT", "PERCENT", "5"),
        ("Managed", "MARKUP", "PERCENT", "8"),
    ):
        await BillingRule.create(organization=world.org, name=name, kind=kind, calculation=calculation, value=Decimal(value))
    await BillingProfileCharge.create(billing_profile=profile, position=1, name="VAT", kind="PERCENT", value=Decimal(23))
    await BillingProfileCharge.create(billing_profile=profile, position=2, name="Support", kind="FIXED", value=Decimal(15), is_tax=False)
    await close_period(world.org.id, SEPT, Actor.system("test"))
    first = await Invoice.get(managed_account_id=account.id)
    await InvoiceExtraLine.create(invoice=first, position=1, description="Onboarding", quantity=2, unit_price=Decimal("150"))
    views = [await _generated(first, "INV-2024-0001")]

    other = world.other_account
    other.currency = "EUR"
    await other.save()
    await costs(
        world.org,
        other,
        [
            ("AWS", "Amazon EC2", "Compute", "100.00", "Hrs", "10"),
            ("GCP", "BigQuery", "", "20.00", "TiB", "2", "GBP"),
            ("Azure", "Storage", "", "7.77", None, None, "EUR"),
        ],
    )
    for base, rate in (("USD", "0.921"), ("GBP", "1.17")):
        await ExchangeRate.create(organization=world.org, month=SEPT, base_currency=base, currency="EUR", rate=Decimal(rate))
    views.append(await _generated(await Invoice.get(managed_account_id=other.id), "INV-2024-0002"))

    profile.vat_category, profile.country_code, profile.vat_id = "REVERSE_CHARGE", "IE", "IE6388047V"
    profile.iban, profile.endpoint_scheme, profile.endpoint_id = "IE29AIBK93115212345678", "9935", "IE6388047V"
    await profile.save()
    await BillingProfileCharge.filter(billing_profile=profile, name="VAT").delete()
    account.country_code, account.vat_id, account.endpoint_scheme, account.endpoint_id = "DE", "DE136695976", "9930", "DE136695976"
    await account.save()
    await Organization.filter(id=world.org.id).update(einvoicing=True)
    await Invoice.filter(id=first.id).update(memo="Reverse charge: the customer accounts for VAT")
    reverse = await _generated(first, "INV-2024-0003")
    assert reverse["einvoice"]["problems"] == [] and reverse["einvoice"]["vat"]["category"] == "REVERSE_CHARGE"
    return [*views, reverse]


async def test_every_invoice_view_renders_as_before(world):
    views = _by_hand() + await _invoice_views(world)
    assert any(view["msp"]["logo_data_url"] for view in views)
    assert any(len(view["exchanges"]) > 1 for view in views if "exchanges" in view)
    assert_unchanged(views, "invoice")


async def test_the_demo_invoices_render_as_before():
    """The demo's September: six customers of the FOCUS sample, with VAT and a support plan."""
    demo = await load_demo(SAMPLE)
    invoices = await Invoice.filter(organization_id=demo.organization.id, billing_period__start_date=SEPT)
    views = [await _generated(invoice, f"INV-2024-{i:04d}") for i, invoice in enumerate(invoices, start=1)]
    assert len(views) == 6
    assert_unchanged(views, "invoice")


async def test_every_credit_note_view_renders_as_before(world):
    """A credit note of each kind (in full, by lines, by amount), of an invoice whose revision
    kept its parties and of one whose parties are read as they stand now."""
    principal = await _principal(world.tokens["owner"])
    kept = await approved(world.account, "INV-2024-0001", snapshot=sample_view())
    now = await approved(world.other_account, "INV-2024-0002")
    await create_credit_note(
        principal, kept.id, reason="Billed <twice> & more", mode=CreditMode.LINES, lines=[LineCredit(1, Decimal("40")), LineCredit(2)]
    )
    await create_credit_note(principal, kept.id, reason="Goodwill", mode=CreditMode.AMOUNT, amount=Decimal("12.34"))
    await create_credit_note(principal, kept.id, reason="The rest", mode=CreditMode.FULL)
    await create_credit_note(principal, now.id, reason="Wrong customer", mode=CreditMode.FULL)
    views = [note.snapshot for note in await CreditNote.all().order_by("number")]
    assert len(views) == 4 and {view["msp"]["company_name"] for view in views} == {
        "Northwind Cloud Services GmbH",
        "Cloudwise Ltd",
    }
    hostile = copy.deepcopy(views[0])
    hostile.update(reason="<script>x</script>", msp=hostile_view("<b>&</b>")["msp"], customer=hostile_view("'")["customer"])
    hostile["invoice"]["issue_date"] = None
    assert_unchanged([*views, hostile], "credit_note")


@pytest.mark.parametrize("document", ["invoice", "credit_note"])
def test_the_copy_before_is_not_the_template_in_use(document):
    """The comparison reads two different sets of templates (else it proves nothing)."""
    assert (BEFORE / document / "v1.html").read_bytes() != (rendering.TEMPLATES_DIR / document / "v1.html").read_bytes()
