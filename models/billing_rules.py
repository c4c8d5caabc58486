"""Billing rules: credits, discounts, markups and tax charges on an account's costs.

A rule belongs to an organization and applies to one managed account, or to every account of
the organization when it has none. It is in force for the months from `starts_on` to `ends_on`
(both inclusive, either open-ended) while `is_active`.

The order in which rules apply, when an invoice is computed for an account and a month
(every active rule of the account or of all accounts, in force that month):

1. Filters select the lines a rule applies to: a line matches when every filter the rule sets
   (`provider_name`, `service_name`, `service_category`) equals the line's value; a rule
   without filters matches every line.
2. CREDIT rules first, then DISCOUNT rules, then MARKUP rules; within one kind, in creation
   order (`created_at`, then `id`).
3. A PERCENT rule takes its percentage of the running amount of the lines it matches, that
   is their amount after the rules applied before it (CREDIT and DISCOUNT subtract, MARKUP
   adds).
4. A FIXED rule applies its amount once per invoice, on the running subtotal of the lines it
   matches. A CREDIT or DISCOUNT never takes that subtotal below zero: it is capped at what
   remains.
5. TAX rules come last, on the subtotal after all the others (the matching lines' running
   amount), PERCENT as a percentage of it, FIXED as an amount once per invoice.

Values: a percentage (10 = 10 %), from 0 to 100 for CREDIT and DISCOUNT and up to 1000 for
MARKUP and TAX; or an amount in the cost currency. At most 4 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.base import TimestampMixin, enum_check
from models.errors import NotFound, ValidationFailed
from models.managed_accounts import visible_accounts

if TYPE_CHECKING:
    from models.managed_accounts import ManagedAccount
    from models.organizations import Organization


class RuleKind(str, Enum):
    CREDIT = "CREDIT"
    DISCOUNT = "DISCOUNT"
    MARKUP = "MARKUP"
    TAX = "TAX"


class RuleCalculation(str, Enum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


class BillingRule(TimestampMixin, Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="billing_rules", on_delete=fields.CASCADE
    )
    # None: the rule applies to every managed account of the organization.
    managed_account: fields.ForeignKeyNullableRelation[ManagedAccount] = fields.ForeignKeyField(
        "models.ManagedAccount", related_name="billing_rules", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(RuleKind, max_length=16)
    calculation = fields.CharEnumField(RuleCalculation, max_length=16)
    # A percentage (10 = 10 %) or an amount in the cost currency.
    value = fields.DecimalField(max_digits=20, decimal_places=4)
    provider_name = fields.CharField(max_length=128, null=True)
    service_name = fields.CharField(max_length=255, null=True)
    service_category = fields.CharField(max_length=128, null=True)
    # First and last month the rule applies to (first days of months); None = unbounded.
    starts_on = fields.DateField(null=True)
    ends_on = fields.DateField(null=True)
    is_active = fields.BooleanField(default=True)

    # The foreign keys' columns, which Tortoise sets on the instance.
    organization_id: UUID
    managed_account_id: UUID | None

    class Meta:
        table = "billing_rules"
        constraints = (
            enum_check("billing_rules", "kind", RuleKind),
            enum_check("billing_rules", "calculation", RuleCalculation),
            CheckConstraint(check="value >= 0", name="billing_rules_value_positive"),
            CheckConstraint(
                check="calculation <> 'PERCENT' OR kind IN ('MARKUP', 'TAX') OR value <= 100",
                name="billing_rules_percent_range",
            ),
            CheckConstraint(
                check="(starts_on IS NULL OR EXTRACT(DAY FROM starts_on) = 1)"
                " AND (ends_on IS NULL OR EXTRACT(DAY FROM ends_on) = 1)"
                " AND (starts_on IS NULL OR ends_on IS NULL OR starts_on <= ends_on)",
                name="billing_rules_months",
            ),
            CheckConstraint(check="btrim(name) <> ''", name="billing_rules_name_present"),
        )


# Limits of what an owner may enter.
VALUE_DECIMALS = Decimal("0.0001")
# NUMERIC(20, 4) holds 16 digits before the point.
VALUE_CEILING = Decimal("1e16")
# The most a percentage may be, per kind: a credit or discount cannot take more than all.
MAX_PERCENT = {
    RuleKind.CREDIT: Decimal(100),
    RuleKind.DISCOUNT: Decimal(100),
    RuleKind.MARKUP: Decimal(1000),
    RuleKind.TAX: Decimal(1000),
}
# Filter column -> (camelCase input field, max length).
_FILTER_COLUMNS = {
    "provider_name": ("providerName", 128),
    "service_name": ("serviceName", 255),
    "service_category": ("serviceCategory", 128),
}
CHANGEABLE = frozenset(
    {"name", "kind", "calculation", "value", "managed_account_id", "starts_on", "ends_on", "is_active"}
) | frozenset(_FILTER_COLUMNS)
_REQUIRED = ("name", "kind", "calculation", "value")


def visible_rules(principal):
    """Billing rules are the MSP's pricing: its users see their organization's, a customer
    none (the rules reach it only as printed invoice lines)."""
    if not principal.is_msp_user:
        return BillingRule.filter(id__in=[])  # matches nothing (WHERE 1=0); Tortoise has no none()
    return BillingRule.filter(organization_id=principal.organization_id)


@dataclass(frozen=True)
class RuleQuery:
    """The conditions a list of billing rules can be narrowed by (None: any)."""

    account_ids: list[UUID] | None = None
    kinds: list[str] | None = None
    active: bool | None = None


def filter_rules(query, where: RuleQuery):
    if where.account_ids is not None:
        query = query.filter(managed_account_id__in=where.account_ids)
    if where.kinds is not None:
        query = query.filter(kind__in=where.kinds)
    if where.active is not None:
        query = query.filter(is_active=where.active)
    return query


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("Name the rule.", field="name")
    value = value.strip()
    if len(value) > 255:
        raise ValidationFailed("A name has at most 255 characters.", field="name")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValidationFailed("The name contains a NUL character.", field="name")
    return value


def _choice(enum: type[Enum], value: Any, field: str) -> Any:
    try:
        return enum(value.value if isinstance(value, Enum) else value)
    except ValueError:
        raise ValidationFailed(
            f"One of {', '.join(member.value for member in enum)}.", field=field
        ) from None


def _value(value: Any) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or value >= VALUE_CEILING:
        raise ValidationFailed("The value is a number of 0 or more.", field="value")
    if value != value.quantize(VALUE_DECIMALS):
        raise ValidationFailed("The value has at most 4 decimals.", field="value")
    return value


def _filter(value: Any, column: str) -> str | None:
    field, limit = _FILTER_COLUMNS[column]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("Expected text.", field=field)
    value = value.strip()
    if len(value) > limit:
        raise ValidationFailed(f"At most {limit} characters.", field=field)
    if "\x00" in value:
        raise ValidationFailed("Contains a NUL character.", field=field)
    # An empty filter would match only lines without a value: "no filter" is what is meant.
    return value or None


def _month(value: Any, field: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, date) or value.day != 1:
        raise ValidationFailed("A month (its first day).", field=field)
    return value


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """The given fields, validated one by one (cross-field rules are checked on the whole)."""
    unknown = set(data) - CHANGEABLE
    if unknown:
        raise TypeError(f"Not billing rule fields: {', '.join(sorted(unknown))}")
    cleaned: dict[str, Any] = {}
    if "name" in data:
        cleaned["name"] = _name(data["name"])
    if "kind" in data:
        cleaned["kind"] = _choice(RuleKind, data["kind"], "kind")
    if "calculation" in data:
        cleaned["calculation"] = _choice(RuleCalculation, data["calculation"], "calculation")
    if "value" in data:
        cleaned["value"] = _value(data["value"])
    for column in _FILTER_COLUMNS:
        if column in data:
            cleaned[column] = _filter(data[column], column)
    for column, field in (("starts_on", "startsOn"), ("ends_on", "endsOn")):
        if column in data:
            cleaned[column] = _month(data[column], field)
    if "is_active" in data:
        if not isinstance(data["is_active"], bool):
            raise ValidationFailed("True or false.", field="isActive")
        cleaned["is_active"] = data["is_active"]
    if "managed_account_id" in data:
        cleaned["managed_account_id"] = data["managed_account_id"]
    return cleaned


def _check_whole(rule: dict[str, Any]) -> None:
    """The rules between fields, on the rule as it will be saved."""
    if rule["calculation"] is RuleCalculation.PERCENT and rule["value"] > MAX_PERCENT[rule["kind"]]:
        raise ValidationFailed(
            f"A {rule['kind'].value.lower()} percentage is 0 to {MAX_PERCENT[rule['kind']]}.",
            field="value",
        )
    starts_on, ends_on = rule["starts_on"], rule["ends_on"]
    if starts_on is not None and ends_on is not None and starts_on > ends_on:
        raise ValidationFailed("The last month comes before the first.", field="endsOn")


async def _check_account(principal, account_id, connection) -> None:
    """The account must be one the principal sees; locked until commit so that it cannot
    be deleted between this check and the write."""
    if account_id is None:
        return
    # `.first()`, not `.exists()`: Tortoise drops FOR UPDATE from an EXISTS query.
    found = await visible_accounts(principal).filter(id=account_id).select_for_update().using_db(connection).first()
    if found is None:
        raise NotFound(f"No managed account with id {account_id}.", field="accountId")


async def create_rule(principal, data: dict[str, Any]) -> BillingRule:
    """A new rule of the principal's organization. `data` holds column names (see
    CHANGEABLE); name, kind, calculation and value are required, `managed_account_id` None
    (or absent) means every account."""
    for column in _REQUIRED:
        if data.get(column) is None:
            raise ValidationFailed("This is required.", field=column)
    columns = _clean(data)
    whole = {"starts_on": None, "ends_on": None, "managed_account_id": None, **columns}
    _check_whole(whole)
    async with in_transaction() as connection:
        await _check_account(principal, whole["managed_account_id"], connection)
        rule = await BillingRule.create(organization_id=principal.organization_id, using_db=connection, **columns)
        await record_change(connection, AuditEntity.BILLING_RULE, rule.id, rule.organization_id, None, snapshot(rule))
        return rule


async def _owned(principal, rule_id, connection) -> BillingRule:
    rule = await visible_rules(principal).filter(id=rule_id).select_for_update().using_db(connection).first()
    if rule is None:
        raise NotFound(f"No billing rule with id {rule_id}.", field="id")
    return rule


async def update_rule(principal, rule_id, changes: dict[str, Any]) -> BillingRule:
    """Change only the given fields (a None filter, month or account clears it). Invoices
    already generated keep what they computed until regenerated."""
    for column in _REQUIRED + ("is_active",):
        if column in changes and changes[column] is None:
            field = "isActive" if column == "is_active" else column
            raise ValidationFailed("This cannot be cleared.", field=field)
    columns = _clean(changes)
    async with in_transaction() as connection:
        rule = await _owned(principal, rule_id, connection)
        before = snapshot(rule)
        current = {column: getattr(rule, column) for column in CHANGEABLE}
        _check_whole({**current, **columns})
        if "managed_account_id" in columns and columns["managed_account_id"] != rule.managed_account_id:
            await _check_account(principal, columns["managed_account_id"], connection)
        if columns:
            rule.update_from_dict(columns)
            await rule.save(using_db=connection)
            await record_change(connection, AuditEntity.BILLING_RULE, rule.id, rule.organization_id, before, snapshot(rule))
    return rule


async def delete_rule(principal, rule_id) -> None:
    """Delete a rule. Invoices already generated keep the lines it produced."""
    async with in_transaction() as connection:
        rule = await _owned(principal, rule_id, connection)
        await rule.delete(using_db=connection)
        await record_change(connection, AuditEntity.BILLING_RULE, rule.id, rule.organization_id, snapshot(rule), None)
