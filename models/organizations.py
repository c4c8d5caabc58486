"""MSP organizations: the tenant boundary that nothing crosses, and their settings."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import Scope, TimestampMixin, enum_check
from models.errors import NotFound, ValidationFailed
from models.locales import DEFAULT_LOCALE, check_locale
from models.text import clean_text, normalize_email


class ExportDateFormat(str, Enum):
    DAY_FIRST = "DD/MM/YYYY"
    MONTH_FIRST = "MM/DD/YYYY"
    ISO = "YYYY-MM-DD"


MAX_DATA_INGESTION_DELAY_DAYS = 27
MAX_PAYMENT_TERMS_DAYS = 365
MAX_REMINDER_STEPS = 10
MAX_REMINDER_DAY = 365
MAX_AUTO_SEND_GRACE_HOURS = 720
MAX_COST_SYNC_HOURS = 168
MAX_DATA_SETTLE_HOURS = 720
MAX_CLOSE_DAY = 28

class LateCostBilling(str, Enum):
    """How costs delivered for a month after its invoice was approved are billed."""

    # A labelled line on the account's next invoice.
    NEXT_INVOICE = "NEXT_INVOICE"
    # A supplementary invoice for that month, made at the next month close.
    SUPPLEMENTARY_INVOICE = "SUPPLEMENTARY_INVOICE"


class EmailAttachment(str, Enum):
    """What the approval e-mail attaches: the plain PDF, or the Factur-X PDF (the same PDF,
    PDF/A-3 with its EN 16931 XML inside)."""

    PDF = "PDF"
    FACTURX = "FACTURX"


class Organization(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=255)
    timezone = fields.CharField(max_length=64, default="UTC")
    invoice_prefix = fields.CharField(max_length=16, default="INV")
    # Cloud data arrives late (AWS: up to three days): the month closes this many days after
    # its end, in the organization's time zone (0: on the 1st).
    data_ingestion_delay_days = fields.SmallIntField(default=0, db_default=0)
    export_date_format = fields.CharEnumField(
        ExportDateFormat, max_length=10, default=ExportDateFormat.DAY_FIRST
    )
    # Checks before approval flag a total or a service that changed month over month by at
    # least this percentage and this amount (in the invoice currency) both.
    check_change_percent = fields.DecimalField(max_digits=7, decimal_places=2, default=25, db_default=25)
    check_change_amount = fields.DecimalField(max_digits=20, decimal_places=4, default=100, db_default=100)
    late_cost_billing = fields.CharEnumField(
        LateCostBilling, max_length=24, default=LateCostBilling.NEXT_INVOICE, db_default=LateCostBilling.NEXT_INVOICE
    )
    # Given to a managed account created without payment terms of its own.
    default_payment_terms_days = fields.SmallIntField(default=30, db_default=30)
    # The display name and Reply-To of the e-mails sent for the organization ("": the
    # mailer's SMTP_FROM name, and no Reply-To).
    email_sender_name = fields.CharField(max_length=255, default="", db_default="")
    email_reply_to = fields.CharField(max_length=320, default="", db_default="")
    # Days after the due date on which an unpaid invoice's billing e-mails are reminded.
    reminder_days: list[int] = fields.JSONField(default=list, db_default=[])
    # Defaults for accounts' automatic invoicing: generate at the month's close; then approve
    # and send after a grace period during which the queued send can be cancelled.
    auto_invoice = fields.BooleanField(default=False, db_default=False)
    auto_send = fields.BooleanField(default=False, db_default=False)
    auto_send_grace_hours = fields.SmallIntField(default=24, db_default=24)
    # E-invoicing chosen: generation refuses (ERROR, with what is missing) an invoice that
    # lacks what EN 16931 needs, rather than approve one that cannot be sent electronically.
    einvoicing = fields.BooleanField(default=False, db_default=False)
    # Hours between two scheduled syncs of the organization's cost sources (null: the server's
    # COST_SOURCE_SYNC_HOURS).
    cost_sync_hours = fields.SmallIntField(null=True)
    # A month's data is complete once a source's latest delivery for it was written this many
    # hours after the month ended (AWS refreshes a month for days after its end).
    data_settle_hours = fields.SmallIntField(default=72, db_default=72)
    # With cost sources, the scheduled close waits for complete data until this day of the next
    # month (never before the data ingestion delay's day), then closes with a warning.
    latest_close_day = fields.SmallIntField(default=15, db_default=15)
    email_attachment = fields.CharEnumField(
        EmailAttachment, max_length=16, default=EmailAttachment.PDF, db_default=EmailAttachment.PDF
    )
    # The language of documents and e-mails for accounts that choose none (models/locales.py).
    locale = fields.CharField(max_length=8, default=DEFAULT_LOCALE, db_default=DEFAULT_LOCALE)
    # Usage lines whose amount rounds to zero are left off printed invoices unless this is on.
    show_zero_usage_lines = fields.BooleanField(default=False, db_default=False)

    class Meta:
        table = "organizations"
        constraints = (
            CheckConstraint(check="invoice_prefix ~ '^[A-Z0-9]{1,16}$'", name="organizations_prefix_valid"),
            CheckConstraint(check="btrim(name) <> ''", name="organizations_name_present"),
            enum_check("organizations", "export_date_format", ExportDateFormat),
            enum_check("organizations", "late_cost_billing", LateCostBilling),
            CheckConstraint(
                check="check_change_percent >= 0 AND check_change_amount >= 0", name="organizations_check_thresholds"
            ),
            CheckConstraint(
                check=f"data_ingestion_delay_days BETWEEN 0 AND {MAX_DATA_INGESTION_DELAY_DAYS}",
                name="organizations_ingestion_delay_range",
            ),
            CheckConstraint(
                check=f"default_payment_terms_days BETWEEN 0 AND {MAX_PAYMENT_TERMS_DAYS}",
                name="organizations_payment_terms_range",
            ),
            CheckConstraint(
                check=f"auto_send_grace_hours BETWEEN 0 AND {MAX_AUTO_SEND_GRACE_HOURS}",
                name="organizations_grace_range",
            ),
            CheckConstraint(check="jsonb_typeof(reminder_days) = 'array'", name="organizations_reminders_list"),
            CheckConstraint(
                check=f"cost_sync_hours BETWEEN 1 AND {MAX_COST_SYNC_HOURS}"
                f" AND data_settle_hours BETWEEN 0 AND {MAX_DATA_SETTLE_HOURS}"
                f" AND latest_close_day BETWEEN 1 AND {MAX_CLOSE_DAY}",
                name="organizations_cost_data_ranges",
            ),
            enum_check("organizations", "email_attachment", EmailAttachment),
            CheckConstraint(
                check="email_attachment = 'PDF' OR einvoicing", name="organizations_facturx_needs_einvoicing"
            ),
        )


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(value: Any, field: str = "timezone") -> str:
    """An IANA time zone name (Europe/London), as the system's time zone database knows it."""
    if not isinstance(value, str) or value not in _time_zones():
        raise ValidationFailed(f"'{str(value)[:64]}' is not an IANA time zone.", field=field)
    return value


def check_prefix(value: Any, field: str = "invoicePrefix") -> str:
    if not (isinstance(value, str) and value.isascii() and value.isalnum() and value.isupper()
            and 1 <= len(value) <= 16):
        raise ValidationFailed("The prefix is 1 to 16 capital letters or digits.", field=field)
    return value


def _whole(value: Any, low: int, high: int, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"{what} is {low} to {high}.", field=field)
    return value


def check_reminder_days(value: Any) -> list[int]:
    """Days after the due date, each once, in order (at most MAX_REMINDER_STEPS)."""
    field = "reminderDays"
    if not isinstance(value, (list, tuple)):
        raise ValidationFailed("Expected a list of days.", field=field)
    days = sorted({_whole(day, 1, MAX_REMINDER_DAY, field, "A reminder day") for day in value})
    if len(days) > MAX_REMINDER_STEPS:
        raise ValidationFailed(f"At most {MAX_REMINDER_STEPS} reminders.", field=field)
    return days


def _reply_to(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationFailed("Expected an e-mail address.", field="emailReplyTo")
    return normalize_email(value, field="emailReplyTo") if value.strip() else ""


def _sender_name(value: Any) -> str:
    name = clean_text(value, "emailSenderName", 255, False)
    # A display name goes into a header: one line, and nothing that ends it early.
    if any(c in name for c in '\r\n<>"'):
        raise ValidationFailed("The sender name is one line without <, > or quotes.", field="emailSenderName")
    return name


# Column -> its check, for the settings `update_organization` changes column for column.
_CHECKS = {
    "name": lambda value: clean_text(value, "name", 255, True),
    "timezone": check_timezone,
    "invoice_prefix": check_prefix,
    "data_ingestion_delay_days": lambda value: _whole(
        value, 0, MAX_DATA_INGESTION_DELAY_DAYS, "dataIngestionDelayDays", "The data ingestion delay (days)"
    ),
    "default_payment_terms_days": lambda value: _whole(
        value, 0, MAX_PAYMENT_TERMS_DAYS, "defaultPaymentTermsDays", "Payment terms (days)"
    ),
    "email_sender_name": _sender_name,
    "email_reply_to": _reply_to,
    "reminder_days": check_reminder_days,
    "auto_invoice": lambda value: _flag(value, "autoInvoice.enabled"),
    "auto_send": lambda value: _flag(value, "autoInvoice.approveAndSend"),
    "auto_send_grace_hours": lambda value: _whole(
        value, 0, MAX_AUTO_SEND_GRACE_HOURS, "autoInvoice.graceHours", "The grace period (hours)"
    ),
    # 0 goes back to the server's interval (null keeps the value in the API's input).
    "cost_sync_hours": lambda value: _whole(
        value, 0, MAX_COST_SYNC_HOURS, "costData.syncEveryHours", "The sync interval (hours)"
    ) or None,
    "data_settle_hours": lambda value: _whole(
        value, 0, MAX_DATA_SETTLE_HOURS, "costData.settleHours", "The settle time (hours)"
    ),
    "latest_close_day": lambda value: _whole(value, 1, MAX_CLOSE_DAY, "costData.latestCloseDay", "The latest close day"),
    "late_cost_billing": lambda value: _choice(LateCostBilling, value, "lateCostBilling"),
    "locale": check_locale,
    "show_zero_usage_lines": lambda value: _flag(value, "showZeroUsageLines"),
    "check_change_percent": lambda value: _threshold(value, Decimal(100000), "checks.changePercent"),
    "check_change_amount": lambda value: _threshold(value, Decimal("1e12"), "checks.changeAmount"),
}
SETTINGS_FIELDS = frozenset(_CHECKS) | {"next_invoice_number"}


def _choice(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValidationFailed(f"One of {', '.join(member.value for member in enum)}.", field=field) from None


def _threshold(value: Any, ceiling: Decimal, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValidationFailed("Expected a number.", field=field) from None
    if not number.is_finite() or not 0 <= number < ceiling or number != number.quantize(Decimal("0.0001")):
        raise ValidationFailed(f"A number from 0, below {ceiling:,.0f}, with at most 4 decimals.", field=field)
    return number


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed("Expected true or false.", field=field)
    return value


def latest_close_day(organization: Organization) -> int:
    """The day of the next month by which a month closes whatever its data: the latest close
    day, or the data ingestion delay's day when that is later."""
    return max(organization.latest_close_day, 1 + organization.data_ingestion_delay_days)


def organization_year(organization: Organization, now: datetime | None = None) -> int:
    """The current year where the organization is (numbers are per organization and year)."""
    return (now or datetime.now(UTC)).astimezone(zoneinfo.ZoneInfo(organization.timezone)).year


async def create_organization(name: str, *, timezone: str = "UTC", invoice_prefix: str = "INV") -> Organization:
    """A new MSP organization (the command line's `create-organization`)."""
    return await Organization.create(
        name=_CHECKS["name"](name), timezone=check_timezone(timezone), invoice_prefix=check_prefix(invoice_prefix),
    )


async def next_invoice_number(organization: Organization, year: int | None = None, connection=None) -> int:
    """The number the organization's next invoice of `year` (default: this year) will take."""
    rows = await (connection or Organization._meta.db).execute_query_dict(
        "SELECT last_value FROM invoice_number_counters WHERE organization_id = $1 AND year = $2",
        [str(organization.id), year or organization_year(organization)],
    )
    return (rows[0]["last_value"] if rows else 0) + 1


async def _set_next_number(organization: Organization, value: Any, connection) -> None:
    """Numbers stay gapless: the year's first number may start anywhere (a business moving
    from another system continues its series), but once a number of the year is taken the
    next one is the one after it, neither lower (a number used twice) nor higher (a hole)."""
    field = "nextInvoiceNumber"
    value = _whole(value, 1, 99_999_999, field, "The next invoice number")
    year = organization_year(organization)
    await connection.execute_query(
        "INSERT INTO invoice_number_counters (id, organization_id, year, last_value)"
        " VALUES (gen_random_uuid(), $1, $2, 0) ON CONFLICT (organization_id, year) DO NOTHING",
        [str(organization.id), year],
    )
    # Locked until commit: numbering takes its numbers under the same row lock.
    rows = await connection.execute_query_dict(
        "SELECT last_value FROM invoice_number_counters WHERE organization_id = $1 AND year = $2 FOR UPDATE",
        [str(organization.id), year],
    )
    used = rows[0]["last_value"]
    if used and value != used + 1:
        raise ValidationFailed(
            f"{used} numbers of {year} are taken: the next one is {used + 1}, so that numbers "
            "have no gaps and none is used twice.", field=field,
        )
    await connection.execute_query(
        "UPDATE invoice_number_counters SET last_value = $3 WHERE organization_id = $1 AND year = $2",
        [str(organization.id), year, value - 1],
    )


async def update_organization(principal, changes: dict[str, Any]) -> Organization:
    """Change the principal's organization's settings (owners only); only the given ones
    change. Every value is checked before anything is written: all change, or none."""
    unknown = set(changes) - SETTINGS_FIELDS
    if unknown:
        raise TypeError(f"Not organization settings: {', '.join(sorted(unknown))}")
    if principal.scope != Scope.OWNER:
        raise NotFound("No such organization.")
    columns = {column: _CHECKS[column](value) for column, value in changes.items() if column in _CHECKS}
    async with in_transaction() as connection:
        organization = await Organization.select_for_update().using_db(connection).get(id=principal.organization_id)
        before = snapshot(organization)
        organization.update_from_dict(columns)
        if "next_invoice_number" in changes:
            await _set_next_number(organization, changes["next_invoice_number"], connection)
        await organization.save(using_db=connection)
        numbered = {"next_invoice_number": changes["next_invoice_number"]} if "next_invoice_number" in changes else {}
        after = snapshot(organization, **numbered)
        await record_change(connection, AuditEntity.ORGANIZATION, organization.id, organization.id, before, after)
    return organization


async def set_einvoicing(principal, einvoicing: bool | None, email_attachment: EmailAttachment | None) -> Organization:
    """Choose e-invoicing (generation then refuses an invoice that lacks what EN 16931 needs)
    and what the approval e-mail attaches; a None keeps the setting. The Factur-X attachment
    needs e-invoicing: turning it off goes back to the plain PDF."""
    organization = await Organization.get(id=principal.organization_id)
    wanted = organization.einvoicing if einvoicing is None else einvoicing
    attachment = email_attachment or organization.email_attachment
    if email_attachment is None and not wanted:
        attachment = EmailAttachment.PDF
    if attachment == EmailAttachment.FACTURX and not wanted:
        raise ValidationFailed(
            "The Factur-X attachment needs e-invoicing: set einvoicing to true as well.", field="emailAttachment"
        )
    async with in_transaction() as connection:
        await Organization.filter(id=organization.id).using_db(connection).update(einvoicing=wanted, email_attachment=attachment)
        changed = await Organization.filter(id=organization.id).using_db(connection).get()
        await record_change(connection, AuditEntity.ORGANIZATION, changed.id, changed.id, snapshot(organization), snapshot(changed))
    return changed
