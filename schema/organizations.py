"""GraphQL types of the organization, its settings, its users and their tokens."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from models import ManagedAccount as ManagedAccountModel
from models import Organization as OrganizationModel
from models import User as UserModel
from models.auth import UserState as UserStateValue
from models.auth import visible_tokens, visible_users
from models.organizations import EmailAttachment as EmailAttachmentValue
from models.organizations import ExportDateFormat as ExportDateFormatValue
from models.organizations import LateCostBilling as LateCostBillingValue
from models.organizations import next_invoice_number
from schema.core.context import Info
from schema.core.errors import ValidationError
from schema.core.nodes import scoped_nodes
from schema.core.pagination import CountedConnection
from schema.core.permissions import MSP_USERS, Scope, requires
from schema.core.scalars import plain
from schema.managed_accounts import ManagedAccount

if TYPE_CHECKING:
    from models import Token as TokenModel


# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
ExportDateFormat = ExportDateFormatValue
strawberry.enum(
    ExportDateFormat,
    description="How exports write dates: DAY_FIRST (DD/MM/YYYY, Xero's default), MONTH_FIRST "
    "(MM/DD/YYYY) or ISO (YYYY-MM-DD).",
)
UserState = UserStateValue
strawberry.enum(
    UserState,
    description="ACTIVE: signs in. INVITED: has not chosen a password yet (its invitation "
    "link sets one). DEACTIVATED: cannot sign in; its tokens were revoked.",
)


@strawberry.type(description="What happens to accounts' invoices at the month's close, for "
                 "accounts created from now on (each account keeps its own choice).")
class AutoInvoiceDefaults:
    enabled: bool = strawberry.field(description="Generate the account's invoice when its month closes.")
    approve_and_send: bool = strawberry.field(
        description="Then approve and send it once `graceHours` have passed, unless someone "
        "cancels the queued send first."
    )
    grace_hours: int = strawberry.field(
        description="Hours an auto-generated invoice stays reviewable before it is sent (0 to 720)."
    )


LateCostBilling = LateCostBillingValue
strawberry.enum(
    LateCostBilling,
    name="LateCostBilling",
    description="How costs delivered for a month after its invoice was approved are billed: NEXT_INVOICE (a "
    "labelled line on the account's next invoice; the default) or SUPPLEMENTARY_INVOICE (a supplementary "
    "invoice for that month, made at the next month close).",
)


@strawberry.type(description="When the checks before approval flag a change month over month: at least both.")
class CheckThresholds:
    change_percent: Decimal = strawberry.field(description="Percentage of last month's amount (default 25).")
    change_amount: Decimal = strawberry.field(description="Amount in the invoice currency (default 100).")


@strawberry.input(description="Thresholds of the checks before approval: an omitted or null field keeps its value.")
class CheckThresholdsInput:
    change_percent: Decimal | None = strawberry.field(default=None, description="Percentage, from 0.")
    change_amount: Decimal | None = strawberry.field(default=None, description="Amount in the invoice currency, from 0.")

@strawberry.type(description="How the organization's cost sources are synced, and when a month's data counts as "
                 "complete for its close (`BillingPeriod.completeness`).")
class CostDataSettings:
    sync_every_hours: int | None = strawberry.field(
        description="Hours between two scheduled syncs of each cost source; null: the server's default "
        "(COST_SOURCE_SYNC_HOURS)."
    )
    settle_hours: int = strawberry.field(
        description="A source's data of a month is COMPLETE once its latest delivery was written at least this many "
        "hours after the month's end (UTC); before, PARTIAL (default 72)."
    )
    latest_close_day: int = strawberry.field(
        description="With cost sources, the scheduled close waits for complete data until this day of the next "
        "month (1 to 28, default 15; never before `dataIngestionDelayDays` lets it), then closes with an "
        "INCOMPLETE_DATA warning on the invoices concerned."
    )


@strawberry.input(description="Cost data settings: an omitted or null field keeps its value.")
class CostDataSettingsInput:
    sync_every_hours: int | None = strawberry.field(
        default=None, description="Hours between scheduled syncs, 1 to 168; 0 goes back to the server's default."
    )
    settle_hours: int | None = strawberry.field(default=None, description="Settle time in hours, 0 to 720.")
    latest_close_day: int | None = strawberry.field(default=None, description="Latest close day, 1 to 28.")


EmailAttachment = EmailAttachmentValue
strawberry.enum(
    EmailAttachment,
    description="What the approval e-mail attaches: PDF (the printed invoice) or FACTURX (the same "
    "PDF as PDF/A-3 with its EN 16931 Cross Industry Invoice XML inside; needs e-invoicing).",
)


@strawberry.type(name="Organization", description="An MSP organization: the tenant boundary.")
class Organization(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="Display name.")
    timezone: str = strawberry.field(description="IANA time zone used for dates and due dates.")
    invoice_prefix: str = strawberry.field(description="Prefix of invoice numbers (INV).")
    export_date_format: ExportDateFormat = strawberry.field(
        description="How exports (Xero, detailed CSV) write dates; see `updateExportSettings`."
    )
    einvoicing: bool = strawberry.field(
        description="Whether the organization issues e-invoices (EN 16931): generation then ends in "
        "ERROR, saying what is missing, for an invoice that could not be one; see `updateEInvoicingSettings`."
    )
    email_attachment: EmailAttachment = strawberry.field(
        description="What the approval e-mail attaches: the plain PDF or the Factur-X PDF."
    )
    model: strawberry.Private[OrganizationModel]

    @classmethod
    def from_model(cls, org: OrganizationModel) -> Organization:
        return cls(
            id=str(org.id), name=org.name, timezone=org.timezone, invoice_prefix=org.invoice_prefix,
            export_date_format=org.export_date_format, einvoicing=org.einvoicing,
            email_attachment=org.email_attachment, model=org,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(
            cls, info, node_ids, required,
            lambda principal: OrganizationModel.filter(id=principal.organization_id),
        )

    @strawberry.field(description="Whether months close later than the 1st: "
                      "`dataIngestionDelayDays` is more than 0.")
    def data_ingestion_delay(self) -> bool:
        return self.model.data_ingestion_delay_days > 0

    @strawberry.field(
        description="Days after a month's end (in `timezone`) before it closes and its invoices "
        "are made, so that late cloud data (AWS: up to three days) is in them; 0 closes on the 1st.",
        extensions=requires(*MSP_USERS),
    )
    def data_ingestion_delay_days(self) -> int | None:
        return self.model.data_ingestion_delay_days

    @strawberry.field(
        description="The number the next invoice of the current year (in `timezone`) takes: "
        "numbers run per year without gaps.",
        extensions=requires(*MSP_USERS),
    )
    async def next_invoice_number(self) -> int | None:
        return await next_invoice_number(self.model)

    @strawberry.field(
        description="Payment terms (days) given to a managed account created without its own.",
        extensions=requires(*MSP_USERS),
    )
    def default_payment_terms_days(self) -> int | None:
        return self.model.default_payment_terms_days

    @strawberry.field(
        description="The sender name of the organization's e-mails to customers (invoices, "
        "notices, reminders, invitations); empty: the server's (SMTP_FROM).",
        extensions=requires(*MSP_USERS),
    )
    def email_sender_name(self) -> str | None:
        return self.model.email_sender_name

    @strawberry.field(
        description="Where customers' replies to those e-mails go; empty: no Reply-To.",
        extensions=requires(*MSP_USERS),
    )
    def email_reply_to(self) -> str | None:
        return self.model.email_reply_to

    @strawberry.field(
        description="Days after the due date on which an unpaid invoice's billing e-mails get a "
        "reminder with its PDF, in order; empty: no reminders.",
        extensions=requires(*MSP_USERS),
    )
    def reminder_days(self) -> list[int] | None:
        return list(self.model.reminder_days)

    @strawberry.field(
        description="The language of documents and e-mails of accounts that choose none (en, de, fr, nl, es).",
        extensions=requires(*MSP_USERS),
    )
    def locale(self) -> str | None:
        return self.model.locale

    @strawberry.field(
        description="Whether printed invoices list usage lines whose amount is zero (left out by default).",
        extensions=requires(*MSP_USERS),
    )
    def show_zero_usage_lines(self) -> bool | None:
        return self.model.show_zero_usage_lines

    @strawberry.field(
        description="How costs delivered for a month after its invoice was approved are billed.",
        extensions=requires(*MSP_USERS),
    )
    def late_cost_billing(self) -> LateCostBilling | None:
        return self.model.late_cost_billing

    @strawberry.field(
        description="Thresholds of the checks before approval (`Invoice.checks`).", extensions=requires(*MSP_USERS)
    )
    def checks(self) -> CheckThresholds | None:
        return CheckThresholds(
            change_percent=plain(self.model.check_change_percent), change_amount=plain(self.model.check_change_amount)
        )

    @strawberry.field(description="How cost sources are synced and when a month's data is complete.",
                      extensions=requires(*MSP_USERS))
    def cost_data(self) -> CostDataSettings | None:
        return CostDataSettings(
            sync_every_hours=self.model.cost_sync_hours, settle_hours=self.model.data_settle_hours,
            latest_close_day=self.model.latest_close_day,
        )

    @strawberry.field(description="Defaults of automatic invoicing for new accounts.",
                      extensions=requires(*MSP_USERS))
    def auto_invoice(self) -> AutoInvoiceDefaults | None:
        return AutoInvoiceDefaults(
            enabled=self.model.auto_invoice, approve_and_send=self.model.auto_send,
            grace_hours=self.model.auto_send_grace_hours,
        )


@strawberry.type(name="User", description="A person who signs in: an MSP user or a customer.")
class User(relay.Node):
    id: relay.NodeID[str]
    email: str = strawberry.field(description="Sign-in e-mail, lower case.")
    name: str = strawberry.field(description="Display name.")
    scope: Scope = strawberry.field(description="What the user may do.")
    state: UserState = strawberry.field(description="Whether the user signs in, is invited, or is deactivated.")
    last_login_at: datetime | None = strawberry.field(description="The last sign-in with a password; null: never.")
    created_at: datetime = strawberry.field(description="When the user was created or invited.")
    model: strawberry.Private[UserModel]

    @classmethod
    def from_model(cls, user: UserModel) -> User:
        return cls(
            id=str(user.id), email=user.email, name=user.name, scope=user.scope, state=user.state,
            last_login_at=user.last_login_at, created_at=user.created_at, model=user,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_users)

    @strawberry.field(description="For a customer user: the one managed account it belongs to.")
    async def managed_account(self, info: Info) -> ManagedAccount | None:
        if self.model.managed_account_id is None:
            return None
        row = await info.context.loaders.by_id(ManagedAccountModel).load(self.model.managed_account_id)
        return ManagedAccount.from_model(row) if row else None


@strawberry.type(description="A token for the API: a login session or a script's API token.")
class ApiToken(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="What the token is for.")
    kind: str = strawberry.field(description="SESSION (from login) or API (for scripts).")
    created_at: datetime = strawberry.field(description="When it was issued.")
    expires_at: datetime = strawberry.field(description="When it stops working.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")
    last_used_at: datetime | None = strawberry.field(
        description="Last use, recorded at most once a minute."
    )
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, token: TokenModel) -> ApiToken:
        return cls(
            id=str(token.id), name=token.name, kind=token.kind.value, created_at=token.created_at,
            expires_at=token.expires_at, revoked_at=token.revoked_at, last_used_at=token.last_used_at,
            model=token,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_tokens)

    @strawberry.field(description="The user the token acts as.")
    async def user(self, info: Info) -> User:
        row = await info.context.loaders.by_id(UserModel).load(self.model.user_id)
        return User.from_model(row)


@strawberry.type(description="A page of users.")
class UserConnection(CountedConnection[User]):
    pass


@strawberry.type(description="A page of API tokens.")
class ApiTokenConnection(CountedConnection[ApiToken]):
    pass


@strawberry.input(description="Defaults of automatic invoicing; an omitted field keeps its value.")
class AutoInvoiceDefaultsInput:
    enabled: bool | None = strawberry.field(default=None, description="Generate invoices at the month's close.")
    approve_and_send: bool | None = strawberry.field(
        default=None, description="Then approve and send them after the grace period."
    )
    grace_hours: int | None = strawberry.field(default=None, description="Hours before the send, 0 to 720.")


@strawberry.input(description="The organization's settings to change: an omitted or null field keeps its value.")
class UpdateOrganizationInput:
    name: str | None = strawberry.field(default=None, description="Display name (1 to 255 characters).")
    timezone: str | None = strawberry.field(
        default=None, description="IANA time zone (Europe/London): when months close, invoices fall "
        "due and reminders go."
    )
    invoice_prefix: str | None = strawberry.field(
        default=None, description="Prefix of invoice numbers from now on: 1 to 16 capital letters or "
        "digits. Numbers already given keep theirs."
    )
    next_invoice_number: int | None = strawberry.field(
        default=None, description="The number the next invoice of the current year takes. Any "
        "number from 1 while none of the year is taken (to continue another system's series); "
        "after that only the one after the last taken, so that numbers have no gaps and none is "
        "used twice."
    )
    data_ingestion_delay_days: int | None = strawberry.field(
        default=None, description="Days after a month's end before it closes, 0 to 27."
    )
    default_payment_terms_days: int | None = strawberry.field(
        default=None, description="Payment terms (days, 0 to 365) of managed accounts created "
        "without their own; existing accounts keep theirs."
    )
    email_sender_name: str | None = strawberry.field(
        default=None, description='Sender name of e-mails to customers ("" : the server\'s).'
    )
    email_reply_to: str | None = strawberry.field(
        default=None, description='Reply-To address of e-mails to customers ("": none).'
    )
    reminder_days: list[int] | None = strawberry.field(
        default=None, description="Days after the due date (1 to 365, at most 10) on which unpaid "
        "invoices are reminded; [] stops reminders."
    )
    auto_invoice: AutoInvoiceDefaultsInput | None = strawberry.field(
        default=None, description="Defaults of automatic invoicing for new accounts."
    )
    late_cost_billing: LateCostBilling | None = strawberry.field(
        default=None, description="How costs delivered for a month after its invoice was approved are billed."
    )
    checks: CheckThresholdsInput | None = strawberry.field(
        default=None, description="Thresholds of the checks before approval."
    )
    cost_data: CostDataSettingsInput | None = strawberry.field(
        default=None, description="How cost sources are synced and when a month's data is complete."
    )
    locale: str | None = strawberry.field(
        default=None, description="Default language of documents and e-mails: en, de, fr, nl or es."
    )
    show_zero_usage_lines: bool | None = strawberry.field(
        default=None, description="Whether printed invoices list usage lines whose amount is zero."
    )


_SETTINGS = (
    "name", "timezone", "invoice_prefix", "next_invoice_number", "data_ingestion_delay_days",
    "default_payment_terms_days", "email_sender_name", "email_reply_to", "reminder_days", "locale",
    "show_zero_usage_lines",
)


def organization_changes(input: UpdateOrganizationInput) -> dict[str, Any]:
    """The given settings, as the domain's column names (omitted ones left out)."""
    changes = {name: getattr(input, name) for name in _SETTINGS if getattr(input, name) is not None}
    if input.auto_invoice is not None:
        given = {
            "auto_invoice": input.auto_invoice.enabled, "auto_send": input.auto_invoice.approve_and_send,
            "auto_send_grace_hours": input.auto_invoice.grace_hours,
        }
        changes.update({column: value for column, value in given.items() if value is not None})
    if input.late_cost_billing is not None:
        changes["late_cost_billing"] = input.late_cost_billing
    if input.checks is not None:
        thresholds = {"check_change_percent": input.checks.change_percent, "check_change_amount": input.checks.change_amount}
        changes.update({column: value for column, value in thresholds.items() if value is not None})
    if input.cost_data is not None:
        cost_data = {"cost_sync_hours": input.cost_data.sync_every_hours, "data_settle_hours": input.cost_data.settle_hours,
                     "latest_close_day": input.cost_data.latest_close_day}
        changes.update({column: value for column, value in cost_data.items() if value is not None})
    return changes


@strawberry.type(description="The organization's settings were changed.")
class OrganizationUpdated:
    organization: Organization = strawberry.field(description="The organization, as changed.")


UpdateOrganizationPayload = Annotated[
    OrganizationUpdated | ValidationError,
    strawberry.union("UpdateOrganizationPayload", description="The result of `updateOrganization`."),
]
