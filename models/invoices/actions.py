"""What owners and the system do to invoices: generate, regenerate, approve, void, and record
the outcome of background work. Each operation is per invoice; bulk requests report per id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.actors import Actor
from models.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    InvalidTransition,
    MissingBillingProfile,
    NotFound,
    ValidationFailed,
)
from models.invoices.checks import CheckCode, Severity, current_findings, current_findings_of, unacknowledged
from models.invoices.lifecycle import lock_invoice, transition, transition_each
from models.invoices.queries import visible_invoices
from models.invoices.tables import DeliveryStatus, Invoice, InvoiceEvent, InvoiceKind, InvoiceStatus, PaymentStatus
from models.managed_accounts import ManagedAccount
from models.outbox import Entity, Transition, record
from models.xero.sync import void_in_xero

MAX_BULK = 500
# A month's invoices chosen by a filter: a large MSP's month at once.
MAX_BY_FILTER = 20_000


@dataclass
class Outcome:
    """One id's result in a bulk request: the invoice, or why not."""

    id: Any
    invoice: Invoice | None = None
    error: DomainError | None = None


async def _visible(principal, ids: list[Any]) -> set[Any]:
    return set(await visible_invoices(principal).filter(id__in=[i for i in ids if i]).values_list("id", flat=True))


async def _each(principal, ids: list[Any], operation) -> list[Outcome]:
    """Run `operation` on each id the principal may see; others fail alone, as not found."""
    visible = await _visible(principal, ids)
    outcomes = []
    for invoice_id in ids:
        try:
            if invoice_id not in visible:
                raise NotFound("No such invoice.", field="ids")
            outcomes.append(Outcome(invoice_id, invoice=await operation(invoice_id)))
        except DomainError as exc:
            outcomes.append(Outcome(invoice_id, error=exc))
    return outcomes


async def start_generation(invoice_id: Any, organization_id: Any, actor: Actor, *, regenerate: bool = False) -> Invoice:
    """Move the invoice to GENERATING (one conditional UPDATE: of two racing requests, one
    wins); its job is queued once this has committed."""
    (outcome,) = await start_generations([invoice_id], organization_id, actor, regenerate=regenerate)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.invoice is not None
    return outcome.invoice


async def start_generations(ids: list[Any], organization_id: Any, actor: Actor, *, regenerate: bool = False) -> list[Outcome]:
    """`start_generation` of each invoice, a few statements for all of them (a month's
    invoices at once): each one's outcome."""
    accounts = {
        str(row["id"]): row for row in await Invoice.filter(id__in=ids, organization_id=organization_id).values(
            "id", name="managed_account__name", billing_profile_id="managed_account__billing_profile_id"
        )
    }
    ready = [str(i) for i in ids if str(i) in accounts and accounts[str(i)]["billing_profile_id"] is not None]
    moved = dict(zip(ready, await transition_each(
        ready, "REGENERATE" if regenerate else "GENERATE", actor, organization_id=organization_id,
        changes={"error_message": None},
    ), strict=True))
    outcomes = []
    for invoice_id in ids:
        found = moved.get(str(invoice_id))
        if str(invoice_id) not in accounts:
            outcomes.append(Outcome(invoice_id, error=NotFound("No such invoice.", field="ids")))
        elif found is None:
            outcomes.append(Outcome(invoice_id, error=MissingBillingProfile(
                f"{accounts[str(invoice_id)]['name']} has no billing profile: choose one on the managed account first.",
                field="ids",
            )))
        elif isinstance(found, DomainError):
            outcomes.append(Outcome(invoice_id, error=found))
        else:
            outcomes.append(Outcome(invoice_id, invoice=found))
    record(Entity.INVOICE, Transition.GENERATION_REQUESTED, [o.invoice.id for o in outcomes if o.invoice])
    return outcomes


async def request_generation(principal, ids: list[Any], *, regenerate: bool) -> list[Outcome]:
    visible = await _visible(principal, ids)
    started = await start_generations(
        [i for i in ids if i in visible], principal.organization_id, Actor(user_id=principal.user.id), regenerate=regenerate,
    )
    outcomes = iter(started)
    return [
        next(outcomes) if invoice_id in visible else Outcome(invoice_id, error=NotFound("No such invoice.", field="ids"))
        for invoice_id in ids
    ]


async def approve(
    principal, ids: list[Any], *, notify_customer: bool = True, acknowledged: frozenset[CheckCode] = frozenset(),
) -> list[Outcome]:
    """Approve and queue the e-mail, which is the customer's notice of the invoice; without
    `notify_customer` it stays NOT_SENT until resent. An invoice whose checks found warnings
    is approved only when the call acknowledges each of their codes (the APPROVE event keeps
    what was acknowledged). Approving an approved invoice again changes nothing."""
    actor = Actor(user_id=principal.user.id)
    visible = await _visible(principal, ids)
    invoices = {i.id: i for i in await Invoice.filter(id__in=visible)} if visible else {}
    shown = [invoices[i] for i in ids if i in invoices]
    findings = dict(zip((i.id for i in shown), await current_findings_of(shown), strict=True))
    errors: dict[Any, DomainError] = {}
    moving: list[tuple[Any, dict[str, Any]]] = []
    for invoice_id in ids:
        if invoice_id not in invoices:
            errors[invoice_id] = NotFound("No such invoice.", field="ids")
            continue
        warnings = [f for f in findings[invoice_id] if f.severity == Severity.WARNING]
        missing = unacknowledged(warnings, set(acknowledged))
        if missing and invoices[invoice_id].status == InvoiceStatus.AWAITING_APPROVAL:
            codes = sorted({f.code.value for f in missing})
            errors[invoice_id] = InvalidTransition(
                f"Check the warnings before approving ({', '.join(codes)}): acknowledge them to approve.",
                field="acknowledge", code=ErrorCode.CHECKS_UNACKNOWLEDGED,
            )
            continue
        seen = [{"code": f.code.value, "message": f.message} for f in warnings]
        moving.append((invoice_id, {"acknowledged": seen} if seen else {}))
    # The approvals together: one transaction, a few statements (a month's approval by filter).
    moved = await _approve_each([i for i, _ in moving], actor, principal.organization_id, notify_customer,
                                [mine for _, mine in moving])
    # Approving an approved invoice again changes nothing.
    refused = [i for i, found in moved.items() if isinstance(found, InvalidTransition)]
    again = {i.id: i for i in await Invoice.filter(id__in=refused, status=InvoiceStatus.APPROVED)} if refused else {}
    outcomes = []
    for invoice_id in ids:
        found = errors.get(invoice_id) or again.get(invoice_id) or moved.get(invoice_id)
        outcomes.append(Outcome(invoice_id, error=found) if isinstance(found, DomainError) else Outcome(invoice_id, invoice=found))
    record(Entity.INVOICE, Transition.APPROVED, [o.invoice for o in outcomes if o.invoice])
    return outcomes


async def _approve_each(
    ids: list[Any], actor: Actor, organization_id: Any, notify_customer: bool, details: list[dict[str, Any]],
) -> dict[Any, Invoice | DomainError]:
    """`_approve` of each invoice (with its event's own detail), in one transaction."""
    if not ids:
        return {}
    changes: dict[str, Any] = {"approved_at": datetime.now(UTC), "auto_send_at": None}
    if notify_customer:
        changes["delivery_status"] = DeliveryStatus.QUEUED
    found = await transition_each(
        ids, "APPROVE", actor, organization_id=organization_id, changes=changes,
        detail={"notifyCustomer": notify_customer}, each=[({}, mine) for mine in details],
    )
    return dict(zip(ids, found, strict=True))


async def _approve(invoice_id: Any, actor: Actor, organization_id: Any, notify_customer: bool, **detail: Any) -> Invoice:
    changes: dict[str, Any] = {"approved_at": datetime.now(UTC), "auto_send_at": None}
    if notify_customer:
        changes["delivery_status"] = DeliveryStatus.QUEUED
    return await transition(
        invoice_id, "APPROVE", actor, organization_id=organization_id, changes=changes,
        detail={"notifyCustomer": notify_customer, **detail},
    )


async def auto_send_due(now: datetime) -> list[Invoice]:
    """Approve and send the invoices whose automatic send is due (auto-invoice SEND, grace
    period over, not cancelled, not approved by someone meanwhile)."""
    due = await Invoice.filter(auto_send_at__lte=now, status=InvoiceStatus.AWAITING_APPROVAL)
    approved = []
    scheduler = Actor.system("scheduler")
    for invoice in due:
        warnings = unacknowledged(await current_findings(invoice), set())
        if warnings:
            # Nobody acknowledged them: the invoice waits for a person.
            async with in_transaction() as conn:
                if await Invoice.filter(id=invoice.id, auto_send_at__isnull=False).using_db(conn).update(auto_send_at=None):
                    await InvoiceEvent.create(
                        invoice_id=invoice.id, actor_label=scheduler.label, kind="AUTO_SEND_HELD",
                        detail={"warnings": sorted({f.code.value for f in warnings})}, using_db=conn,
                    )
            continue
        try:
            approved.append(await _approve(invoice.id, scheduler, None, True, automatic=True))
        except InvalidTransition:
            continue  # regenerated, voided or approved meanwhile
    record(Entity.INVOICE, Transition.APPROVED, approved)
    return approved


async def cancel_queued_send(principal, invoice_id: Any) -> Invoice:
    """Stop the automatic approval and send of an auto-invoiced invoice: it stays for review
    (approve it by hand), and regenerations do not queue it again."""
    actor = Actor(user_id=principal.user.id)
    async with in_transaction() as conn:
        invoice = await lock_invoice(conn, visible_invoices(principal), invoice_id)
        if invoice.auto_send_at is None:
            raise InvalidTransition("No automatic send is queued for this invoice.", field="id")
        await Invoice.filter(id=invoice.id).using_db(conn).update(auto_send_at=None, updated_at=datetime.now(UTC))
        await InvoiceEvent.create(
            invoice_id=invoice.id, actor_id=actor.user_id, kind="AUTO_SEND_CANCELLED",
            detail={"wasDueAt": invoice.auto_send_at.isoformat()}, using_db=conn,
        )
    changed = await Invoice.get(id=invoice.id)
    record(Entity.INVOICE, Transition.CHANGED, [changed])
    return changed


async def void(principal, ids: list[Any], *, reason: str = "", notify_customer: bool = True) -> list[Outcome]:
    """Void invoices for good. An invoice can be voided until money is kept against it: any
    payment not refunded in full must be refunded first. A voided invoice keeps its number,
    stays visible and owes nothing; it is never OVERDUE. One that Xero has is voided there too."""
    actor = Actor(user_id=principal.user.id)
    reason = (reason or "").strip()
    if len(reason) > 1024:
        raise ValidationFailed("At most 1024 characters.", field="reason")

    async def one(invoice_id):
        async with in_transaction() as conn:
            invoice = await lock_invoice(conn, visible_invoices(principal), invoice_id, field="ids")
            if invoice.amount_paid > invoice.amount_refunded:
                raise InvalidTransition(
                    f"Invoice {invoice.number} has payments: refund them before voiding it.",
                    field="ids", code=ErrorCode.INVOICE_PAID,
                )
            changes: dict[str, Any] = {"voided_at": datetime.now(UTC), "auto_send_at": None}
            if invoice.payment_status == PaymentStatus.OVERDUE:
                changes["payment_status"] = PaymentStatus.UNPAID
            # Late costs it billed are billed again by the next invoice that can.
            await conn.execute_query(
                "UPDATE late_costs SET billed_invoice_id = NULL WHERE billed_invoice_id = $1", [str(invoice_id)]
            )
            voided = await transition(
                invoice_id, "VOID", actor, organization_id=principal.organization_id, changes=changes,
                detail={"reason": reason, "notifyCustomer": notify_customer}, connection=conn,
            )
            await void_in_xero(conn, invoice, actor)
            return voided

    outcomes = await _each(principal, ids, one)
    record(Entity.INVOICE, Transition.VOIDED, [o.invoice for o in outcomes if o.invoice], notify_customer=notify_customer)
    return outcomes


async def reissue(principal, invoice_id: Any) -> Invoice:
    """The replacement of a voided invoice: a new invoice for the same account, month (and
    provider, and kind), linked both ways, moved to GENERATING at once; its number is the next
    one when it is generated. Its generation is queued once this has committed."""
    actor = Actor(user_id=principal.user.id)
    async with in_transaction() as conn:
        voided = await lock_invoice(conn, visible_invoices(principal), invoice_id)
        if voided.status != InvoiceStatus.VOIDED:
            raise InvalidTransition("Only a voided invoice can be replaced: void it first.", field="id")
        if await Invoice.filter(replaces_id=voided.id).using_db(conn).exists():
            raise Conflict(f"Invoice {voided.number or voided.id} has a replacement already.", field="id")
        account = await ManagedAccount.get(id=voided.managed_account_id, using_db=conn)
        if account.billing_profile_id is None:
            raise MissingBillingProfile(
                f"{account.name} has no billing profile: choose one on the managed account first.", field="id"
            )
        replaces_active = await Invoice.filter(
            managed_account_id=voided.managed_account_id, billing_period_id=voided.billing_period_id,
            provider_name=voided.provider_name, kind=InvoiceKind.REGULAR,
        ).exclude(status=InvoiceStatus.VOIDED).using_db(conn).exists()
        if voided.kind == InvoiceKind.REGULAR and replaces_active:
            raise Conflict("The account has another invoice for the month already.", field="id")
        replacement = await Invoice.create(
            organization_id=voided.organization_id, managed_account_id=voided.managed_account_id,
            billing_period_id=voided.billing_period_id, kind=voided.kind, provider_name=voided.provider_name,
            replaces_id=voided.id, currency=account.currency, status=InvoiceStatus.GENERATING, using_db=conn,
        )
        await InvoiceEvent.bulk_create([
            InvoiceEvent(invoice_id=replacement.id, actor_id=actor.user_id, kind="CREATED",
                         to_status=InvoiceStatus.GENERATING.value, detail={"replaces": voided.number}),
            InvoiceEvent(invoice_id=voided.id, actor_id=actor.user_id, kind="REPLACED",
                         from_status=InvoiceStatus.VOIDED.value, to_status=InvoiceStatus.VOIDED.value,
                         detail={"replacement": str(replacement.id)}),
        ], using_db=conn)
    record(Entity.INVOICE, Transition.REISSUED, [replacement.id])
    return await Invoice.get(id=replacement.id)


async def fail_generation(invoice_id: Any, message: str, actor: Actor) -> Invoice | None:
    """GENERATING -> ERROR with a message a person can act on; None if it moved on already."""
    try:
        failed = await transition(
            invoice_id, "FAILED", actor, changes={"error_message": message}, detail={"error": message}
        )
    except InvalidTransition:
        return None
    record(Entity.INVOICE, Transition.CHANGED, [failed])
    return failed


async def request_resend(principal, invoice_id: Any) -> Invoice:
    """Queue the approved invoice's e-mail again (the timeline records who asked)."""
    invoice = await visible_invoices(principal).get_or_none(id=invoice_id) if invoice_id else None
    if invoice is None:
        raise NotFound("No such invoice.", field="id")
    if invoice.status != InvoiceStatus.APPROVED:
        raise InvalidTransition("Only an approved invoice can be sent.", field="id")
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        await Invoice.filter(id=invoice.id).using_db(conn).update(delivery_status=DeliveryStatus.QUEUED, updated_at=now)
        await InvoiceEvent.create(
            invoice_id=invoice.id, actor_id=principal.user.id, kind="RESEND_REQUESTED", using_db=conn
        )
    requested = await Invoice.get(id=invoice.id)
    record(Entity.INVOICE, Transition.RESEND_REQUESTED, [requested])
    return requested
