"""Invoices: the list with its filters, and one invoice by number."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Annotated

import strawberry
from graphql import GraphQLError

from infra import events
from jobs import dispatch
from models import invoices
from models.errors import DomainError, NotFound
from models.invoices import DeliveryStatus, actions
from schema.context import Info
from schema.errors import ValidationError, user_error
from schema.invoices import (
    BulkInvoicePayload,
    Invoice,
    InvoiceActionResult,
    InvoiceActionResults,
    InvoiceConnection,
    InvoiceFilter,
    InvoiceOrder,
    InvoiceOrderField,
    InvoiceResendQueued,
    InvoiceStatusEvent,
    ResendInvoicePayload,
    prefetch,
)
from schema.loaders import Loaders
from schema.nodes import node_uuid
from schema.pagination import Direction, order_fields, page_of, paginate, sibling_page
from schema.permissions import ANY_USER, OWNERS, requires


def invoice_query(where: InvoiceFilter | None) -> invoices.InvoiceQuery:
    if where is None:
        return invoices.InvoiceQuery()
    return invoices.InvoiceQuery(
        statuses=where.status, payment_statuses=where.payment_status,
        account_ids=_uuids(where.account_ids, "ManagedAccount"), period_from=where.period_from,
        period_to=where.period_to, issued_from=where.issued_from, issued_to=where.issued_to,
        preset=where.preset, search=where.search,
    )


def _uuid_or_none(global_id: str, type_name: str):
    """The database id of a global id; None when it is malformed or of another type."""
    try:
        return node_uuid(global_id, type_name)
    except NotFound:
        return None


def _uuids(ids: list[str] | None, type_name: str):
    """Ids of a filter; an id that is malformed or of another type matches nothing."""
    if ids is None:
        return None
    return [uuid for uuid in (_uuid_or_none(global_id, type_name) for global_id in ids) if uuid]


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
        query, order = _listed(info, filter, order_by)
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
        row = await invoices.visible_invoices(info.context.principal).get_or_none(number=number.strip())
        return Invoice.from_model(row) if row else None


def _listed(info: Info, where: InvoiceFilter | None, order_by: InvoiceOrder | None):
    """The invoices of the list the viewer may see, filtered, and their order."""
    principal = info.context.principal
    today = invoices.organization_today(principal.user.organization.timezone)
    query = invoices.filter_invoices(invoices.visible_invoices(principal), invoice_query(where), today)
    return query, order_by or InvoiceOrder(field=InvoiceOrderField.CREATED_AT, direction=Direction.DESC)


async def account_invoices(
    info: Info, account_id, where: InvoiceFilter | None, order_by: InvoiceOrder | None,
    first: int | None, after: str | None, last: int | None, before: str | None,
) -> InvoiceConnection:
    """`ManagedAccount.invoices`: the `invoices` list within one account (`account_id` None:
    an account the filter's `accountIds` leave out). Pages by `first`/`after` load with
    the same page of every other account of the request: a constant number of statements
    for a list of accounts. Pages by `last`/`before` are fetched one account at a time."""
    query, order = _listed(info, replace(where, account_ids=None) if where else None, order_by)
    page = sibling_page(info, first, after, last, before)
    if page is None:
        query = query.filter(managed_account_id__in=[account_id] if account_id else [])
        connection = await paginate(
            info, InvoiceConnection, query, Invoice.from_model, order,
            first=first, after=after, last=last, before=before,
        )
    else:
        total, rows = 0, []
        if account_id is not None:
            pages = info.context.loaders.pages(
                query, "managed_account_id", order_fields(order.field.value, order.direction), *page
            )
            total, rows = await pages.load(account_id)
        connection = page_of(info, InvoiceConnection, total, rows, Invoice.from_model, first, after)
    await prefetch(info, [edge.node for edge in connection.edges])
    return connection


def invoice_ids(ids: list[strawberry.ID]) -> list:
    """Database ids of invoice global ids; a malformed one (or of another type) is None,
    so that it fails alone, as not found."""
    return [_uuid_or_none(global_id, "Invoice") for global_id in ids]


def _results(outcomes) -> InvoiceActionResults:
    return InvoiceActionResults(results=[
        InvoiceActionResult(
            id=gid, invoice=Invoice.from_model(o.invoice) if o.invoice else None,
            error=user_error(o.error) if o.error else None,
        )
        for gid, o in outcomes
    ])


async def _bulk(info: Info, ids: list[strawberry.ID], operation) -> BulkInvoicePayload:
    """Decode the ids (a bad one fails alone, as not found), run the domain operation, map."""
    if len(ids) > actions.MAX_BULK:
        return ValidationError(code="INVALID", message=f"At most {actions.MAX_BULK} ids at once.", field="ids")
    outcomes = await operation(info.context.principal, invoice_ids(ids))
    return _results(list(zip(ids, outcomes)))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Generate invoices that are ready to invoice: each moves to GENERATING and "
        "its PDF is made in the background.",
        extensions=requires(*OWNERS),
    )
    async def generate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=False))
        await _enqueue_generated(info, payload)
        return payload

    @strawberry.mutation(
        description="Generate again invoices awaiting approval or in error (same number, new "
        "revision). Approved invoices cannot be regenerated.",
        extensions=requires(*OWNERS),
    )
    async def regenerate_invoices(self, info: Info, ids: list[strawberry.ID]) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, lambda p, d: actions.request_generation(p, d, regenerate=True))
        await _enqueue_generated(info, payload)
        return payload

    @strawberry.mutation(
        description="Approve invoices awaiting approval and e-mail them to the billing e-mails. "
        "Approved invoices never change. Approving twice is harmless.",
        extensions=requires(*OWNERS),
    )
    async def approve_invoices(
        self, info: Info, ids: list[strawberry.ID],
        notify_customer: Annotated[bool, strawberry.argument(
            description="E-mail the invoice to the billing e-mails now (the customer's notice of it); "
            "when false it stays NOT_SENT until `resendInvoice`."
        )] = True,
    ) -> BulkInvoicePayload:
        payload = await _bulk(info, ids, lambda p, d: actions.approve(p, d, notify_customer=notify_customer))
        if isinstance(payload, InvoiceActionResults):
            await _publish(info, payload)
            for result in payload.results:
                if result.invoice and result.invoice.model.delivery_status == DeliveryStatus.QUEUED:
                    await dispatch.enqueue_send(info.context.redis, result.invoice.model.id)
        return payload

    @strawberry.mutation(
        description="Void invoices for good: each keeps its number, stays visible and owes nothing. "
        "Possible in any status but GENERATING and VOIDED, as long as no payment is kept (refund "
        "payments first). Customers are told about invoices they received (approved ones).",
        extensions=requires(*OWNERS),
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
        try:
            payload = await _bulk(
                info, ids, lambda p, d: actions.void(p, d, reason=reason, notify_customer=notify_customer)
            )
        except DomainError as exc:
            return user_error(exc)
        if isinstance(payload, InvoiceActionResults):
            await _publish(info, payload)
        if notify_customer and isinstance(payload, InvoiceActionResults):
            for result in payload.results:
                if result.invoice:
                    await dispatch.enqueue_notification(info.context.redis, result.invoice.model.id, "voided")
        return payload

    @strawberry.mutation(description="E-mail an approved invoice again.", extensions=requires(*OWNERS))
    async def resend_invoice(self, info: Info, id: strawberry.ID) -> ResendInvoicePayload:
        try:
            invoice = await actions.request_resend(info.context.principal, node_uuid(id, "Invoice"))
        except DomainError as exc:
            return user_error(exc)
        await events.publish(info.context.redis, [invoice])
        await dispatch.enqueue_send(info.context.redis, invoice.id, attempt=str(invoice.updated_at.timestamp()))
        return InvoiceResendQueued(invoice=Invoice.from_model(invoice))


async def _publish(info: Info, payload: InvoiceActionResults) -> None:
    await events.publish(info.context.redis, [r.invoice.model for r in payload.results if r.invoice])


async def _enqueue_generated(info: Info, payload) -> None:
    # Published before the jobs are queued: the worker's own events come after these.
    if isinstance(payload, InvoiceActionResults):
        await _publish(info, payload)
        await dispatch.enqueue_generation(
            info.context.redis, [r.invoice.model.id for r in payload.results if r.invoice]
        )


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
        subscription = await context.events.subscribe(
            context.redis, context.principal,
            account_ids=_uuids(account_ids, "ManagedAccount"), invoice_ids=_uuids(invoice_ids, "Invoice"),
        )
        try:
            async for delivery in subscription:
                # Each event is a new read: nothing cached for an earlier one is reused.
                context.loaders = Loaders()
                yield InvoiceStatusEvent.from_delivery(delivery)
        except events.SubscriptionEnded as ended:
            raise GraphQLError(ended.message, extensions={"code": ended.code}) from None
        finally:
            subscription.close()
