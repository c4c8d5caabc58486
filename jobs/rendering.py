"""Step one of printing an invoice: the view (plain JSON values kept on the revision) to HTML.

Pure and browser-free. Every field is escaped (autoescape on, also for string templates) and
the page references nothing outside itself: the stylesheet is inlined, the logo is a data:
URL and fonts are the system's. The template version is stored on the invoice, so an old
revision renders with the template it was made with.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from jobs import locales
from models.currencies import round_money

TEMPLATE_VERSION = "1"
TEMPLATE_VERSIONS = ("1",)
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def _locale(context: Context) -> str:
    """The view's locale; a view printed before documents had one is English."""
    return locales.context_locale(context)


@pass_context
def _month(context: Context, period: dict[str, Any]) -> str:
    """A billing period's month: its stored label in English (as it always printed), else
    its first day's month in the view's language."""
    if _locale(context) == "en" or not period.get("start"):
        return period["label"]
    return locales.format_month(period["start"], _locale(context))


@pass_context
def _charge_label(context: Context, charge: dict[str, Any]) -> str:
    """A tax or charge as printed: its description, with its rate written the locale's way."""
    percent = charge.get("percent")
    if _locale(context) == "en" or percent is None:
        return charge["description"]
    name = charge["description"].removesuffix(f" ({percent}%)")
    return f"{name} ({locales.format_percent_value(percent, _locale(context))})"


@pass_context
def _rate(context: Context, value: str) -> str:
    """An exchange rate: as stored in English, in the locale's digits elsewhere."""
    return value if _locale(context) == "en" else locales.format_quantity(value, _locale(context))


def _localized(format_value: Any) -> Any:
    """A formatting function as a filter that takes the view's locale from its context."""

    @pass_context
    def run(context: Context, value: Any, *args: Any) -> str:
        return format_value(value, *args, locale=_locale(context))

    return run


_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    # .html escapes; the .css include must not (entities are not decoded inside <style>).
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def configure(env: Environment) -> None:
    """Give `env` what the printed documents' templates use: `_()` in the view's locale,
    `language()` and the formatting filters (also an organization's own templates' sandbox)."""
    locales.install_gettext(env)
    env.globals["language"] = pass_context(_locale)
    env.filters.update(
        money=_localized(locales.format_money), amount=_localized(locales.format_amount),
        price=_localized(locales.format_price), quantity=_localized(locales.format_quantity),
        date=_localized(locales.format_date), month=_month, charge_label=_charge_label, rate=_rate,
    )


configure(_env)


def render_invoice_html(view: dict[str, Any]) -> str:
    """The invoice as one self-contained HTML document, with the template of
    `view["template_version"]`."""
    version = view["template_version"]
    if version not in TEMPLATE_VERSIONS:
        raise ValueError(f"Unknown invoice template version {version!r}.")
    return _env.get_template(f"invoice/v{version}.html").render(view)


CREDIT_NOTE_TEMPLATE_VERSIONS = ("1",)


def render_credit_note_html(view: dict[str, Any]) -> str:
    """The credit note as one self-contained HTML document, in the invoice's template family
    (the same stylesheet), with the template of `view["template_version"]`."""
    version = view["template_version"]
    if version not in CREDIT_NOTE_TEMPLATE_VERSIONS:
        raise ValueError(f"Unknown credit note template version {version!r}.")
    return _env.get_template(f"credit_note/v{version}.html").render(view)


STATEMENT_TEMPLATE_VERSIONS = ("1",)


def render_statement_html(view: dict[str, Any]) -> str:
    """A statement of account (models/statements.py's view) as one self-contained HTML document,
    in the invoice's family (the same stylesheet)."""
    version = view["template_version"]
    if version not in STATEMENT_TEMPLATE_VERSIONS:
        raise ValueError(f"Unknown statement template version {version!r}.")
    return _env.get_template(f"statement/v{version}.html").render(view)


_SAMPLE_LOGO = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAACqaXHeAAAA70lEQVR42u2byxHDMAhE1ZErSkNpOm4hB1h2xWPGV4l9HpuP0DkYJrP"
    "n8/3986wTfBWQKtFxMLqF24JQC7cCMS1+DIKL8BEQruIlENzFt0JIEd8CIU18KYRU8WUQ1A5ZAZh2ZBSC05sY2d/xhyTb3zksSXxwj8"
    "utPijCUQWkNghJ8ftqAF05Q1zWJ4WQmM6uAFAN4bpmR8k6yZVdyVrppe0KAK2fAQAAAAAAAIAwuDgRWp8KUwxRDtMQoSVGU5S2OAcjH"
    "I1xOMrxOAMSjMgwJMWYHIOSjMoyLM24PBcmuDLDpSlDECfJVoquAHIwTGYvB0kToXnvGCkAAAAASUVORK5CYII="
)


def sample_view() -> dict[str, Any]:
    """A realistic, internally consistent view: usage from three clouds converted from USD
    to EUR, a credit, a discount and a markup, VAT and a support fee."""
    currency = "EUR"
    usage = [
        ("Amazon EC2 – m6i.xlarge, eu-central-1", "AWS", "Amazon Elastic Compute Cloud", "2184", "Hrs", "0.1766", "385.69"),
        ("Amazon RDS – db.r6g.large PostgreSQL, Multi-AZ", "AWS", "Amazon Relational Database Service", "720", "Hrs", "0.3840", "276.48"),
        ("Amazon S3 – Standard storage", "AWS", "Amazon Simple Storage Service", "4210.5", "GB-Mo", "0.0225", "94.74"),
        ("Amazon CloudFront – data transfer out, Europe", "AWS", "Amazon CloudFront", "1830.25", "GB", "0.0783", "143.31"),
        ("AWS Support (Business)", "AWS", "AWS Support", None, None, None, "100.00"),
        ("Virtual Machines – D4s v5, West Europe", "Azure", "Virtual Machines", "1488", "Hours", "0.1768", "263.08"),
        ("Azure Blob Storage – Hot LRS", "Azure", "Storage", "980", "GB", "0.0170", "16.66"),
        ("BigQuery – analysis", "GCP", "BigQuery", "12.4", "TiB", "5.7500", "71.30"),
        ("Cloud Run – vCPU time", "GCP", "Cloud Run", "1250000", "vCPU-s", "0.0000221", "27.63"),
    ]
    lines: list[dict[str, Any]] = [
        {"description": d, "provider": p, "service": s, "quantity": q, "unit": u, "unit_price": up, "amount": a}
        for d, p, s, q, u, up, a in usage
    ]
    adjustments: list[dict[str, Any]] = [
        {"description": "AWS Activate credit", "amount": "-150.00"},
        {"description": "Committed-use discount 5% (AWS)", "amount": "-50.01"},
        {"description": "Managed services fee 8% (Azure, GCP)", "amount": "30.29"},
    ]
    subtotal = sum(Decimal(row["amount"]) for row in lines + adjustments)
    charges: list[dict[str, Any]] = [
        {"description": "Support plan", "amount": "45.00", "is_tax": False},
        {"description": "VAT 19%", "amount": str(round_money(subtotal * Decimal("0.19"), currency)), "is_tax": True},
    ]
    total = subtotal + sum(Decimal(charge["amount"]) for charge in charges)
    return {
        "template_version": TEMPLATE_VERSION,
        "number": "INV-2024-0042",
        "issue_date": "2024-10-01",
        "due_date": "2024-10-31",
        "payment_terms_days": 30,
        "period": {"label": "September 2024", "start": "2024-09-01", "end": "2024-09-30"},
        "currency": currency,
        "msp": {
            "company_name": "Northwind Cloud Services GmbH",
            "address_lines": ["Friedrichstraße 68", "10117 Berlin", "Germany"],
            "business_fields": [
                {"key": "VAT ID", "value": "DE 298 114 537"},
                {"key": "Commercial register", "value": "HRB 201337 B, Amtsgericht Charlottenburg"},
            ],
            "banking_fields": [
                {"key": "Bank", "value": "Deutsche Bank AG"},
                {"key": "Account holder", "value": "Northwind Cloud Services GmbH"},
                {"key": "IBAN", "value": "DE89 3704 0044 0532 0130 00"},
                {"key": "BIC", "value": "COBADEFFXXX"},
            ],
            "logo_data_url": _SAMPLE_LOGO,
        },
        "customer": {
            "name": "Contoso Retail",
            "official_company_name": "Contoso Retail Europe B.V.",
            "address_lines": ["Herengracht 182", "1016 BR Amsterdam", "Netherlands"],
            "business_fields": [{"key": "VAT ID", "value": "NL 8531 42 976 B01"}],
            "po_number": "PO-77821",
            "billing_emails": ["accounts.payable@contoso-retail.example"],
        },
        "lines": lines,
        "adjustments": adjustments,
        "subtotal": str(subtotal),
        "charges": charges,
        "total": str(total),
        "exchange": {"from": "USD", "to": "EUR", "rate": "0.921"},
        "notes": "Thank you for your business.\nQuestions about this invoice: billing@northwind.example",
    }
