"""Billing rules: the list, and create/update/delete."""

from __future__ import annotations

import strawberry

from models import billing_rules
from schema.billing_rules import (
    BillingRule,
    BillingRuleConnection,
    BillingRuleDeleted,
    BillingRuleFilter,
    BillingRuleOrder,
    BillingRuleOrderField,
    BillingRuleSaved,
    CreateBillingRuleInput,
    CreateBillingRulePayload,
    DeleteBillingRulePayload,
    UpdateBillingRuleInput,
    UpdateBillingRulePayload,
    rule_data,
    rule_query,
)
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, requires

TYPE_NAME = "BillingRule"


@strawberry.type
class Query:
    @strawberry.field(
        description="The organization's billing rules; by default in the order they apply "
        "within a kind (creation order).",
        extensions=requires(*MSP_USERS),
    )
    async def billing_rules(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        filter: BillingRuleFilter | None = None, order_by: BillingRuleOrder | None = None,
    ) -> BillingRuleConnection:
        order = order_by or BillingRuleOrder(field=BillingRuleOrderField.CREATED_AT, direction=Direction.ASC)
        return await paginate(
            info,
            BillingRuleConnection,
            billing_rules.filter_rules(billing_rules.visible_rules(info.context.principal), rule_query(filter)),
            BillingRule.from_model,
            order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Create a billing rule; it applies to invoices generated from now on.",
        scopes=OWNERS,
    )
    async def create_billing_rule(self, info: Info, input: CreateBillingRuleInput) -> CreateBillingRulePayload:
        row = await billing_rules.create_rule(info.context.principal, rule_data(input))
        return BillingRuleSaved(billing_rule=BillingRule.from_model(row))

    @mutation(
        description="Change a billing rule; only the fields given change. Invoices already "
        "generated keep what they computed until regenerated.",
        scopes=OWNERS,
    )
    async def update_billing_rule(
        self, info: Info, id: strawberry.ID, input: UpdateBillingRuleInput
    ) -> UpdateBillingRulePayload:
        row = await billing_rules.update_rule(
            info.context.principal, node_uuid(id, TYPE_NAME), rule_data(input)
        )
        return BillingRuleSaved(billing_rule=BillingRule.from_model(row))

    @mutation(
        description="Delete a billing rule. Invoices already generated keep the lines it made.",
        scopes=OWNERS,
    )
    async def delete_billing_rule(self, info: Info, id: strawberry.ID) -> DeleteBillingRulePayload:
        await billing_rules.delete_rule(info.context.principal, node_uuid(id, TYPE_NAME))
        return BillingRuleDeleted(deleted_id=id)
