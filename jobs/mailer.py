"""The mailer: builds one message and delivers it over SMTP, or files it in the outbox.

`send_mail` reports each recipient separately, because one SMTP transaction can be accepted
for some recipients and refused for others. Failures that concern the whole message are
exceptions: `MailTransientError` (the server could not be reached; the caller retries) and
`MailPermanentError` (retrying cannot help until someone changes the configuration).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import ssl
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path, PurePath
from typing import TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import jinja2

from infra import metrics
from jobs.locales import day_text, install_gettext, money_text
from jobs.rendering import TEMPLATES_DIR
from models.errors import ValidationFailed
from models.organizations import Organization
from models.text import normalize_email

SMTP_TIMEOUT = 30.0
NOTIFICATION_KINDS = frozenset({"approved", "voided", "refunded", "credit_refunded"})
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$", re.IGNORECASE)
_MAX_FILENAME = 120

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
# In the language of the values each message is rendered with (`locale`, English without one).
install_gettext(_templates)
_templates.filters.update(money_text=money_text, day=day_text)


class MailError(Exception):
    """The message as a whole was not delivered."""


class MailTransientError(MailError):
    """The server could not be reached, timed out or answered 4xx: worth retrying later."""


class MailPermanentError(MailError):
    """Authentication failed, the sender was refused for good, or the configuration is wrong."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/pdf"


@dataclass(frozen=True)
class RecipientOutcome:
    recipient: str
    delivered: bool
    # The server's code and message, or the outbox file the message was written to.
    detail: str


async def send_mail(
    settings,
    *,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    reply_to: str | None = None,
    sender_name: str | None = None,
    message_id_domain: str | None = None,
) -> list[RecipientOutcome]:
    """Send one message to every address of `to` in one SMTP transaction (or write it to
    the outbox when `settings.smtp_url` is unset). `sender_name` replaces the display name
    of SMTP_FROM (its address stays: the server is allowed to send as it). Raises
    `ValidationFailed` for bad input before anything is sent."""
    recipients = _recipients(to)
    if _has_line_break(subject):
        raise ValidationFailed("The subject must be a single line.", field="subject")
    sender = _sender(settings.smtp_from)
    reply_to = _address(reply_to, "replyTo") if reply_to is not None else None
    from_header = settings.smtp_from
    if sender_name:
        if _has_line_break(sender_name):
            raise ValidationFailed("The sender name must be a single line.", field="senderName")
        from_header = str(Address(display_name=sender_name, addr_spec=sender))
    now = datetime.now(UTC)
    message = _build(
        from_header, recipients, subject.strip(), text, html, attachments, reply_to, now,
        message_id_domain or Address(addr_spec=sender).domain,
    )
    if settings.smtp_url:
        try:
            outcomes = await _deliver(settings.smtp_url, message, sender, recipients)
        except MailError:
            metrics.EMAILS.labels("failed").inc(len(recipients))
            raise
    else:
        path = await asyncio.to_thread(_write_outbox, settings.outbox_path, message, now)
        outcomes = [RecipientOutcome(recipient, True, str(path)) for recipient in recipients]
    for outcome in outcomes:
        metrics.EMAILS.labels("sent" if outcome.delivered else "failed").inc()
    return outcomes


class Sender(TypedDict):
    """`send_mail`'s sender name and Reply-To."""

    sender_name: str | None
    reply_to: str | None


def organization_sender(organization: Organization) -> Sender:
    """`send_mail`'s sender name and Reply-To for e-mails sent on the organization's behalf
    (its settings; unset, SMTP_FROM's name and no Reply-To)."""
    return Sender(sender_name=organization.email_sender_name or None, reply_to=organization.email_reply_to or None)


def render_invitation_email(context: dict) -> tuple[str, str]:
    """(subject, text) of an invitation: organization_name, inviter, link, expires_at."""
    return _render("email/invitation.txt", context)


def render_webhook_disabled_email(context: dict) -> tuple[str, str]:
    """(subject, text) of the notice to owners that a webhook endpoint was disabled:
    organization_name, url, description, disabled_at, reason."""
    return _render("email/webhook_disabled.txt", context)


def render_reminder_email(context: dict) -> tuple[str, str]:
    """(subject, text) of a payment reminder: the invoice e-mail's keys, `amount_due` and
    `days_after_due`."""
    return _render("email/reminder.txt", context)


def render_invoice_email(context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of the e-mail that carries an invoice. The context holds
    msp_company_name, customer_name, number, period_label, total, currency, due_date and
    payment_terms_days."""
    subject, text = _render("email/invoice.txt", context)
    return subject, text, _templates.get_template("email/invoice.html").render(context)


def render_credit_note_email(context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of the e-mail that carries a credit note. The context holds
    msp_company_name, customer_name, number, invoice_number, period_label, total, currency
    and reason."""
    subject, text = _render("email/credit_note.txt", context)
    return subject, text, _templates.get_template("email/credit_note.html").render(context)


def render_notification_email(kind: str, context: dict) -> tuple[str, str]:
    """(subject, text) of a short notice to the customer that an invoice was approved,
    voided or refunded, or a credit note's credit refunded. The context holds the invoice
    e-mail's keys; `reason` (voided) and `refund_amount` (refunded) are optional;
    `credit_refunded` needs `refund_amount` and `credit_note_number`."""
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"Unknown notification kind {kind!r}.")
    return _render(f"email/notification_{kind}.txt", context)


def _render(name: str, context: dict) -> tuple[str, str]:
    # The subject is a `{% set subject %}` block of the text template, so that the wording
    # of a message stays in one file.
    module = _templates.get_template(name).make_module(context)
    # Names in the subject come from customer data: collapse any line break they carry.
    # (A template's exported names are attributes its module's type cannot list.)
    return " ".join(str(module.subject).split()), str(module)  # type: ignore[attr-defined]


def _has_line_break(value: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t" for c in value)


def _address(value: str, field: str) -> str:
    if not isinstance(value, str) or _has_line_break(value):
        raise ValidationFailed("An e-mail address must be a single line.", field=field)
    address = normalize_email(value)
    # normalize_email checks the shape only; a header also needs a valid addr-spec (no commas,
    # brackets or quotes that would smuggle in a second address).
    try:
        parsed = Address(addr_spec=address).addr_spec
    except (ValueError, TypeError):
        parsed = None
    if parsed != address:
        raise ValidationFailed(f"'{address}' is not an e-mail address.", field=field)
    return address


def _recipients(to: list[str]) -> list[str]:
    if isinstance(to, str) or not to:
        raise ValidationFailed("A message needs at least one recipient.", field="to")
    return list(dict.fromkeys(_address(address, "to") for address in to))


def _sender(smtp_from: str) -> str:
    if _has_line_break(smtp_from):
        raise MailPermanentError("SMTP_FROM must be a single line.")
    try:
        return _address(parseaddr(smtp_from)[1], "smtpFrom")
    except ValidationFailed as exc:
        raise MailPermanentError(f"SMTP_FROM is not an address: {smtp_from!r}.") from exc


def safe_filename(filename: str) -> str:
    """An attachment name without directories, control characters or characters that
    some mail clients and file systems refuse; the extension survives truncation."""
    name = PurePath(unicodedata.normalize("NFC", filename).replace("\\", "/")).name
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    name = re.sub(r'[<>:"|?*;/]', "_", name).strip(" .")
    if len(name) > _MAX_FILENAME:
        stem, dot, suffix = name.rpartition(".")
        suffix = suffix[:16] if dot and stem else ""
        name = name[: _MAX_FILENAME - len(suffix) - 1].rstrip(" .") + ("." + suffix if suffix else "")
    return name or "attachment"


def _build(
    from_header: str, recipients: list[str], subject: str, text: str, html: str | None,
    attachments: Sequence[Attachment], reply_to: str | None, now: datetime, domain: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = from_header
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=domain)
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        if not _MIME_TYPE.match(attachment.mime_type):
            raise ValidationFailed(f"'{attachment.mime_type}' is not a MIME type.", field="attachments")
        maintype, subtype = attachment.mime_type.lower().split("/")
        message.add_attachment(
            bytes(attachment.content), maintype=maintype, subtype=subtype,
            filename=safe_filename(attachment.filename),
        )
    return message


def _write_outbox(outbox: Path, message: EmailMessage, now: datetime) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    local_part = message["Message-ID"].strip("<>").partition("@")[0]
    name = f"{now:%Y%m%dT%H%M%S%fZ}-{re.sub(r'[^A-Za-z0-9._-]', '_', local_part)}.eml"
    # Written beside its final name and renamed, so that a reader never sees half a message.
    fd, temporary = tempfile.mkstemp(dir=outbox, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(message.as_bytes())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, outbox / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return outbox / name


def _connection(smtp_url: str) -> dict:
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailPermanentError("SMTP_URL must look like smtp://user:pass@host:port or smtps://...")
    try:
        port = parts.port
    except ValueError as exc:
        raise MailPermanentError(f"SMTP_URL has an invalid port: {exc}") from exc
    starttls = parse_qs(parts.query).get("starttls", ["0"])[-1].lower() in ("1", "true", "yes")
    return {
        "hostname": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "use_tls": parts.scheme == "smtps",
        "start_tls": starttls and parts.scheme == "smtp",
        "timeout": SMTP_TIMEOUT,
        "local_hostname": _local_hostname(),
    }


@functools.cache
def _local_hostname() -> str:
    """The name this host gives in its EHLO, looked up once per process: aiosmtplib looks it up
    (`socket.getfqdn`, in a thread) on every connection when not told."""
    return socket.getfqdn()


def _response_error(code: int, message: str, what: str) -> MailError:
    # 4xx is the server's way of saying "not now"; 5xx means "not like this".
    error = MailTransientError if 400 <= code < 500 else MailPermanentError
    return error(f"{what}: {code} {message}")


async def _deliver(
    smtp_url: str, message: EmailMessage, sender: str, recipients: list[str]
) -> list[RecipientOutcome]:
    connection = _connection(smtp_url)
    try:
        refused, response = await aiosmtplib.send(
            message, sender=sender, recipients=recipients, **connection
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = {err.recipient: aiosmtplib.SMTPResponse(err.code, err.message) for err in exc.recipients}
        response = ""
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise _response_error(exc.code, exc.message, "authentication failed") from exc
    except aiosmtplib.SMTPSenderRefused as exc:
        raise _response_error(exc.code, exc.message, f"sender {exc.sender} refused") from exc
    except aiosmtplib.SMTPConnectError as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            raise MailPermanentError(f"the server's TLS certificate is not valid: {exc.__cause__}") from exc
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            raise _response_error(exc.code, exc.message, "connection refused") from exc
        raise MailTransientError(f"cannot connect to {connection['hostname']}: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _response_error(exc.code, exc.message, "message refused") from exc
    except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        raise MailTransientError(f"the connection to {connection['hostname']} failed: {exc}") from exc
    except aiosmtplib.SMTPException as exc:
        # STARTTLS or AUTH not offered, SMTPUTF8 not supported: the configuration must change.
        raise MailPermanentError(str(exc)) from exc
    return [
        RecipientOutcome(recipient, False, f"{refused[recipient].code} {refused[recipient].message}")
        if recipient in refused
        else RecipientOutcome(recipient, True, f"250 {response}".rstrip())
        for recipient in recipients
    ]
