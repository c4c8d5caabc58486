"""Invoice e-mails sent together: the send jobs a worker runs at once go out over one SMTP
connection, their rows read and their deliveries written together, each with its own outcome."""

from __future__ import annotations

import asyncio
from datetime import date

from aiosmtpd.controller import Controller

from infra import storage
from jobs.rendering import sample_view
from jobs.send import InvoiceMailings, send_invoice
from models import Invoice, InvoiceEvent
from tests import factories as f
from tests.conftest import Mailbox, free_port

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


class Sessions(Mailbox):
    """The test SMTP server's mailbox, noting the connection each accepted message came on."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[int] = []

    async def handle_DATA(self, server, session, envelope):
        self.sessions.append(id(session))
        return await super().handle_DATA(server, session, envelope)


async def _approved(settings, account, period, n: int, emails: list[str]) -> Invoice:
    """An approved invoice of the account whose e-mail is queued, its PDF stored."""
    account.billing_emails = emails
    await account.save()
    path = f"invoices/{account.organization_id}/INV-2024-000{n}-r1.pdf"
    storage.save(settings, path, PDF)
    return await f.generated_invoice(
        account,
        period,
        number=f"INV-2024-000{n}",
        status="APPROVED",
        snapshot=sample_view(),
        pdf_path=path,
        delivery_status="QUEUED",
    )


async def test_send_jobs_at_once_share_one_connection_and_a_refused_message_fails_alone(world, settings):
    mailbox = Sessions()
    mailbox.refused |= {"gone@tailspin.example", "gone@fabrikam.example"}
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{controller.port}"})
        period = await f.billing_period(world.org, date(2024, 9, 1))
        fabrikam = await f.managed_account(world.org, name="Fabrikam")
        invoices = [
            await _approved(settings, world.account, period, 1, ["ap@contoso.example"]),
            await _approved(settings, world.other_account, period, 2, ["gone@tailspin.example"]),
            await _approved(settings, fabrikam, period, 3, ["ap@fabrikam.example", "gone@fabrikam.example"]),
        ]
        ctx = {"settings": settings, "mailings": InvoiceMailings(settings)}
        outcomes = await asyncio.gather(*(send_invoice(ctx, str(invoice.id)) for invoice in invoices))
    finally:
        controller.stop()

    assert outcomes == ["SENT", "FAILED", "SENT"]
    assert [rcpt for rcpt, _ in mailbox.messages] == [["ap@contoso.example"], ["ap@fabrikam.example"]]
    assert ["INV-2024-0001" in mailbox.messages[0][1]["Subject"], "INV-2024-0003" in mailbox.messages[1][1]["Subject"]] == [True, True]
    attached = [p.get_payload(decode=True) for _, m in mailbox.messages for p in m.walk() if p.get_filename()]
    assert attached == [PDF, PDF]
    # One connection for the three: the two accepted messages came on the same.
    assert len(mailbox.sessions) == 2 and len(set(mailbox.sessions)) == 1
    statuses = {i.number: i.delivery_status.value for i in await Invoice.filter(id__in=[i.id for i in invoices])}
    assert statuses == {"INV-2024-0001": "SENT", "INV-2024-0002": "FAILED", "INV-2024-0003": "SENT"}
    events = {
        (e.invoice_id, e.kind, e.detail["recipient"])
        for e in await InvoiceEvent.filter(invoice_id__in=[i.id for i in invoices], kind__in=["SENT", "DELIVERY_FAILED"])
    }
    first, refused, both = (invoice.id for invoice in invoices)
    assert events >= {
        (first, "SENT", "ap@contoso.example"),
        (refused, "DELIVERY_FAILED", "gone@tailspin.example"),
        (both, "SENT", "ap@fabrikam.example"),
        (both, "DELIVERY_FAILED", "gone@fabrikam.example"),
    }
    assert not any(kind == "SENT" for invoice_id, kind, _ in events if invoice_id == refused)
