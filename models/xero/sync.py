"""The push state of each document: requested, attempted, synced or failed, each step on the
invoice's timeline in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from models.actors import Actor
from models.credit_notes.tables import CreditNote
from models.errors import DomainError, InvalidTransition, NotFound
from models.invoices.queries import visible_invoices
from models.invoices.tables import Invoice, InvoiceEvent, InvoiceStatus
from models.outbox import Entity, Transition, record
from models.xero.connections import usable_connection
from models.xero.documents import FrozenDocument, credit_note_view, invoice_view
from models.xero.tables import ConnectionStatus, DocumentKind, SyncState, XeroConnection, XeroSettings, XeroSync

IN_FLIGHT = (SyncState.QUEUED, SyncState.RETRYING)


@dataclass
class PushOutcome:
    """One id's result in a push request: the invoice and its sync, or why not."""

    id: Any
    invoice: Invoice | None = None
    sync: XeroSync | None = None
    error: DomainError | None = None


async def request_push(view: FrozenDocument, actor: Actor) -> tuple[XeroSync, bool]:
    """Queue the document's push: (its sync, whether a job must be queued). A push already
    queued or retrying is left alone; a voided document is pushed only if Xero has it (to
    void it there)."""
    await usable_connection(view.organization_id)
    async with in_transaction() as conn:
        sync = await XeroSync.filter(document_kind=view.kind, document_id=view.id).using_db(conn).select_for_update().first()
        if sync is not None and sync.state in IN_FLIGHT:
            return sync, False
        if view.voided and (sync is None or sync.xero_id is None):
            raise InvalidTransition(f"{view.number} is voided and never reached Xero: there is nothing to push.", field="ids")
        if sync is None:
            sync = await XeroSync.create(
                organization_id=view.organization_id, invoice_id=view.invoice_id, document_kind=view.kind,
                document_id=view.id, number=view.number, using_db=conn,
            )
            await _requested(conn, sync, actor)
        else:
            await _queue_again(conn, sync, actor)
    return sync, True


async def _queue_again(conn: Any, sync: XeroSync, actor: Actor) -> None:
    sync.state, sync.message, sync.attempts = SyncState.QUEUED, None, 0
    await sync.save(using_db=conn, update_fields=["state", "message", "attempts", "updated_at"])
    await _requested(conn, sync, actor)


async def _requested(conn: Any, sync: XeroSync, actor: Actor) -> None:
    await InvoiceEvent.create(
        invoice_id=sync.invoice_id, actor_id=actor.user_id, actor_label=actor.label, kind="XERO_PUSH_REQUESTED",
        detail={"document": sync.document_kind.value, "number": sync.number}, using_db=conn,
    )


async def void_in_xero(conn: Any, invoice: Invoice, actor: Actor) -> None:
    """In the transaction that voids an invoice: when Xero has it and Xero is connected, its
    push is queued (the push voids it there; `queued_pushes` names the job to queue). A push
    under way finds the invoice voided when it runs. Disconnected, nothing is queued: pushing
    it once connected again voids it."""
    sync = await XeroSync.filter(
        document_kind=DocumentKind.INVOICE, document_id=invoice.id, xero_id__isnull=False,
    ).using_db(conn).select_for_update().first()
    if sync is None or sync.state in IN_FLIGHT:
        return
    if not await XeroConnection.filter(
        organization_id=invoice.organization_id, status=ConnectionStatus.CONNECTED,
    ).using_db(conn).exists():
        return
    await _queue_again(conn, sync, actor)


async def queued_pushes(invoice_ids: list[Any]) -> list[Any]:
    """The queued pushes of these invoices themselves: their jobs to queue once committed."""
    return await XeroSync.filter(
        document_kind=DocumentKind.INVOICE, document_id__in=invoice_ids, state=SyncState.QUEUED,
    ).values_list("id", flat=True)


async def push_invoices(principal, ids: list[Any]) -> list[PushOutcome]:
    """Queue the push of each approved invoice the principal may see; others fail alone."""
    visible = set(await visible_invoices(principal).filter(id__in=[i for i in ids if i]).values_list("id", flat=True))
    actor = Actor(user_id=principal.user.id)
    outcomes = []
    for invoice_id in ids:
        try:
            if invoice_id not in visible:
                raise NotFound("No such invoice.", field="ids")
            sync, _ = await request_push(await invoice_view(invoice_id), actor)
            outcomes.append(PushOutcome(invoice_id, invoice=await Invoice.get(id=invoice_id), sync=sync))
        except DomainError as exc:
            outcomes.append(PushOutcome(invoice_id, error=exc))
    record(Entity.XERO_SYNC, Transition.QUEUED, [outcome.sync.id for outcome in outcomes if outcome.sync])
    return outcomes


async def begin_attempt(sync_id: Any) -> XeroSync | None:
    """The sync, its attempt counted, if it still waits for a push (a job run twice, or after
    the owner pushed again, finds nothing to do)."""
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        sync = await XeroSync.filter(id=sync_id, state__in=IN_FLIGHT).using_db(conn).select_for_update().first()
        if sync is None:
            return None
        sync.attempts += 1
        sync.last_attempt_at = now
        await sync.save(using_db=conn, update_fields=["attempts", "last_attempt_at", "updated_at"])
    return sync


async def record_pushed(sync: XeroSync, xero_id: str, url: str, action: str, allocated: Decimal | None = None) -> XeroSync:
    """Xero has the document (`action`: created, found, voided); a credit note `allocated` to
    its invoice there is recorded so, once."""
    async with in_transaction() as conn:
        sync.state, sync.message, sync.xero_id, sync.xero_url = SyncState.SYNCED, None, xero_id, url
        sync.synced_at = datetime.now(UTC)
        fields = ["state", "message", "xero_id", "xero_url", "synced_at", "updated_at"]
        if allocated is not None:
            sync.allocated_at = sync.synced_at
            fields.append("allocated_at")
        await sync.save(using_db=conn, update_fields=fields)
        await InvoiceEvent.create(
            invoice_id=sync.invoice_id, actor_label="xero", kind="XERO_PUSHED", using_db=conn,
            detail={"document": sync.document_kind.value, "number": sync.number, "xeroId": xero_id, "action": action},
        )
        if allocated is not None:
            await InvoiceEvent.create(
                invoice_id=sync.invoice_id, actor_label="xero", kind="XERO_CREDIT_NOTE_ALLOCATED", using_db=conn,
                detail={"number": sync.number, "xeroId": xero_id, "amount": str(allocated)},
            )
    return sync


async def invoice_in_xero(invoice_id: Any) -> str | None:
    """Xero's id of the invoice, once a push recorded it there."""
    found = await XeroSync.filter(document_kind=DocumentKind.INVOICE, document_id=invoice_id, xero_id__isnull=False).first()
    return found.xero_id if found else None


async def record_failure(sync: XeroSync, message: str, *, retrying: bool) -> XeroSync:
    """An attempt failed: RETRYING while another will follow, else FAILED until pushed again."""
    async with in_transaction() as conn:
        sync.state, sync.message = (SyncState.RETRYING if retrying else SyncState.FAILED), message
        await sync.save(using_db=conn, update_fields=["state", "message", "updated_at"])
        await InvoiceEvent.create(
            invoice_id=sync.invoice_id, actor_label="xero", kind="XERO_PUSH_FAILED", using_db=conn,
            detail={"document": sync.document_kind.value, "number": sync.number, "error": message,
                    "attempt": sync.attempts, "retrying": retrying},
        )
    return sync


async def credit_note_push(credit_note_id: Any, actor: Actor) -> XeroSync | None:
    """Queue an issued credit note's push when Xero holds the invoice it corrects (and is
    connected): the sync to queue a job for, or None."""
    view = await credit_note_view(credit_note_id)
    in_xero = await XeroSync.filter(
        document_kind=DocumentKind.INVOICE, document_id=view.invoice_id, xero_id__isnull=False
    ).exists()
    if not in_xero:
        return None
    try:
        sync, new = await request_push(view, actor)
    except InvalidTransition:
        return None
    return sync if new else None


async def after_push(sync: XeroSync, action: str) -> list[XeroSync]:
    """What an invoice's push that created or found it in Xero leads to (the pushes to queue):
    the invoice again when it was voided here meanwhile (the push voids it in Xero), else its
    printed credit notes never pushed."""
    if sync.document_kind != DocumentKind.INVOICE or action == "voided":
        return []
    actor = Actor.system("worker")
    if not await Invoice.filter(id=sync.document_id, status=InvoiceStatus.VOIDED).exists():
        return await _credit_notes_after_invoice(sync.invoice_id, actor)
    try:
        again, new = await request_push(await invoice_view(sync.document_id), actor)
    except InvalidTransition:  # Xero disconnected meanwhile: pushing it once reconnected voids it
        return []
    return [again] if new else []


async def _credit_notes_after_invoice(invoice_id: Any, actor: Actor) -> list[XeroSync]:
    """Credit notes printed before their invoice reached Xero, never pushed or never allocated
    to it there, are queued (those printed later go by themselves, `credit_note_push`)."""
    done = XeroSync.filter(document_kind=DocumentKind.CREDIT_NOTE).filter(
        Q(allocated_at__isnull=False) | Q(state__in=IN_FLIGHT)).values("document_id")
    printed = await CreditNote.filter(invoice_id=invoice_id, pdf_path__isnull=False).exclude(
        id__in=Subquery(done)).order_by("number").values_list("id", flat=True)
    queued = []
    for credit_note_id in printed:
        sync = await credit_note_push(credit_note_id, actor)
        if sync is not None:
            queued.append(sync)
    return queued


async def rollover_pushes(organization_id: Any, actor: Actor) -> list[XeroSync]:
    """At a month's rollover, when the organization asks for it and Xero is connected: queue
    the push of every approved invoice that has never been pushed."""
    settings = await XeroSettings.get_or_none(organization_id=organization_id)
    if settings is None or not settings.auto_push_at_rollover:
        return []
    try:
        await usable_connection(organization_id)
    except InvalidTransition:
        return []
    pushed = XeroSync.filter(organization_id=organization_id, document_kind=DocumentKind.INVOICE).values("document_id")
    ids = await Invoice.filter(organization_id=organization_id, status=InvoiceStatus.APPROVED).exclude(
        id__in=Subquery(pushed)).order_by("number").values_list("id", flat=True)
    queued = []
    for invoice_id in ids:
        sync, new = await request_push(await invoice_view(invoice_id), actor)
        if new:
            queued.append(sync)
    return queued


def visible_syncs(principal):
    """Push states of the organization's documents (MSP users: the schema's scopes say who)."""
    return XeroSync.filter(organization_id=principal.organization_id)


def stalled_syncs(before: datetime):
    """Pushes queued before `before` (their writer queues the job right after commit)."""
    return XeroSync.filter(state=SyncState.QUEUED, updated_at__lt=before)
