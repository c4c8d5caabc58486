"""How an organization's documents land in Xero: its default account code and tax type, the
mapping per line kind or per charge and tax, and whether months push themselves at rollover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.errors import ValidationFailed
from models.invoices.tables import LineKind
from models.xero.tables import XeroAccountMapping, XeroSettings

MAX_MAPPINGS = 100


@dataclass(frozen=True)
class MappingInput:
    line_kind: LineKind
    account_code: str
    tax_type: str
    line_name: str = ""


@dataclass(frozen=True)
class SettingsInput:
    auto_push_at_rollover: bool | None = None
    account_code: str | None = None
    tax_type: str | None = None
    # None keeps the mapping; a list replaces it.
    mappings: list[MappingInput] | None = None


async def settings_of(organization_id) -> XeroSettings:
    """The organization's settings, the defaults when none were saved."""
    found = await XeroSettings.get_or_none(organization_id=organization_id)
    return found or XeroSettings(organization_id=organization_id)


async def mappings_of(organization_id) -> list[XeroAccountMapping]:
    return await XeroAccountMapping.filter(organization_id=organization_id).order_by("position")


def _code(value: str, limit: int, field: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit:
        raise ValidationFailed(f"Give 1 to {limit} characters.", field=field)
    return value


async def update_settings(principal, change: SettingsInput) -> XeroSettings:
    """Change what is given; the mapping is replaced whole when given. Nothing is written
    when any value is refused."""
    values: dict[str, object] = {}
    if change.auto_push_at_rollover is not None:
        values["auto_push_at_rollover"] = change.auto_push_at_rollover
    if change.account_code is not None:
        values["account_code"] = _code(change.account_code, 32, "accountCode")
    if change.tax_type is not None:
        values["tax_type"] = _code(change.tax_type, 64, "taxType")
    rows = None
    if change.mappings is not None:
        if len(change.mappings) > MAX_MAPPINGS:
            raise ValidationFailed(f"At most {MAX_MAPPINGS} mappings.", field="mappings")
        rows, seen = [], set()
        for position, m in enumerate(change.mappings):
            name = (m.line_name or "").strip()
            if len(name) > 1024:
                raise ValidationFailed("At most 1024 characters.", field=f"mappings.{position}.lineName")
            if (m.line_kind, name) in seen:
                raise ValidationFailed("Each line kind and name is mapped once.", field=f"mappings.{position}")
            seen.add((m.line_kind, name))
            rows.append(XeroAccountMapping(
                organization_id=principal.organization_id, line_kind=m.line_kind, line_name=name, position=position,
                account_code=_code(m.account_code, 32, f"mappings.{position}.accountCode"),
                tax_type=_code(m.tax_type, 64, f"mappings.{position}.taxType"),
            ))
    async with in_transaction() as conn:
        settings, _ = await XeroSettings.get_or_create(organization_id=principal.organization_id, using_db=conn)
        before = snapshot(settings, mappings=await _mapped(principal.organization_id, conn))
        if values:
            await XeroSettings.filter(id=settings.id).using_db(conn).update(**values, updated_at=datetime.now(UTC))
        if rows is not None:
            await XeroAccountMapping.filter(organization_id=principal.organization_id).using_db(conn).delete()
            await XeroAccountMapping.bulk_create(rows, using_db=conn)
        settings = await XeroSettings.filter(id=settings.id).using_db(conn).get()
        after = snapshot(settings, mappings=await _mapped(principal.organization_id, conn))
        await record_change(conn, AuditEntity.XERO_SETTINGS, settings.id, principal.organization_id, before, after)
    return settings


async def _mapped(organization_id, conn) -> list[dict]:
    query = XeroAccountMapping.filter(organization_id=organization_id).using_db(conn).order_by("position")
    return await query.values("line_kind", "line_name", "account_code", "tax_type")
