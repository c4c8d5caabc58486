"""GraphQL types, inputs and payloads of billing rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import relay

from models import BillingRule as BillingRuleModel
from models import ManagedAccount as ManagedAccountModel
from models.billing_rules import RuleCalculation, RuleKind, RuleQuery, visible_rules
from schema.core.context import Info
from schema.core.errors import NotFoundError, ValidationError
from schema.core.nodes import filter_uuids, node_uuid, scoped_nodes
from schema.core.pagination import CountedConnection, Direction
from schema.core.scalars import Month, plain
from schema.managed_accounts import ManagedAccount

# `strawberry.enum` marks the domain's enum itself as a GraphQL enum; the name here is a
# plain alias of that class, so that type checkers accept it in annotations.
BillingRuleKind = RuleKind
strawberry.enum(
    BillingRuleKind,
    name="BillingRuleKind",
    description="What a rule does to the matching costs. They apply in this order: CREDIT "
    "(subtracted), then DISCOUNT (subtracted), then MARKUP (added), each kind in creation "
    "order; TAX last, on the subtotal after the others.",
)
BillingRuleCalculation = RuleCalculation
strawberry.enum(
    BillingRuleCalculation,
    name="BillingRuleCalculation",
    description="PERCENT of the running amount of the matching lines, or a FIXED amount in "
    "the cost currency applied once per invoice (a fixed credit or discount never takes the "
    "matching subtotal below zero).",
)


@strawberry.type(
    name="BillingRule",
    description="A credit, discount, markup or tax charge on the costs of one managed account "
    "or of all of them, optionally only on some providers, services or service categories.",
)
class BillingRule(relay.Node):
    id: relay.NodeID[str]
    name: str = strawberry.field(description="The name printed on the invoice line.")
    kind: BillingRuleKind = strawberry.field(description="CREDIT, DISCOUNT, MARKUP or TAX.")
    calculation: BillingRuleCalculation = strawberry.field(description="PERCENT or FIXED.")
    value: Decimal = strawberry.field(
        description="A percentage (10 = 10 %) or an amount in the cost currency."
    )
    provider_name: str | None = strawberry.field(
        description="Only costs of this provider (FOCUS ProviderName); null: any."
    )
    service_name: str | None = strawberry.field(
        description="Only costs of this service (FOCUS ServiceName); null: any."
    )
    service_category: str | None = strawberry.field(
        description="Only costs of this service category (FOCUS ServiceCategory); null: any."
    )
    starts_on: Month | None = strawberry.field(description="First month the rule applies to; null: no start.")
    ends_on: Month | None = strawberry.field(description="Last month the rule applies to; null: no end.")
    is_active: bool = strawberry.field(description="Whether the rule is used when invoices are computed.")
    created_at: datetime = strawberry.field(description="When the rule was created (its place in the order).")
    updated_at: datetime = strawberry.field(description="When the rule last changed.")
    model: strawberry.Private[BillingRuleModel]

    @classmethod
    def from_model(cls, row: BillingRuleModel) -> BillingRule:
        return cls(
            id=str(row.id), name=row.name, kind=row.kind, calculation=row.calculation,
            value=plain(row.value), provider_name=row.provider_name, service_name=row.service_name,
            service_category=row.service_category,
            starts_on=None if row.starts_on is None else Month(row.starts_on),
            ends_on=None if row.ends_on is None else Month(row.ends_on),
            is_active=row.is_active, created_at=row.created_at, updated_at=row.updated_at, model=row,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await scoped_nodes(cls, info, node_ids, required, visible_rules)

    @strawberry.field(description="The managed account the rule is for; null: every account.")
    async def account(self, info: Info) -> ManagedAccount | None:
        if self.model.managed_account_id is None:
            return None
        row = await info.context.loaders.by_id(ManagedAccountModel).load(self.model.managed_account_id)
        return ManagedAccount.from_model(row) if row else None


@strawberry.type(description="A page of billing rules.")
class BillingRuleConnection(CountedConnection[BillingRule]):
    pass


@strawberry.enum(description="What billing rules can be sorted by.")
class BillingRuleOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    KIND = "kind"


@strawberry.input(description="Sort order of billing rules.")
class BillingRuleOrder:
    field: BillingRuleOrderField = strawberry.field(description="Sort key.")
    direction: Direction = strawberry.field(default=Direction.ASC, description="Direction.")


@strawberry.input(description="Narrow the list of billing rules; all conditions combine.")
class BillingRuleFilter:
    account_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Only rules bound to one of these managed accounts (rules for every "
        "account have no account and do not match).",
    )
    kinds: list[BillingRuleKind] | None = strawberry.field(default=None, description="Only these kinds.")
    active: bool | None = strawberry.field(
        default=None, description="Only active (true) or inactive (false) rules."
    )


@strawberry.input(description="A new billing rule.")
class CreateBillingRuleInput:
    name: str = strawberry.field(description="Name printed on the invoice (1 to 255 characters).")
    kind: BillingRuleKind = strawberry.field(description="CREDIT, DISCOUNT, MARKUP or TAX.")
    calculation: BillingRuleCalculation = strawberry.field(description="PERCENT or FIXED.")
    value: Decimal = strawberry.field(
        description="0 or more, at most 4 decimals; a percentage is at most 100 for a credit "
        "or discount and 1000 for a markup or tax."
    )
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="The managed account the rule is for; null: every account."
    )
    provider_name: str | None = strawberry.field(
        default=None, description="Only costs of this provider; empty or null: any."
    )
    service_name: str | None = strawberry.field(
        default=None, description="Only costs of this service; empty or null: any."
    )
    service_category: str | None = strawberry.field(
        default=None, description="Only costs of this service category; empty or null: any."
    )
    starts_on: Month | None = strawberry.field(default=None, description="First month; null: no start.")
    ends_on: Month | None = strawberry.field(default=None, description="Last month; null: no end.")
    is_active: bool = strawberry.field(default=True, description="Whether the rule is used.")


@strawberry.input(
    description="Changes to a billing rule: an omitted field keeps its value; null clears an "
    "optional one (account: every account; filter or month: none)."
)
class UpdateBillingRuleInput:
    name: str | None = strawberry.field(default=strawberry.UNSET, description="Name printed on the invoice.")
    kind: BillingRuleKind | None = strawberry.field(default=strawberry.UNSET, description="The kind.")
    calculation: BillingRuleCalculation | None = strawberry.field(
        default=strawberry.UNSET, description="PERCENT or FIXED."
    )
    value: Decimal | None = strawberry.field(default=strawberry.UNSET, description="The value.")
    account_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="The managed account; null: every account."
    )
    provider_name: str | None = strawberry.field(default=strawberry.UNSET, description="Provider filter.")
    service_name: str | None = strawberry.field(default=strawberry.UNSET, description="Service filter.")
    service_category: str | None = strawberry.field(
        default=strawberry.UNSET, description="Service category filter."
    )
    starts_on: Month | None = strawberry.field(default=strawberry.UNSET, description="First month.")
    ends_on: Month | None = strawberry.field(default=strawberry.UNSET, description="Last month.")
    is_active: bool | None = strawberry.field(default=strawberry.UNSET, description="Whether the rule is used.")


_COLUMNS = (
    "name", "kind", "calculation", "value", "provider_name", "service_name", "service_category",
    "starts_on", "ends_on", "is_active",
)


def rule_data(input: CreateBillingRuleInput | UpdateBillingRuleInput) -> dict[str, Any]:
    """The given fields of an input, as the domain's column names (omitted ones left out)."""
    data = {column: getattr(input, column) for column in _COLUMNS}
    if input.account_id is not strawberry.UNSET:
        data["managed_account_id"] = node_uuid(input.account_id, "ManagedAccount", field="accountId")
    return {column: value for column, value in data.items() if value is not strawberry.UNSET}


def rule_query(where: BillingRuleFilter | None) -> RuleQuery:
    if where is None:
        return RuleQuery()
    return RuleQuery(
        account_ids=filter_uuids(where.account_ids, "ManagedAccount"),
        kinds=[kind.value for kind in where.kinds] if where.kinds is not None else None,
        active=where.active,
    )


@strawberry.type(description="The billing rule was saved.")
class BillingRuleSaved:
    billing_rule: BillingRule = strawberry.field(description="The rule as saved.")


@strawberry.type(description="The billing rule was deleted.")
class BillingRuleDeleted:
    deleted_id: strawberry.ID = strawberry.field(description="Global id of the deleted rule.")


CreateBillingRulePayload = Annotated[
    BillingRuleSaved | ValidationError | NotFoundError,
    strawberry.union("CreateBillingRulePayload", description="The result of `createBillingRule`."),
]
UpdateBillingRulePayload = Annotated[
    BillingRuleSaved | ValidationError | NotFoundError,
    strawberry.union("UpdateBillingRulePayload", description="The result of `updateBillingRule`."),
]
DeleteBillingRulePayload = Annotated[
    BillingRuleDeleted | NotFoundError,
    strawberry.union("DeleteBillingRulePayload", description="The result of `deleteBillingRule`."),
]
