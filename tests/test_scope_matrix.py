"""The scope matrix, read from the SDL: every query, mutation and subscription field, asked by
each principal, against the expectation table written below.

The principals: nobody (no token), the victim organization's OWNER, VIEWER and the CUSTOMER
of its account Contoso, the CUSTOMER of its other account Tailspin, and the OWNER of another
organization. The fields and their arguments come from the live schema: each argument is the
smallest valid value of its SDL type, and every id is one of the victim's real rows (made by
the factories), so that a refusal is due to the principal and not to the input. A field the
table does not list fails the test: a new field forces a decision.

Outcomes:
- OK: answered, not refused, and the victim's objects were found (no NOT_FOUND anywhere);
- FORBIDDEN / UNAUTHENTICATED: refused with that top-level code, nothing else answered;
- PASSED: let past the scope check, the payload not judged (where the world cannot succeed);
- HIDDEN: not refused by scope, but the answer holds none of the victim's data (null, empty,
  NOT_FOUND, or the principal's own rows only).
After every write that is not OK, the victim organization's rows (a row count and a hash per
table, reached through the foreign keys) are what they were before; after a refused one, so
are the jobs in Redis (arq's keys and queue). Uploads go as GraphQL multipart requests,
subscriptions over the WebSocket (graphql-transport-ws), where a socket without a token
closes with 4403.

One world serves the whole module (the tables are emptied once, at its start); for each field
the principals ask in the order of PRINCIPALS, so the writes that succeed come last."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import graphql
import pytest
from strawberry.relay import to_base64
from tortoise import connections

from infra import broker, events
from invoicing.root import sdl
from models import BillingRule, ExchangeRate, Invoice, Payment
from models.auth import TokenKind, issue_token
from models.base import Scope
from models.cost_sources import CostSource, CostSourceKind
from models.costs.records import CostImport, CostImportState, CostRecord
from models.invoice_templates import InvoiceTemplate
from models.invoices.tables import InvoiceExtraLine
from models.webhooks.tables import DeliveryState, WebhookDelivery, WebhookEndpoint, WebhookEvent
from models.xero.tables import XeroConnection
from tests import factories
from tests.conftest import serving
from tests.graphql import LiveClient, subscribed
from tests.test_billing_profiles import png

SCHEMA = graphql.build_schema(sdl())

OK, FORBIDDEN, UNAUTHENTICATED, HIDDEN = "OK", "FORBIDDEN", "UNAUTHENTICATED", "HIDDEN"
# Let past the scope check, its payload not judged: only for what this world cannot make
# succeed (said where it is used).
PASSED = "PASSED"
# Refused and foreign principals first, so that a write that succeeds (the owner's) changes
# the world only after the others were checked against it.
PRINCIPALS = ("anonymous", "foreign_owner", "other_customer", "customer", "viewer", "owner")


def row(*, anonymous=UNAUTHENTICATED, foreign_owner=HIDDEN, other_customer=FORBIDDEN, customer=FORBIDDEN,
        viewer=FORBIDDEN, owner=OK) -> dict[str, str]:
    return {"anonymous": anonymous, "foreign_owner": foreign_owner, "other_customer": other_customer,
            "customer": customer, "viewer": viewer, "owner": owner}


# The usual rows, spelled out per field below so that each field's line says who may do what.
OWNER_ONLY = row()
MSP = row(viewer=OK)
ANY_USER = row(viewer=OK, customer=OK, other_customer=HIDDEN)
PUBLIC = row(anonymous=OK, foreign_owner=OK, other_customer=OK, customer=OK, viewer=OK)

EXPECTED: dict[str, dict[str, str]] = {
    # Queries.
    "Query.viewer": row(anonymous=HIDDEN, foreign_owner=HIDDEN, other_customer=HIDDEN, customer=OK, viewer=OK),
    "Query.billingProfiles": MSP,
    "Query.exchangeRates": MSP,
    "Query.invoices": ANY_USER,
    "Query.reconciliation": MSP,
    "Query.margins": MSP,
    "Query.monthSummary": MSP,
    "Query.invoice": ANY_USER,
    "Query.billingPeriods": MSP,
    "Query.billingRules": MSP,
    "Query.managedAccounts": ANY_USER,
    "Query.costs": MSP,
    "Query.usage": ANY_USER,
    "Query.costImports": MSP,
    "Query.users": MSP,
    "Query.apiTokens": OWNER_ONLY,
    "Query.creditNotes": ANY_USER,
    "Query.xero": MSP,
    "Query.costSources": MSP,
    "Query.auditLog": OWNER_ONLY,
    "Query.auditLogExport": OWNER_ONLY,
    "Query.webhookEndpoints": MSP,
    "Query.invoiceTemplates": MSP,
    "Query.webhookEventTypes": MSP,
    "Query.node": ANY_USER,
    "Query.nodes": ANY_USER,
    # Mutations.
    "Mutation.login": PUBLIC,
    "Mutation.createApiToken": OWNER_ONLY,
    # Anyone may revoke its own tokens; only an owner another user's (the owner's spare token here).
    "Mutation.revokeToken": row(viewer=HIDDEN, customer=HIDDEN, other_customer=HIDDEN),
    "Mutation.unlockLogin": OWNER_ONLY,
    "Mutation.createBillingProfile": OWNER_ONLY,
    "Mutation.updateBillingProfile": OWNER_ONLY,
    "Mutation.deleteBillingProfile": OWNER_ONLY,
    "Mutation.setBillingProfileLogo": OWNER_ONLY,
    "Mutation.removeBillingProfileLogo": OWNER_ONLY,
    "Mutation.setExchangeRate": OWNER_ONLY,
    "Mutation.createCostSource": OWNER_ONLY,
    "Mutation.updateCostSource": OWNER_ONLY,
    "Mutation.deleteCostSource": OWNER_ONLY,
    "Mutation.testCostSource": OWNER_ONLY,
    "Mutation.syncCostSource": OWNER_ONLY,
    "Mutation.createWebhookEndpoint": OWNER_ONLY,
    # Any user of the account: MSP users any of theirs, a customer its own (queued only: no worker).
    "Mutation.printStatement": ANY_USER,
    "Mutation.updateWebhookEndpoint": OWNER_ONLY,
    "Mutation.deleteWebhookEndpoint": OWNER_ONLY,
    "Mutation.uploadInvoiceTemplate": OWNER_ONLY,
    "Mutation.activateInvoiceTemplate": OWNER_ONLY,
    # Prints an invoice with a template and stores nothing: the organization's viewers may too.
    "Mutation.previewInvoiceTemplate": MSP,
    "Mutation.rotateWebhookSecret": OWNER_ONLY,
    "Mutation.redeliverWebhook": OWNER_ONLY,
    "Mutation.sendTestWebhook": OWNER_ONLY,
    "Mutation.createBillingRule": OWNER_ONLY,
    "Mutation.updateBillingRule": OWNER_ONLY,
    "Mutation.deleteBillingRule": OWNER_ONLY,
    "Mutation.generateInvoices": OWNER_ONLY,
    "Mutation.regenerateInvoices": OWNER_ONLY,
    "Mutation.approveInvoices": OWNER_ONLY,
    "Mutation.voidInvoices": OWNER_ONLY,
    "Mutation.reissueInvoice": OWNER_ONLY,
    "Mutation.cancelQueuedInvoice": OWNER_ONLY,
    "Mutation.setInvoiceMemo": OWNER_ONLY,
    "Mutation.addInvoiceItem": OWNER_ONLY,
    "Mutation.updateInvoiceItem": OWNER_ONLY,
    "Mutation.removeInvoiceItem": OWNER_ONLY,
    "Mutation.resendInvoice": OWNER_ONLY,
    "Mutation.recordPayment": OWNER_ONLY,
    "Mutation.refundPayment": OWNER_ONLY,
    "Mutation.closeBillingPeriod": OWNER_ONLY,
    "Mutation.createManagedAccount": OWNER_ONLY,
    "Mutation.updateManagedAccount": OWNER_ONLY,
    "Mutation.importCosts": OWNER_ONLY,
    "Mutation.exportInvoices": MSP,
    "Mutation.downloadInvoicePdfs": MSP,
    "Mutation.updateExportSettings": OWNER_ONLY,
    "Mutation.inviteUser": OWNER_ONLY,
    "Mutation.resendInvitation": OWNER_ONLY,
    "Mutation.acceptInvitation": PUBLIC,
    "Mutation.changeUserScope": OWNER_ONLY,
    "Mutation.deactivateUser": OWNER_ONLY,
    "Mutation.reactivateUser": OWNER_ONLY,
    "Mutation.updateOrganization": OWNER_ONLY,
    "Mutation.stopReminders": OWNER_ONLY,
    "Mutation.resumeReminders": OWNER_ONLY,
    "Mutation.createCreditNote": OWNER_ONLY,
    "Mutation.applyCredit": OWNER_ONLY,
    "Mutation.refundCredit": OWNER_ONLY,
    "Mutation.updateEInvoicingSettings": OWNER_ONLY,
    "Mutation.connectXero": OWNER_ONLY,
    # No authorization is pending (completing one takes Xero's own token endpoint: tests/test_xero.py).
    "Mutation.completeXeroConnection": row(owner=PASSED),
    "Mutation.disconnectXero": OWNER_ONLY,
    "Mutation.updateXeroSettings": OWNER_ONLY,
    "Mutation.pushInvoicesToXero": OWNER_ONLY,
    # Subscriptions, over the WebSocket.
    "Subscription.invoiceStatusChanged": ANY_USER,
    "Subscription.costImportChanged": MSP,
}

# Which of the victim's rows an id argument names: by the argument's name, and for a bare `id`
# or `ids` by the field. The spare rows are the ones an owner's successful write may delete,
# void or disable without taking away what later fields use.
ID_BY_ARGUMENT = {
    "accountId": "account", "accountIds": "account", "managedAccountId": "account",
    "billingProfileId": "profile", "billingProfileIds": "profile",
    "invoiceId": "invoice", "invoiceIds": "invoice",
    "paymentId": "payment", "creditNoteId": "credit_note", "userId": "spare_user",
}
ID_BY_FIELD = {
    "Query.node": {"id": "invoice"},
    "Query.nodes": {"ids": "invoice"},
    "Mutation.revokeToken": {"id": "spare_token"},
    "Mutation.updateBillingProfile": {"id": "profile"},
    "Mutation.deleteBillingProfile": {"id": "spare_profile"},
    "Mutation.setBillingProfileLogo": {"id": "profile"},
    "Mutation.removeBillingProfileLogo": {"id": "profile"},
    "Mutation.updateBillingRule": {"id": "rule"},
    "Mutation.updateManagedAccount": {"id": "account"},
    "Mutation.deleteBillingRule": {"id": "spare_rule"},
    "Mutation.generateInvoices": {"ids": "ready_invoice"},
    "Mutation.regenerateInvoices": {"ids": "draft"},
    "Mutation.approveInvoices": {"ids": "draft"},
    "Mutation.voidInvoices": {"ids": "spare_invoice"},
    "Mutation.reissueInvoice": {"id": "spare_invoice"},
    "Mutation.cancelQueuedInvoice": {"id": "ready_invoice"},
    "Mutation.setInvoiceMemo": {"id": "draft"},
    "Mutation.addInvoiceItem": {"invoiceId": "draft"},
    "Mutation.updateInvoiceItem": {"id": "item"},
    "Mutation.removeInvoiceItem": {"id": "spare_item"},
    "Mutation.resendInvoice": {"id": "invoice"},
    "Mutation.exportInvoices": {"ids": "invoice"},
    "Mutation.downloadInvoicePdfs": {"ids": "invoice"},
    "Mutation.resendInvitation": {"userId": "invited_user"},
    "Mutation.pushInvoicesToXero": {"ids": "invoice"},
    "Subscription.costImportChanged": {"id": "cost_import"},
    "Mutation.updateCostSource": {"id": "cost_source"},
    "Mutation.deleteCostSource": {"id": "spare_cost_source"},
    "Mutation.testCostSource": {"id": "cost_source"},
    "Mutation.syncCostSource": {"id": "cost_source"},
    "Mutation.updateWebhookEndpoint": {"id": "webhook_endpoint"},
    "Mutation.deleteWebhookEndpoint": {"id": "spare_webhook_endpoint"},
    "Mutation.rotateWebhookSecret": {"id": "webhook_endpoint"},
    "Mutation.redeliverWebhook": {"deliveryId": "webhook_delivery"},
    "Mutation.sendTestWebhook": {"endpointId": "webhook_endpoint"},
    "Mutation.activateInvoiceTemplate": {"id": "invoice_template"},
    "Mutation.previewInvoiceTemplate": {"templateId": "invoice_template"},
}
# Optional arguments naming ids are given (a foreign id is what a foreign principal must not
# reach), but not a filter: beside `ids` it would be refused as input. The invoice events are
# asked for unfiltered: an event the principal may see then arrives after any it may not.
LEFT_OUT = {"filter"}
LEFT_OUT_OF = {"Subscription.invoiceStatusChanged": {"accountIds", "invoiceIds"}}
VALUES_BY_ARGUMENT: dict[str, Any] = {
    "email": "matrix-invitee@example.com", "password": "wrong horse battery staple",
    "currency": "EUR", "month": "2024-10", "period": "2024-09", "from": "2024-09", "to": "2024-09",
    "amount": "1.00", "rate": "0.9", "number": "INV-2024-0001", "mode": "AMOUNT",
    # A customer user names its account; a file of the account's own integration too.
    "scope": "CUSTOMER", "origin": "ACCOUNT_INTEGRATION",
    # The world's cost sources never synced: their data of the month is MISSING, so the close is forced.
    "force": True,
}
DAYS_BY_ARGUMENT = {"from": "2024-09-01", "to": "2024-09-30"}
# Files of the two multipart fields: a PNG logo, and one FOCUS row (queued only: no worker
# runs here).
FOCUS_CSV = (
    b"BillingAccountId,SubAccountId,SubAccountName,ProviderName,ChargePeriodStart,ChargePeriodEnd,"
    b"BilledCost,BillingCurrency,ServiceName,ChargeCategory\n"
    b"111,222,Contoso prod,AWS,2024-09-01T00:00:00Z,2024-09-02T00:00:00Z,1.00,USD,Amazon EC2,Usage\n"
)
UPLOADS = {"Mutation.setBillingProfileLogo": ("logo.png", png(), "image/png"),
           "Mutation.importCosts": ("focus.csv", FOCUS_CSV, "text/csv")}


def _fields() -> list[str]:
    roots = (SCHEMA.query_type, SCHEMA.mutation_type, SCHEMA.subscription_type)
    return [f"{root.name}.{name}" for root in roots if root for name in root.fields]


FIELDS = _fields()


# --- documents built from the SDL ----------------------------------------------------------

def _named(type_: graphql.GraphQLType) -> graphql.GraphQLNamedType:
    return graphql.get_named_type(type_)


def _required(argument: graphql.GraphQLArgument | graphql.GraphQLInputField) -> bool:
    # A schema built from SDL keeps defaults in the AST only.
    defaulted = argument.default_value is not graphql.Undefined or (
        argument.ast_node is not None and argument.ast_node.default_value is not None)
    return graphql.is_non_null_type(argument.type) and not defaulted


def _names_ids(type_: graphql.GraphQLInputType) -> bool:
    named = _named(type_)
    if isinstance(named, graphql.GraphQLInputObjectType):
        return any(_names_ids(f.type) for f in named.fields.values())
    return named.name == "ID"


def _value(field: str, name: str, type_: graphql.GraphQLInputType, ids: dict[str, str]) -> Any:
    """The smallest valid value of an argument or input field of this type."""
    if graphql.is_non_null_type(type_):
        return _value(field, name, type_.of_type, ids)
    if graphql.is_list_type(type_):
        return [_value(field, name, type_.of_type, ids)]
    named = _named(type_)
    if isinstance(named, graphql.GraphQLInputObjectType):
        return {
            key: _value(field, key, child.type, ids)
            for key, child in named.fields.items()
            if _required(child) or key in VALUES_BY_ARGUMENT or (key not in LEFT_OUT and _names_ids(child.type))
        }
    if named.name == "ID":
        key = ID_BY_FIELD.get(field, {}).get(name) or ID_BY_ARGUMENT.get(name)
        assert key, f"{field}: say in ID_BY_FIELD or ID_BY_ARGUMENT which of the victim's rows `{name}` names"
        return ids[key]
    if name in VALUES_BY_ARGUMENT:
        # `from` and `to` are months for usage, days for a statement.
        return DAYS_BY_ARGUMENT.get(name, VALUES_BY_ARGUMENT[name]) if named.name == "Date" else VALUES_BY_ARGUMENT[name]
    if isinstance(named, graphql.GraphQLEnumType):
        return next(iter(named.values))
    return {"String": "matrix", "Int": 1, "Float": 1.0, "Boolean": False, "Decimal": "1.00", "Month": "2024-09",
            "Date": "2024-10-15", "DateTime": "2024-10-15T00:00:00+00:00", "JSON": {}, "Upload": None}[named.name]


def _selection(type_: graphql.GraphQLOutputType, depth: int) -> str:
    """Every leaf the principal may read, `depth` objects deep; fields with a scope of their
    own are left out, so that only the root field's scope is asked about."""
    named = _named(type_)
    if graphql.is_leaf_type(named):
        return ""
    if named.name == "Node":
        # Its id tells a node; its other fields are read through the node's own queries.
        return "__typename id"
    if isinstance(named, graphql.GraphQLUnionType | graphql.GraphQLInterfaceType):
        members = SCHEMA.get_possible_types(named)
        # A name two members give two types is aliased by member, as GraphQL requires.
        types: dict[str, set[str]] = {}
        for member in members:
            for name, child in member.fields.items():
                types.setdefault(name, set()).add(str(child.type))
        clashing = {name for name, seen in types.items() if len(seen) > 1}
        return "__typename " + " ".join(
            f"... on {member.name} {{ {_object_fields(member, depth, member.name, clashing)} }}" for member in members
        )
    return f"__typename {_object_fields(named, depth)}"


def _object_fields(named: graphql.GraphQLObjectType, depth: int, alias: str = "", clashing: set[str] = frozenset()) -> str:
    picked = []
    for name, child in named.fields.items():
        if any(_required(a) for a in child.args.values()) or _scoped(child):
            continue
        label = f"{alias}_{name}: {name}" if name in clashing else name
        if graphql.is_leaf_type(_named(child.type)):
            picked.append(label)
        elif depth > 1:
            picked.append(f"{label} {{ {_selection(child.type, depth - 1)} }}")
    return " ".join(picked)


def _scoped(field: graphql.GraphQLField) -> bool:
    return bool(field.ast_node and any(d.name.value == "requiresScope" for d in field.ast_node.directives or ()))


def _document(qualified: str, ids: dict[str, str]) -> tuple[str, dict[str, Any], str | None]:
    """The operation of one root field, its variables, and the variable a file goes to."""
    root_name, name = qualified.split(".")
    root = {"Query": SCHEMA.query_type, "Mutation": SCHEMA.mutation_type, "Subscription": SCHEMA.subscription_type}[root_name]
    field = root.fields[name]
    declared, passed, variables, upload = [], [], {}, None
    for arg_name, argument in field.args.items():
        is_upload = _named(argument.type).name == "Upload"
        if is_upload:
            # One file, in the argument that takes a single one.
            if graphql.is_list_type(graphql.get_nullable_type(argument.type)):
                continue
            upload = arg_name
        elif arg_name in LEFT_OUT_OF.get(qualified, ()) or not (
                _required(argument) or arg_name in VALUES_BY_ARGUMENT
                or (arg_name not in LEFT_OUT and _names_ids(argument.type))):
            continue
        declared.append(f"${arg_name}: {argument.type}")
        passed.append(f"{arg_name}: ${arg_name}")
        variables[arg_name] = None if is_upload else _value(qualified, arg_name, argument.type, ids)
    head = f"({', '.join(declared)})" if declared else ""
    args = f"({', '.join(passed)})" if passed else ""
    depth = 4 if graphql.is_object_type(_named(field.type)) and _named(field.type).name.endswith("Connection") else 3
    selection = _selection(field.type, depth)
    body = f"{name}{args}" + (f" {{ {selection} }}" if selection else "")
    return f"{root_name.lower()} {head} {{ {body} }}", variables, upload


# --- the world --------------------------------------------------------------------------------

def gid(type_name: str, row_: Any) -> str:
    return to_base64(type_name, str(row_.id))


class Matrix:
    """The world, the principals' tokens, and the markers of what each may not see."""

    async def build(self, client, redis) -> Matrix:
        self.redis = redis
        w = self.world = await factories.world()
        # Contoso's customer may read its usage, so that `usage` has something to refuse others.
        w.account.usage_visible_to_customer = True
        await w.account.save(update_fields=["usage_visible_to_customer"])
        # Connected (no worker runs the revocation `disconnectXero` queues, so Xero is never called).
        now = datetime.now(UTC)
        await XeroConnection.create(organization=w.org, tenant_id="northwind-tenant", tenant_name="Northwind Xero", tokens="sealed",
                                    access_expires_at=now + timedelta(minutes=30), connected_at=now)
        month = date(2024, 9, 1)
        period = await factories.billing_period(w.org, month)
        foreign_period = await factories.billing_period(w.foreign_org, month)
        invoice = await factories.generated_invoice(w.account, period, number="INV-2024-0001", status="APPROVED")
        other = await factories.generated_invoice(w.other_account, period, number="INV-2024-0002", status="APPROVED")
        # An account has one invoice a month.
        spare_invoice = await factories.generated_invoice(
            w.account, await factories.billing_period(w.org, date(2024, 6, 1)), number="INV-2024-0003", status="APPROVED")
        draft = await factories.generated_invoice(w.account, await factories.billing_period(w.org, date(2024, 7, 1)),
                                                  number="INV-2024-0004")
        ready = await factories.invoice(w.account, await factories.billing_period(w.org, date(2024, 8, 1)),
                                        status="READY_TO_INVOICE")
        self.foreign_invoice = await factories.generated_invoice(
            w.foreign_account, foreign_period, number="FAB-2024-0001", status="APPROVED")
        payment = await Payment.create(invoice=invoice, amount=Decimal("1.00"), paid_on=month + timedelta(days=40))
        item = await InvoiceExtraLine.create(invoice=draft, position=1, description="Onboarding",
                                             quantity=Decimal(1), unit_price=Decimal(5))
        spare_item = await InvoiceExtraLine.create(invoice=draft, position=2, description="Training",
                                                   quantity=Decimal(1), unit_price=Decimal(5))
        rules = [await BillingRule.create(organization=w.org, name=name, kind="MARKUP", calculation="PERCENT", value=Decimal(5))
                 for name in ("Northwind markup", "Northwind spare markup")]
        rate = await ExchangeRate.create(organization=w.org, month=month, currency="EUR", rate=Decimal("0.9"))
        spare_profile = await factories.billing_profile(w.org, nickname="Northwind spare profile")
        cost_import = await CostImport.create(organization=w.org, state=CostImportState.DONE, filename="sep.csv")
        cost = await CostRecord.create(
            organization=w.org, managed_account=w.account, cost_import=cost_import, fingerprint="matrix-1",
            billing_month=month, billing_period_start=datetime(2024, 9, 1, tzinfo=UTC),
            billing_period_end=datetime(2024, 10, 1, tzinfo=UTC), provider_name="AWS", sub_account_id="contoso-prod",
            billed_cost=Decimal("42"), billing_currency="USD", service_name="Amazon EC2", service_category="Compute",
            charge_category="Usage",
        )
        await factories.summed_costs(w.org.id)
        # An S3-compatible store on loopback: refused as a private endpoint before any connection.
        sources = [await CostSource.create(organization=w.org, name=name, kind=CostSourceKind.S3_COMPATIBLE,
                                           bucket="northwind-billing", endpoint="http://127.0.0.1:9", credentials="sealed")
                   for name in ("Northwind exports", "Northwind spare exports")]
        hooks = [await WebhookEndpoint.create(organization=w.org, url=f"https://hooks.example.com/{name}", events=["invoice.paid"],
                                              secret="sealed") for name in ("erp", "spare")]
        event = await WebhookEvent.create(organization=w.org, type="invoice.paid", payload="{}", created_at=datetime.now(UTC))
        delivery = await WebhookDelivery.create(endpoint=hooks[0], event=event, state=DeliveryState.FAILED,
                                                created_at=datetime.now(UTC))
        template = await InvoiceTemplate.create(organization=w.org, version=1, name="Northwind layout", source="Northwind",
                                                sha256=hashlib.sha256(b"Northwind").hexdigest(), size=9)
        spare_user = await factories.user(w.org, Scope.VIEWER)
        _, spare_token = await issue_token(w.users["owner"], TokenKind.API, timedelta(hours=1))
        self.ids = {
            "account": gid("ManagedAccount", w.account), "profile": gid("BillingProfile", w.profile),
            "spare_profile": gid("BillingProfile", spare_profile), "invoice": gid("Invoice", invoice),
            "spare_invoice": gid("Invoice", spare_invoice), "draft": gid("Invoice", draft),
            "ready_invoice": gid("Invoice", ready), "payment": gid("Payment", payment),
            "item": to_base64("InvoiceItem", str(item.id)), "spare_item": to_base64("InvoiceItem", str(spare_item.id)),
            "rule": gid("BillingRule", rules[0]), "spare_rule": gid("BillingRule", rules[1]),
            "spare_user": gid("User", spare_user), "spare_token": gid("ApiToken", spare_token),
            "cost_import": gid("CostImport", cost_import),
            "cost_source": gid("CostSource", sources[0]), "spare_cost_source": gid("CostSource", sources[1]),
            "webhook_endpoint": gid("WebhookEndpoint", hooks[0]), "spare_webhook_endpoint": gid("WebhookEndpoint", hooks[1]),
            "webhook_delivery": gid("WebhookDelivery", delivery), "invoice_template": gid("InvoiceTemplate", template),
        }
        owner = w.tokens["owner"]
        invited = await _ask(client, owner, """mutation { inviteUser(input: {email: "invited@example.com", scope: VIEWER}) {
            __typename ... on UserInvited { user { id } } } }""")
        self.ids["invited_user"] = invited["data"]["inviteUser"]["user"]["id"]
        credit = await _ask(client, owner, """mutation($id: ID!) { createCreditNote(input: {invoiceId: $id,
            reason: "Goodwill", mode: AMOUNT, amount: "2.00", notifyCustomer: false}) {
            __typename ... on CreditNoteCreated { creditNote { id } } } }""", {"id": self.ids["invoice"]})
        self.ids["credit_note"] = credit["data"]["createCreditNote"]["creditNote"]["id"]
        self.ids["other_invoice"] = gid("Invoice", other)
        self.rows = {"invoice": invoice.id, "other_invoice": other.id, "foreign_invoice": self.foreign_invoice.id}
        self.tokens: dict[str, str | None] = {"anonymous": None, **w.tokens}
        contoso = ["Contoso", "INV-2024-0001", "INV-2024-0003", "INV-2024-0004", "contoso-prod", self.ids["account"],
                   gid("CostRecord", cost),
                   *(self.ids[k] for k in ("invoice", "spare_invoice", "draft", "ready_invoice", "payment", "credit_note"))]
        northwind = contoso + ["Northwind", "Tailspin", "INV-2024-0002", gid("ManagedAccount", w.other_account),
                               gid("Organization", w.org), gid("BillingPeriod", period), gid("ExchangeRate", rate),
                               *(self.ids[k] for k in ("profile", "spare_profile", "rule", "spare_rule", "cost_import", "cost_source",
                                                       "spare_user", "spare_token", "other_invoice", "invited_user",
                                                       "webhook_endpoint", "webhook_delivery", "invoice_template")),
                               "https://hooks.example.com/erp",
                               *(gid("User", u) for u in w.users.values() if u.organization_id == w.org.id)]
        self.markers = {"anonymous": northwind, "foreign_owner": northwind, "other_customer": contoso}
        self.snapshot_sql = await _snapshot_statements()
        return self


async def _ask(client, token: str | None, query: str, variables: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _upload(client, token: str | None, query: str, variables: dict, argument: str, file: tuple) -> dict:
    """The multipart request of the GraphQL multipart request spec: the file variable null in
    `operations`, a `map` pointing part "0" at it, then the file."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": query, "variables": variables}),
              "map": json.dumps({"0": [f"variables.{argument}"]})},
        files={"0": file}, headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- the victim organization's rows -----------------------------------------------------------

# Written by any authenticated request (at most once a minute), not by the operation asked.
VOLATILE = {"tokens": ("last_used_at",)}


async def _snapshot_statements() -> dict[str, str]:
    """Per table, a statement counting and hashing the rows of the organization `$1`: its own
    `organization_id`, or a foreign key to a table whose rows are the organization's."""
    conn = connections.get("default")
    columns: dict[str, set[str]] = {}
    for r in await conn.execute_query_dict(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
    ):
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
    keys = await conn.execute_query_dict("""
        SELECT child.relname AS child, a.attname AS column, parent.relname AS parent, pa.attname AS parent_column
        FROM pg_constraint c
        JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND cardinality(c.conkey) = 1 AND child.relnamespace = 'public'::regnamespace
        ORDER BY 1, 2""")

    def owned(table: str, seen: frozenset[str]) -> str | None:
        """A condition on `table`'s columns selecting the organization's rows: its own column,
        or any of its foreign keys naming one of the organization's rows (an invoice event
        belongs to its invoice's organization, and to its actor's)."""
        if table == "organizations":
            return "id = $1"
        if "organization_id" in columns[table]:
            return "organization_id = $1"
        paths = []
        for key in keys:
            if key["child"] == table and key["parent"] not in seen:
                inner = owned(key["parent"], seen | {table})
                if inner:
                    paths.append(f'"{key["column"]}" IN (SELECT "{key["parent_column"]}" FROM "{key["parent"]}" WHERE {inner})')
        return " OR ".join(paths) or None

    statements = {}
    for table in sorted(columns):
        if table == "tortoise_migrations":
            continue
        # A table no foreign key ties to an organization is everyone's: all of it counts.
        where = owned(table, frozenset()) or "$1::uuid IS NOT NULL"
        dropped = "".join(f" - '{c}'" for c in VOLATILE.get(table, ()))
        statements[table] = (
            f'SELECT count(*) AS n, md5(coalesce(string_agg(r, \'|\' ORDER BY r), \'\')) AS h '
            f'FROM (SELECT (to_jsonb(t){dropped})::text AS r FROM "{table}" t WHERE {where}) s'
        )
    return statements


async def snapshot(matrix: Matrix) -> dict[str, tuple[int, str]]:
    conn = connections.get("default")
    result = {}
    for table, statement in matrix.snapshot_sql.items():
        (r,) = await conn.execute_query_dict(statement, [matrix.world.org.id])
        result[table] = (r["n"], r["h"])
    return result


async def queued(redis) -> dict[str, Any]:
    """What Redis holds for jobs: arq's keys, and the queue's members in order (other keys,
    such as the sign-in throttle's, expire on their own)."""
    return {"keys": sorted(await redis.keys("arq:*")), "queue": await redis.zrange(broker.QUEUE_NAME, 0, -1)}


def changed(before: dict, after: dict) -> list[str]:
    return [f"{table} {before[table]} -> {after[table]}" for table in before if before[table] != after[table]]


# --- judging one answer -------------------------------------------------------------------------

def _codes(value: Any) -> list[str]:
    """Every `code` of a payload UserError in an answer's data."""
    if isinstance(value, dict):
        found = [value["code"]] if isinstance(value.get("code"), str) else []
        return found + [c for child in value.values() for c in _codes(child)]
    if isinstance(value, list):
        return [c for child in value for c in _codes(child)]
    return []


def judge(expected: str, principal: str, name: str, answer: dict, document: str, variables: dict,
          markers: list[str]) -> str | None:
    """Why the answer is not the expected outcome, or None."""
    top = [(e.get("extensions") or {}).get("code") for e in answer.get("errors") or []]
    data = (answer.get("data") or {}).get(name)
    if expected in (FORBIDDEN, UNAUTHENTICATED):
        if top != [expected] or data is not None:
            return f"expected {expected}, got codes {top} and data {_short(data)}"
        return None
    if any(code in (FORBIDDEN, UNAUTHENTICATED) for code in top):
        return f"expected {expected}, refused with {top}"
    if expected == PASSED:
        return None if data is not None else f"expected an answer past the scope check, got {_short(answer)}"
    if expected == OK:
        if top:
            return f"expected OK, got top-level errors {answer['errors']}"
        if data is None:
            return "expected OK, got null"
        if "NOT_FOUND" in _codes(data):
            return f"expected OK, the victim's rows were not found: {_short(data)}"
        return None
    leaked = shows(answer, document + json.dumps(variables), markers)
    if leaked:
        return f"expected HIDDEN, the answer shows {leaked}: {_short(answer)}"
    return None


NODE_TYPES = {t.name for t in SCHEMA.get_possible_types(SCHEMA.get_type("Node"))}


def shows(answer: dict, asked: str, markers: list[str]) -> list[str]:
    """The victim's data in an answer: a marker the request did not hold, or one of the
    victim's rows as an object (its id may have been asked; an echo of the id is no object)."""
    text = json.dumps(answer)
    found = [m for m in markers if m in text and m not in asked]

    def objects(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("__typename") in NODE_TYPES and value.get("id") in markers:
                found.append(f"{value['__typename']} {value['id']}")
            for child in value.values():
                objects(child)
        elif isinstance(value, list):
            for child in value:
                objects(child)

    objects(answer.get("data"))
    return found


def unshown(field: str, answers: dict[str, dict], asked: str, markers: dict[str, list[str]]) -> list[str]:
    """The principals a field hides the victim from, when the principals it allows see
    nothing of the victim either (then hiding proves nothing)."""
    allowed = [answers[p] for p in PRINCIPALS if EXPECTED[field][p] == OK]
    return [
        f"{field}: {principal} is to see none of the victim's data, but no allowed principal saw any"
        for principal in PRINCIPALS
        if EXPECTED[field][principal] == HIDDEN and allowed and field not in NOTHING_SHOWN
        and not any(shows(answer, asked, markers.get(principal, [])) for answer in allowed)
    ]


# Fields whose answer names none of the victim's rows for anyone, so that there is nothing to
# hide: the signed-in user itself, writes about the caller's own organization, and a signed link
# (what the audit log's link serves to each principal: tests/test_audit_log.py), and the list of
# webhook event types, the same for every organization; and the month summary, counts and sums
# that name no row (another organization's owner gets its own figures: tests/test_month_summary.py).
NOTHING_SHOWN = {"Query.viewer", "Mutation.login", "Mutation.acceptInvitation", "Query.auditLogExport", "Query.webhookEventTypes",
                 "Query.monthSummary"}


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 400 else text[:400] + "..."


# --- fixtures: one world for the module -----------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
async def clean_tables(database):
    """Emptied once: every test of the module asks about the same world (it overrides the
    per-test emptying of conftest)."""
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'tortoise_migrations'"
    )
    await conn.execute_script("TRUNCATE %s RESTART IDENTITY CASCADE" % ", ".join(f'"{r["tablename"]}"' for r in rows))
    yield


@pytest.fixture(scope="module")
async def matrix_app(settings, clean_tables):
    from infra import broker
    from invoicing.app import create_app

    pool = await broker.connect(settings)
    await pool.flushdb()
    application = create_app(settings)
    application.state.redis = pool
    yield application
    await application.state.events.close()
    await pool.aclose()


@pytest.fixture(scope="module")
async def matrix_client(matrix_app):
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=matrix_app), base_url="http://testserver") as http:
        yield http


@pytest.fixture(scope="module")
async def matrix_server(matrix_app, settings):
    async with serving(matrix_app, settings) as address:
        yield address


@pytest.fixture(scope="module")
async def matrix(matrix_client, matrix_app) -> Matrix:
    return await Matrix().build(matrix_client, matrix_app.state.redis)


# --- the tests -------------------------------------------------------------------------------------

def test_every_field_is_in_the_table_and_nothing_else():
    assert sorted(set(FIELDS) - set(EXPECTED)) == [], "fields the table does not decide"
    assert sorted(set(EXPECTED) - set(FIELDS)) == [], "the table names fields the schema no longer has"


@pytest.mark.parametrize("field", FIELDS)
def test_the_sdl_directive_says_what_the_table_says(field):
    """The scopes `@requiresScope` prints are those the table lets past the scope check."""
    root_name, name = field.split(".")
    definition = SCHEMA.get_type(root_name).fields[name]
    directive = next((d for d in (definition.ast_node.directives or ()) if d.name.value == "requiresScope"), None)
    printed = sorted(v.value for v in directive.arguments[0].value.values) if directive else None
    expected = EXPECTED[field]
    if expected["anonymous"] != UNAUTHENTICATED:
        assert printed is None, f"{field} answers without a token, yet the SDL says {printed}"
        return
    allowed = sorted(s.value for s, who in ((Scope.OWNER, "owner"), (Scope.VIEWER, "viewer"), (Scope.CUSTOMER, "customer"))
                     if expected[who] != FORBIDDEN)
    assert printed == allowed


@pytest.mark.parametrize("field", [f for f in FIELDS if not f.startswith("Subscription.")])
async def test_each_principal_gets_what_the_table_says(field, matrix, matrix_client):
    assert field in EXPECTED, f"{field} is not in the expectation table: decide who may use it"
    document, variables, upload = _document(field, matrix.ids)
    name = field.split(".")[1]
    failures, answers = [], {}
    for principal in PRINCIPALS:
        expected = EXPECTED[field][principal]
        token = matrix.tokens[principal]
        is_write = field.startswith("Mutation.")
        before = await snapshot(matrix) if is_write and expected != OK else None
        # A refused write queues nothing either (a foreign owner's may queue its own jobs).
        jobs = await queued(matrix.redis) if is_write and expected in (FORBIDDEN, UNAUTHENTICATED) else None
        if upload:
            answer = await _upload(matrix_client, token, document, variables, upload, UPLOADS[field])
        else:
            answer = await _ask(matrix_client, token, document, variables)
        answers[principal] = answer
        why = judge(expected, principal, name, answer, document, variables, matrix.markers.get(principal, []))
        if before is not None:
            difference = changed(before, await snapshot(matrix))
            if difference:
                why = (why + "; " if why else "") + f"the victim's rows changed: {difference}"
        if jobs is not None:
            now = await queued(matrix.redis)
            if now != jobs:
                added = sorted(set(now["keys"]) - set(jobs["keys"]))
                why = (why + "; " if why else "") + f"jobs changed (keys added: {added})"
        if why:
            failures.append(f"{field} as {principal}: {why}")
    if field.startswith("Query."):
        failures += unshown(field, answers, document + json.dumps(variables), matrix.markers)
    assert not failures, "\n".join(failures)


# What each principal that may not see the victim's invoices does see, published after the
# victim's event: once it arrives, the victim's event would have arrived before it.
SENTINELS = {"foreign_owner": "FAB-2024-0001", "other_customer": "INV-2024-0002"}


async def _until(live: LiveClient, operation: str, stop) -> list[dict]:
    """The subscription's messages up to the first that ends it or that `stop` accepts."""
    messages = []
    while True:
        try:
            message = await live.next(operation)
        except TimeoutError:
            # Shown in the failure as what arrived, rather than as a bare timeout.
            return messages + [{"type": "nothing more within 10 s"}]
        messages.append(message)
        if message["type"] in ("error", "complete") or stop(message):
            return messages


def _as_answer(messages: list[dict]) -> dict:
    """The messages of one subscription as one answer: the errors of all, the data of the first."""
    errors, data = [], None
    for message in messages:
        if message["type"] == "error":
            errors += message["payload"]
        elif message["type"] == "next":
            errors += message["payload"].get("errors") or []
            data = data or message["payload"].get("data")
    return {"data": data, "errors": errors} if errors else {"data": data, "messages": messages}


async def _anonymous(address: str) -> dict:
    """A socket without a token: graphql-transport-ws closes it with 4403 at `connection_init`,
    before any operation can be sent; as an answer, that is UNAUTHENTICATED."""
    import websockets

    async with websockets.connect(
        f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"], origin="http://127.0.0.1:8000"
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        try:
            return {"data": None, "messages": [json.loads(await asyncio.wait_for(ws.recv(), 10))]}
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            return {"data": None, "errors": [{"message": f"closed {code}",
                                              "extensions": {"code": UNAUTHENTICATED if code == 4403 else code}}]}


@pytest.mark.parametrize("field", [f for f in FIELDS if f.startswith("Subscription.")])
async def test_each_principal_subscribes_as_the_table_says(field, matrix, matrix_server, matrix_app):
    assert field in EXPECTED, f"{field} is not in the expectation table: decide who may use it"
    document, variables, _ = _document(field, matrix.ids)
    name = field.split(".")[1]
    answers = {"anonymous": await _anonymous(matrix_server)}
    principals = [p for p in PRINCIPALS if p != "anonymous"]
    clients = {principal: LiveClient(matrix_server, matrix.tokens[principal]) for principal in principals}
    for live in clients.values():
        await live.__aenter__()
    try:
        before = matrix_app.state.events.subscription_count()
        operations = {principal: await live.subscribe(document, variables) for principal, live in clients.items()}
        if name == "invoiceStatusChanged":
            await subscribed(matrix_app, before + sum(EXPECTED[field][p] in (OK, HIDDEN) for p in principals))
            await events.publish(matrix_app.state.redis, [
                await Invoice.get(id=matrix.rows[key]) for key in ("invoice", "other_invoice", "foreign_invoice")
            ])

        def stop(principal):
            sentinel = SENTINELS.get(principal)
            return lambda m: m["type"] == "next" and (sentinel is None or sentinel in json.dumps(m))

        received = await asyncio.gather(*(_until(live, operations[p], stop(p)) for p, live in clients.items()))
    finally:
        for live in clients.values():
            await live.__aexit__(None, None, None)
    answers.update({principal: _as_answer(messages) for principal, messages in zip(clients, received)})
    failures = []
    for principal in PRINCIPALS:
        why = judge(EXPECTED[field][principal], principal, name, answers[principal], document, variables,
                    matrix.markers.get(principal, []))
        if why:
            failures.append(f"{field} as {principal}: {why}")
    failures += unshown(field, answers, document + json.dumps(variables), matrix.markers)
    assert not failures, "\n".join(failures)
