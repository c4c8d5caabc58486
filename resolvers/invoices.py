"""Invoices: the list with its filters, one invoice by number, the bulk actions and the live
status subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError

from infra import events
from jobs import effects
from models import invoices
from models.errors import ValidationFailed
from models.invoices import actions
from schema import fanout
from schema.context import Info
from schema.errors import user_error
from schema.invoices import (
    BulkInvoicePayload,
    Invoice,
    InvoiceActionResult,
    InvoiceActionResults,
    InvoiceConnection,
    InvoiceFilter,
    InvoiceOrder,
    InvoiceResendQueued,
    InvoiceStatusEvent,
    ResendInvoicePayload,
    listed_invoices,
    prefetch,
)
from schema.loaders import Loaders
from schema.mutations import mutation
from schema.nodes import filter_uuids, node_uuid, node_uuid_or_none
from schema.pagination import paginate
from schema.permissions import ANY_USER, OWNERS, requires


@strawberry.type
class Query:
    @strawberry.field(
        description="Invoices visible to you: your organization's, or (for a customer) your "
        "approved ones.",
        extensions=requires(*ANY_USER),
    )
    async def invoices(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: InvoiceFilter | None = None, order_by: InvoiceOrder | None = None,
    ) -> InvoiceConnection:
        query, order = listed_invoices(info, filter, order_by)
        page = await paginate(
            info,
            InvoiceConnection, query, Invoice.from_model,
            order, first=first, after=after, last=last, before=before,
        )
        await prefetch(info, [edge.node for edge in page.edges])
        return page

    @strawberry.field(
        description="One invoice by its number (INV-2026-0042); null when not visible.",
        extensions=requires(*ANY_USER),
    )
    async def invoice(self, info: Info, number: str) -> Invoice | None:
        row = await invoices.visible_invoice_by_number(info.context.principal, number)
        return Invoice.from_model(row) if row else None


async def _bulk(
    info: Info, ids: list[strawberry.ID], operation: Callable[[Any, list], Awaitable[list[actions.Outcome]]]
) -> tuple[InvoiceActionResults, list]:
    """Decode the ids (a bad one fails alone, as not found), run the domain operation, and
    map its outcomes; also the invoices it changed, for their after-commit effects."""
    if len(ids) > actions.MAX_BULK:
        raise ValidationFailed(f"At most {actions.MAX_BULK} ids at once.", field="ids")
    outcomes = await operation(info.context.principal, [node_uuid_or_none(gid, "Invoice") for gid in ids])
    results = InvoiceActionResults(results=[
        InvoiceActionResult(
            id=gid, invoice=Invoice.from_model(o.invoice) if o.invoice else None,
            error=user_error(o.error) if o.error else None,
        )
        for gid, o in zip(ids, outcomes)
    ])
    return results, [o.invoice for o in outcomes if o.invoice]


@strawberry.type
class Mutation:
    @mutation(
        description="Generate invoices that are ready to invoice: each moves to GENERATING and "
        "its PDF is made in the background.",
        scopes=OWNERS,
    )
    async def generate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        results, changed = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=False))
        await effects.generation_requested(info.context.redis, [invoice.id for invoice in changed])
        return results

    @mutation(
        description="Generate again invoices awaiting approval or in error (same number, new "
        "revision). Approved invoices cannot be regenerated.",
        scopes=OWNERS,
    )
    async def regenerate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        results, changed = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=True))
        await effects.generation_requested(info.context.redis, [invoice.id for invoice in changed])
        return results

    @mutation(
        description="Approve invoices awaiting approval and e-mail them to the billing e-mails. "
        "Approved invoices never change. Approving twice is harmless.",
        scopes=OWNERS,
    )
    async def approve_invoices(
        self, info: Info, ids: list[strawberry.ID],
        notify_customer: Annotated[bool, strawberry.argument(
            description="E-mail the invoice to the billing e-mails now (the customer's notice of it); "
            "when false it stays NOT_SENT until `resendInvoice`."
        )] = True,
    ) -> BulkInvoicePayload:
        results, changed = await _bulk(info, ids, lambda p, d: actions.approve(p, d, notify_customer=notify_customer))
        await effects.invoices_approved(info.context.redis, changed)
        return results

    @mutation(
        description="Void invoices for good: each keeps its number, stays visible and owes nothing. "
        "Possible in any status but GENERATING and VOIDED, as long as no payment is kept (refund "
        "payments first). Customers are told about invoices they received (approved ones).",
        scopes=OWNERS,
    )
    async def void_invoices(
        self, info: Info, ids: list[strawberry.ID],
        reason: Annotated[str, strawberry.argument(
            description="Why, up to 1024 characters: kept on the timeline and told to the customer."
        )] = "",
        notify_customer: Annotated[bool, strawberry.argument(
            description="E-mail the billing e-mails that the invoice was voided."
        )] = True,
    ) -> BulkInvoicePayload:
        results, changed = await _bulk(
            info, ids, lambda p, d: actions.void(p, d, reason=reason, notify_customer=notify_customer)
        )
        await effects.invoices_voided(info.context.redis, changed, notify_customer=notify_customer)
        return results

    @mutation(description="E-mail an approved invoice again.", scopes=OWNERS)
    async def resend_invoice(self, info: Info, id: strawberry.ID) -> ResendInvoicePayload:
        invoice = await actions.request_resend(info.context.principal, node_uuid(id, "Invoice"))
        await effects.resend_requested(info.context.redis, invoice)
        return InvoiceResendQueued(invoice=Invoice.from_model(invoice))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every change of an invoice you may see, live: status, payment and delivery, "
        "made by anyone (a user, the worker, the scheduler). Narrow it to some accounts or "
        "invoices. Events are not replayed: after a reconnect, query what you show, then "
        "subscribe again.",
        extensions=requires(*ANY_USER),
    )
    async def invoice_status_changed(
        self, info: Info, account_ids: list[strawberry.ID] | None = None,
        invoice_ids: list[strawberry.ID] | None = None,
    ) -> AsyncGenerator[InvoiceStatusEvent, None]:
        context = info.context
        assert context.events is not None, "the app gives every request its process's event hub"
        subscription = await context.events.subscribe(
            context.redis, context.authenticated(),
            account_ids=filter_uuids(account_ids, "ManagedAccount"), invoice_ids=filter_uuids(invoice_ids, "Invoice"),
        )
        try:
            async for delivery in subscription:
                # Executed once for every subscriber of this process with the same operation,
                # variables and scope class, and sent from here (schema/fanout.py)...
                if await fanout.deliver(info, delivery.shared, partial(InvoiceStatusEvent.from_delivery, delivery)):
                    continue
                # ... or, on another transport, executed by graphql-core for this subscriber.
                # Each event is a new read: nothing cached for an earlier one is reused.
                context.loaders = Loaders()
                yield InvoiceStatusEvent.from_delivery(delivery)
        except events.SubscriptionEnded as ended:
            raise GraphQLError(ended.message, extensions={"code": ended.code}) from None
        finally:
            subscription.close()
