"""Invoices: the list with its filters, one invoice by number, the bulk actions and the live
status subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.relay import to_base64

from infra import events, links
from models import invoices
from models.errors import ValidationFailed
from models.invoices import actions, drafts, reconciliation, summary
from schema.core import fanout
from schema.core.context import Info
from schema.core.errors import user_error
from schema.core.loaders import Loaders
from schema.core.mutations import mutation
from schema.core.nodes import filter_uuids, node_uuid, node_uuid_or_none
from schema.core.pagination import paginate
from schema.core.permissions import ANY_USER, MSP_USERS, OWNERS, requires
from schema.core.scalars import Month
from schema.invoices import (
    BulkInvoicePayload,
    Invoice,
    InvoiceActionResult,
    InvoiceActionResults,
    InvoiceChanged,
    InvoiceChangePayload,
    InvoiceCheckCode,
    InvoiceConnection,
    InvoiceFilter,
    InvoiceItem,
    InvoiceOrder,
    InvoiceReissued,
    InvoiceResendQueued,
    InvoiceStatusEvent,
    ReissueInvoicePayload,
    ResendInvoicePayload,
    listed_invoices,
    prefetch,
)
from schema.invoices.inputs import InvoiceItemChange, InvoiceItemInput
from schema.invoices.reconciliation import AccountMargin, Reconciliation
from schema.invoices.summary import MonthSummary


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
        description="A month's reconciliation: every unit of the billed cost imported for it, per currency, "
        "in the part it went to (invoiced per account, not invoiced, integrations left out, unclaimed "
        "sub-accounts, late), with each invoice's rounding; the parts add up to the imported total exactly.",
        extensions=requires(*MSP_USERS),
    )
    async def reconciliation(self, info: Info, period: Month) -> Reconciliation:
        principal = info.context.authenticated()
        found = await reconciliation.reconcile(principal.organization_id, period)
        link = links.sign(info.context.settings, principal, "reconciliation", period.isoformat())
        return Reconciliation.of(found, link.url)

    @strawberry.field(
        description="A month at a glance: its invoices by display status with their totals per currency, and "
        "what still needs a person (approvals, warnings to acknowledge, errors, undelivered e-mails, deliveries "
        "after approval).",
        extensions=requires(*MSP_USERS),
    )
    async def month_summary(self, info: Info, period: Month) -> MonthSummary:
        return MonthSummary.of(await summary.month_summary(info.context.authenticated(), period))

    @strawberry.field(
        description="The margin report of a month: per invoiced account, what its invoice bills for cloud "
        "usage against what that usage cost the MSP.",
        extensions=requires(*MSP_USERS),
    )
    async def margins(self, info: Info, period: Month) -> list[AccountMargin]:
        found = await reconciliation.margins(info.context.authenticated().organization_id, period)
        return [AccountMargin.of(margin) for margin in found]

    @strawberry.field(
        description="One invoice by its number (INV-2026-0042); null when not visible.",
        extensions=requires(*ANY_USER),
    )
    async def invoice(self, info: Info, number: str) -> Invoice | None:
        row = await invoices.visible_invoice_by_number(info.context.principal, number)
        return Invoice.from_model(row) if row else None


async def _bulk(
    info: Info, ids: list[strawberry.ID] | None, operation: Callable[[Any, list], Awaitable[list[actions.Outcome]]],
    where: InvoiceFilter | None = None, statuses: tuple[invoices.InvoiceStatus, ...] = (),
) -> InvoiceActionResults:
    """Decode the ids (a bad one fails alone, as not found), or select by `where` those of the
    `statuses` the operation applies to; run the domain operation, and map its outcomes."""
    if (ids is None) == (where is None):
        raise ValidationFailed("Give ids or a filter, not both.", field="ids")
    if ids is None:
        query, _ = listed_invoices(info, where, None)
        chosen = await query.filter(status__in=statuses).order_by("created_at", "id").limit(
            actions.MAX_BY_FILTER + 1
        ).values_list("id", flat=True)
        if len(chosen) > actions.MAX_BY_FILTER:
            raise ValidationFailed(f"The filter selects more than {actions.MAX_BY_FILTER} invoices: narrow it.", field="filter")
        ids = [strawberry.ID(to_base64("Invoice", str(invoice_id))) for invoice_id in chosen]
    elif len(ids) > actions.MAX_BULK:
        raise ValidationFailed(f"At most {actions.MAX_BULK} ids at once.", field="ids")
    outcomes = await operation(info.context.principal, [node_uuid_or_none(gid, "Invoice") for gid in ids])
    return InvoiceActionResults(results=[
        InvoiceActionResult(
            id=gid, invoice=Invoice.from_model(o.invoice) if o.invoice else None,
            error=user_error(o.error) if o.error else None,
        )
        for gid, o in zip(ids, outcomes)
    ])


_IDS = strawberry.argument(description=f"The invoices, at most {actions.MAX_BULK}; or give `filter`.")


def _by_filter(what: str) -> Any:
    return strawberry.argument(
        description=f"Instead of ids: every invoice of the list's filter that is {what} "
        f"(at most {actions.MAX_BY_FILTER})."
    )


def _changed(edited: drafts.Edited) -> InvoiceChanged:
    currency = edited.invoice.currency
    return InvoiceChanged(
        invoice=Invoice.from_model(edited.invoice),
        item=InvoiceItem.from_model(edited.line, currency) if edited.line else None,
    )


@strawberry.type
class Mutation:
    @mutation(
        description="Generate invoices that are ready to invoice: each moves to GENERATING and "
        "its PDF is made in the background.",
        scopes=OWNERS,
    )
    async def generate_invoices(
        self, info: Info, ids: Annotated[list[strawberry.ID] | None, _IDS] = None,
        filter: Annotated[InvoiceFilter | None, _by_filter("READY_TO_INVOICE")] = None,
    ) -> BulkInvoicePayload:
        return await _bulk(
            info, ids, lambda p, d: actions.request_generation(p, d, regenerate=False),
            filter, (invoices.InvoiceStatus.READY_TO_INVOICE,),
        )

    @mutation(
        description="Generate again invoices awaiting approval or in error (same number, new "
        "revision). Approved invoices cannot be regenerated.",
        scopes=OWNERS,
    )
    async def regenerate_invoices(
        self, info: Info, ids: Annotated[list[strawberry.ID] | None, _IDS] = None,
        filter: Annotated[InvoiceFilter | None, _by_filter("AWAITING_APPROVAL or ERROR")] = None,
    ) -> BulkInvoicePayload:
        return await _bulk(
            info, ids, lambda p, d: actions.request_generation(p, d, regenerate=True),
            filter, (invoices.InvoiceStatus.AWAITING_APPROVAL, invoices.InvoiceStatus.ERROR),
        )

    @mutation(
        description="Approve invoices awaiting approval and e-mail them to the billing e-mails. "
        "Approved invoices never change. Approving twice is harmless.",
        scopes=OWNERS, idempotent=True,
    )
    async def approve_invoices(
        self, info: Info, ids: Annotated[list[strawberry.ID] | None, _IDS] = None,
        filter: Annotated[InvoiceFilter | None, _by_filter("AWAITING_APPROVAL")] = None,
        notify_customer: Annotated[bool, strawberry.argument(
            description="E-mail the invoice to the billing e-mails now (the customer's notice of it); "
            "when false it stays NOT_SENT until `resendInvoice`."
        )] = True,
        acknowledge: Annotated[list[InvoiceCheckCode], strawberry.argument(
            description="Warnings of `Invoice.checks` the approver has looked at: an invoice with a warning "
            "whose code is not listed is refused (CHECKS_UNACKNOWLEDGED); what was acknowledged goes on the timeline."
        )] | None = None,
    ) -> BulkInvoicePayload:
        acknowledged = frozenset(acknowledge or ())
        return await _bulk(
            info, ids, lambda p, d: actions.approve(p, d, notify_customer=notify_customer, acknowledged=acknowledged),
            filter, (invoices.InvoiceStatus.AWAITING_APPROVAL,),
        )

    @mutation(
        description="Void invoices for good: each keeps its number, stays visible and owes nothing. "
        "Possible in any status but GENERATING and VOIDED, as long as no payment is kept (refund "
        "payments first). Customers are told about invoices they received (approved ones); one that "
        "Xero has is voided there too.",
        scopes=OWNERS, idempotent=True,
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
        return await _bulk(
            info, ids, lambda p, d: actions.void(p, d, reason=reason, notify_customer=notify_customer)
        )

    @mutation(
        description="Replace a voided invoice: a new invoice for the same account and month, with "
        "a new number, made from the month's costs (and the late costs delivered since), linked "
        "both ways (`replaces`, `replacedBy`). Void the invoice first; one replacement each.",
        scopes=OWNERS, idempotent=True,
    )
    async def reissue_invoice(self, info: Info, id: strawberry.ID) -> ReissueInvoicePayload:
        replacement = await actions.reissue(info.context.principal, node_uuid(id, "Invoice"))
        replaced = await invoices.visible_invoices(info.context.principal).get(id=replacement.replaces_id)
        return InvoiceReissued(invoice=Invoice.from_model(replacement), replaced=Invoice.from_model(replaced))

    @mutation(
        description="Stop the automatic approval and send queued for an auto-invoiced invoice: it "
        "stays awaiting approval for review (approve it by hand).",
        scopes=OWNERS,
    )
    async def cancel_queued_invoice(self, info: Info, id: strawberry.ID) -> InvoiceChangePayload:
        invoice = await actions.cancel_queued_send(info.context.principal, node_uuid(id, "Invoice"))
        return InvoiceChanged(invoice=Invoice.from_model(invoice), item=None)

    @mutation(
        description="Set the memo printed on an invoice for the customer (empty clears it; at most "
        "2,000 characters), before approval.",
        scopes=OWNERS,
    )
    async def set_invoice_memo(self, info: Info, id: strawberry.ID, memo: str) -> InvoiceChangePayload:
        return _changed(await drafts.set_memo(info.context.principal, node_uuid(id, "Invoice"), memo))

    @mutation(
        description="Add a one-off item (a setup fee, hardware) to an invoice before approval; it is "
        "printed after the usage, and taxes and charges count it.",
        scopes=OWNERS, idempotent=True,
    )
    async def add_invoice_item(self, info: Info, invoice_id: strawberry.ID, item: InvoiceItemInput) -> InvoiceChangePayload:
        edited = await drafts.add_line(
            info.context.principal, node_uuid(invoice_id, "Invoice", field="invoiceId"),
            item.description, item.quantity, item.unit_price,
        )
        return _changed(edited)

    @mutation(description="Change a one-off item of an invoice before approval.", scopes=OWNERS)
    async def update_invoice_item(self, info: Info, id: strawberry.ID, item: InvoiceItemChange) -> InvoiceChangePayload:
        edited = await drafts.update_line(
            info.context.principal, node_uuid(id, "InvoiceItem"), item.description, item.quantity, item.unit_price
        )
        return _changed(edited)

    @mutation(description="Remove a one-off item from an invoice before approval.", scopes=OWNERS)
    async def remove_invoice_item(self, info: Info, id: strawberry.ID) -> InvoiceChangePayload:
        return _changed(await drafts.remove_line(info.context.principal, node_uuid(id, "InvoiceItem")))

    @mutation(description="E-mail an approved invoice again.", scopes=OWNERS, idempotent=True)
    async def resend_invoice(self, info: Info, id: strawberry.ID) -> ResendInvoicePayload:
        invoice = await actions.request_resend(info.context.principal, node_uuid(id, "Invoice"))
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
            # Sent by the hub itself while this subscriber waits (schema/core/fanout.py), else:
            fanout.attach(info, subscription, InvoiceStatusEvent.from_delivery)
            async for delivery in subscription:
                # Executed once for every subscriber of this process with the same operation,
                # variables and scope class, and sent from here...
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
