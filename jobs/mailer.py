"""The mailer: builds messages and delivers them over SMTP, or files them in the outbox.

`send_mail` sends one message; `send_mails` several over one SMTP connection, each with its
own outcome. They report each recipient separately, because one SMTP transaction can be accepted
for some recipients and refused for others. Failures that concern the whole message are
exceptions: `MailTransientError` (the server could not be reached; the caller retries) and
`MailPermanentError` (retrying cannot help until someone changes the configuration).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
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

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class Mail:
    """One message of `send_mails`: `send_mail`'s arguments."""

    to: list[str]
    subject: str
    text: str
    html: str | None = None
    attachments: Sequence[Attachment] = ()
    reply_to: str | None = None
    sender_name: str | None = None
    message_id_domain: str | None = None


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
    mail = Mail(to, subject, text, html, attachments, reply_to, sender_name, message_id_domain)
    (sent,) = await send_mails(settings, [mail])
    if isinstance(sent, Exception):
        raise sent
    return sent


async def send_mails(settings, mails: Sequence[Mail]) -> list[list[RecipientOutcome] | MailError | ValidationFailed]:
    """Send each message as `send_mail` does, all of them over one SMTP connection: what
    became of each, its recipients' outcomes or why it was not sent (`ValidationFailed` for
    its bad input, a `MailError` for the server's refusal). One refused message does not stop
    the others; once the connection is lost, those not sent yet are `MailTransientError`s."""
    results: list[list[RecipientOutcome] | MailError | ValidationFailed] = []
    built: list[tuple[int, EmailMessage, str, list[str]]] = []
    now = datetime.now(UTC)
    for mail in mails:
        try:
            built.append((len(results), *_message(settings, mail, now)))
            results.append([])
        except (ValidationFailed, MailError) as exc:
            results.append(exc)
    if not built:
        return results
    if settings.smtp_url:
        delivered = await _deliver(settings.smtp_url, [(message, sender, recipients) for _, message, sender, recipients in built])
    else:
        paths = await asyncio.to_thread(_write_outboxes, settings.outbox_path, [message for _, message, _, _ in built], now)
        delivered = [
            [RecipientOutcome(recipient, True, str(path)) for recipient in recipients]
            for path, (_, _, _, recipients) in zip(paths, built, strict=True)
        ]
    for (at, _, _, recipients), outcome in zip(built, delivered, strict=True):
        results[at] = outcome
        if isinstance(outcome, MailError):
            metrics.EMAILS.labels("failed").inc(len(recipients))
        else:
            for one in outcome:
                metrics.EMAILS.labels("sent" if one.delivered else "failed").inc()
    return results


def _message(settings, mail: Mail, now: datetime) -> tuple[EmailMessage, str, list[str]]:
    """The message, its envelope's sender and recipients; `ValidationFailed` for bad input."""
    recipients = _recipients(mail.to)
    if _has_line_break(mail.subject):
        raise ValidationFailed("The subject must be a single line.", field="subject")
    sender = _sender(settings.smtp_from)
    reply_to = _address(mail.reply_to, "replyTo") if mail.reply_to is not None else None
    from_header = settings.smtp_from
    if mail.sender_name:
        if _has_line_break(mail.sender_name):
            raise ValidationFailed("The sender name must be a single line.", field="senderName")
        from_header = str(Address(display_name=mail.sender_name, addr_spec=sender))
    message = _build(
        from_header, recipients, mail.subject.strip(), mail.text, mail.html, mail.attachments, reply_to, now,
        mail.message_id_domain or Address(addr_spec=sender).domain,
    )
    return message, sender, recipients


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


def _write_outboxes(outbox: Path, messages: list[EmailMessage], now: datetime) -> list[Path]:
    return [_write_outbox(outbox, message, now) for message in messages]


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
    }


def _response_error(code: int, message: str, what: str) -> MailError:
    # 4xx is the server's way of saying "not now"; 5xx means "not like this".
    error = MailTransientError if 400 <= code < 500 else MailPermanentError
    return error(f"{what}: {code} {message}")


async def _deliver(
    smtp_url: str, messages: Sequence[tuple[EmailMessage, str, list[str]]]
) -> list[list[RecipientOutcome] | MailError]:
    """Each message (with its envelope's sender and recipients) sent over one connection:
    its recipients' outcomes, or the error that kept it from being sent."""
    try:
        connection = _connection(smtp_url)
    except MailError as exc:
        return [exc] * len(messages)
    results: list[list[RecipientOutcome] | MailError] = []
    client = aiosmtplib.SMTP(**connection)
    try:
        await client.connect()
    except Exception as exc:  # mapped to why: every message shares it
        return [_error(exc, connection["hostname"])] * len(messages)
    try:
        for message, sender, recipients in messages:
            if not client.is_connected:
                results.append(MailTransientError(f"the connection to {connection['hostname']} was lost"))
                continue
            try:
                refused, response = await client.send_message(message, sender=sender, recipients=recipients)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused = {err.recipient: aiosmtplib.SMTPResponse(err.code, err.message) for err in exc.recipients}
                response = ""
            except Exception as exc:  # mapped to why: this message's own outcome
                results.append(_error(exc, connection["hostname"]))
                continue
            results.append([
                RecipientOutcome(recipient, False, f"{refused[recipient].code} {refused[recipient].message}")
                if recipient in refused
                else RecipientOutcome(recipient, True, f"250 {response}".rstrip())
                for recipient in recipients
            ])
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
    return results


def _error(exc: Exception, hostname: str) -> MailError:
    """What an exception of aiosmtplib's (or of the socket) says of the message: worth
    retrying or not."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _response_error(exc.code, exc.message, "authentication failed")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _response_error(exc.code, exc.message, f"sender {exc.sender} refused")
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            return MailPermanentError(f"the server's TLS certificate is not valid: {exc.__cause__}")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return _response_error(exc.code, exc.message, "connection refused")
        return MailTransientError(f"cannot connect to {hostname}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc.code, exc.message, "message refused")
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError)):
        return MailTransientError(f"the connection to {hostname} failed: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered, SMTPUTF8 not supported: the configuration must change.
        return MailPermanentError(str(exc))
    # Anything else: whether the message went is unknown, and a later try may succeed.
    log.warning("sending through %s failed", hostname, exc_info=exc)
    return MailTransientError(f"sending through {hostname} failed ({type(exc).__name__})")
