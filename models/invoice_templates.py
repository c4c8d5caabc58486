"""Invoice templates an organization owns: Jinja text it uploads, kept as numbered versions.

A version never changes once stored (a database trigger refuses it, and refuses deleting one
that printed a revision): a revision printed with it names it in its `template_version`
(`org-<n>`, beside the product's own `1`), so printing that revision again reads the very text it
was printed with, whatever the organization uses today. At most one version is active; with
none, invoices print with the product's template. The text is compiled and rendered in a sandbox
by the printer (`jobs/invoice_templates.py`): an upload passes its check before it is stored.
Owners upload and choose; owners and viewers read; customers never see them."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint, UniqueConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.audit import AuditEntity, record_change, snapshot
from models.errors import Conflict, GenerationFailed, NotFound, TemplateRejected, ValidationFailed
from models.invoices.queries import visible_invoices
from models.invoices.tables import InvoiceRevision

if TYPE_CHECKING:
    from models.auth import User
    from models.organizations import Organization

# A template is a page of markup, not a document store: 64 KiB of UTF-8 is several times the
# product's own invoice template with its base.
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_NAME = 100
OWN_PREFIX = "org-"
__all__ = ["InvoiceTemplate", "TemplateRejected"]


class InvoiceTemplate(Model):
    """One version of an organization's invoice template: its text, frozen."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name=False, on_delete=fields.CASCADE
    )
    # 1, 2, ... per organization, in upload order.
    version = fields.IntField()
    name = fields.CharField(max_length=MAX_NAME)
    source = fields.TextField()
    sha256 = fields.CharField(max_length=64)
    size = fields.IntField()
    active = fields.BooleanField(default=False)
    activated_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )

    organization_id: UUID

    class Meta:
        table = "invoice_templates"
        constraints = (
            UniqueConstraint(fields=("organization_id", "version"), name="invoice_templates_version_unique"),
            CheckConstraint(check="version >= 1", name="invoice_templates_version_positive"),
            CheckConstraint(
                check=f"size = octet_length(source) AND size BETWEEN 1 AND {MAX_TEMPLATE_BYTES}",
                name="invoice_templates_size",
            ),
        )

    @property
    def template_version(self) -> str:
        """What a revision printed with this version stores as its `template_version`."""
        return f"{OWN_PREFIX}{self.version}"


def visible_templates(principal: Any):
    """An organization's templates are its MSP users' business: customers see none."""
    if not principal.is_msp_user:
        return InvoiceTemplate.filter(id__in=[])
    return InvoiceTemplate.filter(organization_id=principal.organization_id)


def _audited(row: InvoiceTemplate | None) -> dict[str, Any] | None:
    """The row as the audit log keeps it: the text by its digest and size (the text itself is
    kept, unchangeable, in the row)."""
    found = snapshot(row)
    if found is not None:
        found.pop("source", None)
    return found


def _checked_text(name: str, source: str) -> tuple[str, bytes]:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise ValidationFailed(f"A template's name has 1 to {MAX_NAME} characters.", field="name")
    data = source.encode()
    if not source.strip():
        raise ValidationFailed("The template is empty.", field="source")
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ValidationFailed(f"The template is {len(data)} bytes; at most {MAX_TEMPLATE_BYTES} are kept.", field="source")
    return name, data


async def upload_template(principal: Any, name: str, source: str, check: Callable[[str], Awaitable[None]]) -> InvoiceTemplate:
    """Store `source` as the organization's next version, not active yet. `check` (the
    printer's) compiles it and renders a sample invoice with it, raising TemplateRejected."""
    name, data = _checked_text(name, source)
    await check(source)
    try:
        async with in_transaction() as connection:
            last = (
                await InvoiceTemplate.filter(organization_id=principal.organization_id)
                .using_db(connection)
                .order_by("-version")
                .only("id", "version")
                .first()
            )
            row = await InvoiceTemplate.create(
                organization_id=principal.organization_id,
                version=last.version + 1 if last else 1,
                name=name,
                source=source,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                created_by_id=principal.user.id,
                using_db=connection,
            )
            await record_change(connection, AuditEntity.INVOICE_TEMPLATE, row.id, row.organization_id, None, _audited(row))
    except IntegrityError as exc:  # another upload took the number meanwhile
        raise Conflict("Another template was uploaded at the same moment: upload again.") from exc
    return row


async def visible_template(principal: Any, template_id: Any, field: str = "id") -> InvoiceTemplate:
    row = await visible_templates(principal).filter(id=template_id).first() if template_id else None
    if row is None:
        raise NotFound("No such invoice template.", field=field)
    return row


async def activate_template(principal: Any, template_id: Any | None) -> InvoiceTemplate | None:
    """Make the version the one new invoices print with (None: the product's template again).
    Revisions already printed keep theirs."""
    chosen = await visible_template(principal, template_id) if template_id is not None else None
    async with in_transaction() as connection:
        rows = await InvoiceTemplate.filter(organization_id=principal.organization_id, active=True).using_db(connection).select_for_update()
        for was in rows:
            if chosen is not None and was.id == chosen.id:
                return was
            before = _audited(was)
            await InvoiceTemplate.filter(id=was.id).using_db(connection).update(active=False, activated_at=None)
            was.active, was.activated_at = False, None
            await record_change(connection, AuditEntity.INVOICE_TEMPLATE, was.id, was.organization_id, before, _audited(was))
        if chosen is None:
            return None
        before = _audited(chosen)
        now = datetime.now(UTC)
        try:
            async with in_transaction() as savepoint:
                await InvoiceTemplate.filter(id=chosen.id).using_db(savepoint).update(active=True, activated_at=now)
        except IntegrityError as exc:  # another activation won meanwhile
            raise Conflict("Another template was activated at the same moment: try again.") from exc
        chosen.active, chosen.activated_at = True, now
        await record_change(connection, AuditEntity.INVOICE_TEMPLATE, chosen.id, chosen.organization_id, before, _audited(chosen))
    return chosen


async def active_templates(organization_ids: Iterable[Any]) -> dict[UUID, InvoiceTemplate]:
    """Each organization's active template, for those that have one."""
    rows = await InvoiceTemplate.filter(organization_id__in=list(organization_ids), active=True)
    return {row.organization_id: row for row in rows}


async def printed_with(organization_id: Any, template_version: str) -> InvoiceTemplate | None:
    """The organization's version a revision names (None: one of the product's templates)."""
    if not template_version.startswith(OWN_PREFIX):
        return None
    number = template_version.removeprefix(OWN_PREFIX)
    row = await InvoiceTemplate.filter(organization_id=organization_id, version=int(number) if number.isdigit() else 0).first()
    if row is None:
        raise GenerationFailed(f"The invoice template {template_version} is missing.")
    return row


async def preview_subject(principal: Any, template_id: Any, invoice_id: Any) -> tuple[InvoiceTemplate, dict[str, Any]]:
    """The template and the printed view of a real invoice of the organization (its current
    revision's) to try it on."""
    template = await visible_template(principal, template_id, field="templateId")
    invoice = await visible_invoices(principal).filter(id=invoice_id).first() if invoice_id else None
    if invoice is None:
        raise NotFound("No such invoice.", field="invoiceId")
    revision = await InvoiceRevision.filter(id=invoice.current_revision_id).first() if invoice.current_revision_id else None
    if revision is None or not revision.snapshot:
        raise ValidationFailed("The invoice was not generated yet: preview with one that was.", field="invoiceId")
    return template, revision.snapshot
