"""The mailer against a real SMTP server (aiosmtpd on a free loopback port) and the outbox."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from jobs import mailer
from jobs.mailer import (
    Attachment,
    MailPermanentError,
    MailTransientError,
    render_invoice_email,
    render_notification_email,
    send_mail,
)
from models.errors import ValidationFailed

REFUSED = "nobody@customer.example"
ACCEPTED = "billing@customer.example"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
USER, PASSWORD = "mailer@msp.example", "p@ss:w/rd %"
INVOICE_CONTEXT = {
    "msp_company_name": "Northwind Cloud Partners",
    "customer_name": "Contoso <Ltd> & Sons",
    "number": "INV-2026-0042",
    "period_label": "September 2024",
    "total": "1,234.50",
    "currency": "EUR",
    "due_date": "2024-10-31",
    "payment_terms_days": 30,
}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)


class Recorder:
    """Accepts every message, refuses REFUSED at RCPT and, when told to, the sender."""

    def __init__(self):
        self.received: list[Received] = []
        self.mail_reply: str | None = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REFUSED:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield recorder, f"smtp://127.0.0.1:{controller.port}"
    controller.stop()


@pytest.fixture
def auth_server():
    recorder = Recorder()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=_free_port(),
        auth_required=True, auth_require_tls=False, authenticator=_authenticate,
    )
    controller.start()
    yield recorder, controller.port
    controller.stop()


def _with(settings, **changes):
    return settings.model_copy(update=changes)


async def _send(settings, **overrides):
    arguments = {
        "to": [ACCEPTED, REFUSED],
        "subject": "Invoice INV-2026-0042",
        "text": "Please find the invoice attached.",
        "html": "<p>Please find the invoice <b>attached</b>.</p>",
        "attachments": [Attachment(filename="INV-2026-0042.pdf", content=PDF)],
    } | overrides
    return await send_mail(settings, **arguments)


async def test_smtp_delivers_attachment_and_reports_each_recipient(settings, smtp_server):
    recorder, url = smtp_server
    outcomes = await _send(
        _with(settings, smtp_url=url), reply_to="Accounts@MSP.example", message_id_domain="billing.example"
    )

    by_recipient = {o.recipient: o for o in outcomes}
    assert [o.recipient for o in outcomes] == [ACCEPTED, REFUSED]
    assert by_recipient[ACCEPTED].delivered and by_recipient[ACCEPTED].detail.startswith("250")
    assert not by_recipient[REFUSED].delivered
    assert "550" in by_recipient[REFUSED].detail and "No such user" in by_recipient[REFUSED].detail

    # One transaction: one message, the envelope holding the accepted recipient only.
    [received] = recorder.received
    assert received.mail_from == "no-reply@invoicing.local"
    assert received.rcpt_tos == [ACCEPTED]
    message = received.message
    assert message["Subject"] == "Invoice INV-2026-0042"
    assert message["From"] == settings.smtp_from
    assert message["To"] == f"{ACCEPTED}, {REFUSED}"
    assert message["Reply-To"] == "accounts@msp.example"
    assert message["Date"]
    assert re.fullmatch(r"<[^@<>]+@billing\.example>", message["Message-ID"])
    assert message.get_body(("plain",)).get_content().strip() == "Please find the invoice attached."
    assert "<b>attached</b>" in message.get_body(("html",)).get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "INV-2026-0042.pdf"
    assert attachment.get_content() == PDF


async def test_every_recipient_refused_is_reported_not_raised(settings, smtp_server):
    recorder, url = smtp_server
    [outcome] = await _send(_with(settings, smtp_url=url), to=[REFUSED])
    assert outcome.recipient == REFUSED and not outcome.delivered and "550" in outcome.detail
    assert recorder.received == []


async def test_outbox_writes_a_parsable_eml(settings, tmp_path):
    local = _with(settings, smtp_url=None, storage_dir=tmp_path / "storage")
    outcomes = await _send(local)

    [path] = list(local.outbox_path.iterdir())
    assert re.fullmatch(r"\d{8}T\d{12}Z-[A-Za-z0-9._-]+\.eml", path.name)
    assert [(o.recipient, o.delivered, o.detail) for o in outcomes] == [
        (ACCEPTED, True, str(path)), (REFUSED, True, str(path)),
    ]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Invoice INV-2026-0042"
    assert message["Message-ID"].strip("<>").partition("@")[0] in path.name
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content() == PDF


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Invoice\r\nBcc: x@evil.example"},
        {"subject": "Invoice\nBcc: x@evil.example"},
        {"to": [f"{ACCEPTED}\nBcc: x@evil.example"]},
        {"to": [f"{ACCEPTED}\r\n"]},
        {"to": [f"{ACCEPTED},x@evil.example"]},
        {"to": [f"Someone <{ACCEPTED}>"]},
        {"to": ["not-an-address"]},
        {"to": []},
        {"reply_to": "a@msp.example\r\nBcc: x@evil.example"},
        {"attachments": [Attachment(filename="a.pdf", content=PDF, mime_type="application/pdf\r\nX: y")]},
    ],
)
async def test_bad_input_is_refused_and_nothing_is_sent(settings, smtp_server, overrides):
    recorder, url = smtp_server
    with pytest.raises(ValidationFailed):
        await _send(_with(settings, smtp_url=url), **overrides)
    assert recorder.received == []


async def test_attachment_filename_is_sanitized(settings, smtp_server):
    recorder, url = smtp_server
    attachment = Attachment(filename="../../etc/passwd\r\nX-Evil: 1;.pdf", content=PDF)
    await _send(_with(settings, smtp_url=url), to=[ACCEPTED], attachments=[attachment])
    [received] = recorder.received
    assert "X-Evil" not in received.message
    [part] = list(received.message.iter_attachments())
    assert part.get_filename() == "passwdX-Evil_ 1_.pdf"
    assert mailer.safe_filename("..") == "attachment"
    assert mailer.safe_filename("C:\\Users\\x\\" + "a" * 300 + ".pdf") == "a" * 116 + ".pdf"


async def test_closed_port_is_transient(settings):
    with pytest.raises(MailTransientError):
        await _send(_with(settings, smtp_url=f"smtp://127.0.0.1:{_free_port()}"))


async def test_silent_server_times_out_as_transient(settings, monkeypatch):
    monkeypatch.setattr(mailer, "SMTP_TIMEOUT", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(MailTransientError):
            await _send(_with(settings, smtp_url=f"smtp://127.0.0.1:{port}"))


@pytest.mark.parametrize(("reply", "error"), [
    ("550 5.7.1 Sender rejected", MailPermanentError),
    ("451 4.3.0 Try again later", MailTransientError),
])
async def test_refused_sender(settings, smtp_server, reply, error):
    recorder, url = smtp_server
    recorder.mail_reply = reply
    with pytest.raises(error, match=reply[:3]):
        await _send(_with(settings, smtp_url=url))
    assert recorder.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_authentication_failure_is_permanent(settings, auth_server):
    recorder, port = auth_server
    with pytest.raises(MailPermanentError, match="535"):
        await _send(_with(settings, smtp_url=f"smtp://{USER}:wrong@127.0.0.1:{port}"))
    assert recorder.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_url_encoded_credentials_authenticate(settings, auth_server):
    recorder, port = auth_server
    url = f"smtp://mailer%40msp.example:p%40ss%3Aw%2Frd%20%25@127.0.0.1:{port}"
    outcomes = await _send(_with(settings, smtp_url=url), to=[ACCEPTED])
    assert [o.delivered for o in outcomes] == [True]
    assert len(recorder.received) == 1


async def test_unusable_smtp_url_is_permanent(settings):
    with pytest.raises(MailPermanentError):
        await _send(_with(settings, smtp_url="http://127.0.0.1:25"))


def test_invoice_email_renders_subject_text_and_escaped_html():
    subject, text, html = render_invoice_email(INVOICE_CONTEXT)
    assert subject == "Invoice INV-2026-0042 from Northwind Cloud Partners (September 2024)"
    assert "Dear Contoso <Ltd> & Sons," in text
    assert "1,234.50 EUR" in text and "2024-10-31" in text and "30 days" in text
    assert "Contoso &lt;Ltd&gt; &amp; Sons" in html and "<Ltd>" not in html
    assert "1,234.50 EUR" in html and "INV-2026-0042" in html


def test_subject_collapses_line_breaks_from_data():
    subject, _, _ = render_invoice_email(INVOICE_CONTEXT | {"msp_company_name": "Evil\r\nBcc: x@evil.example"})
    assert "\r" not in subject and "\n" not in subject


def test_missing_context_key_fails_loudly():
    context = dict(INVOICE_CONTEXT)
    del context["due_date"]
    with pytest.raises(Exception, match="due_date"):
        render_invoice_email(context)


@pytest.mark.parametrize("kind", ["approved", "voided", "refunded"])
def test_notification_emails(kind):
    subject, text = render_notification_email(kind, INVOICE_CONTEXT)
    assert "INV-2026-0042" in subject and "\n" not in subject
    assert "Contoso <Ltd> & Sons" in text and "Northwind Cloud Partners" in text


def test_notification_optional_details_and_unknown_kind():
    _, voided = render_notification_email("voided", INVOICE_CONTEXT | {"reason": "Issued twice."})
    assert "Reason: Issued twice." in voided
    _, refunded = render_notification_email("refunded", INVOICE_CONTEXT | {"refund_amount": "100.00"})
    assert "refunded 100.00 EUR" in refunded
    with pytest.raises(ValueError):
        render_notification_email("paid", INVOICE_CONTEXT)
