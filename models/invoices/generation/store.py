"""Generation's last step: freeze computed, printed invoices as their next revisions, with
their lines, claim the late costs they bill, and move them to AWAITING_APPROVAL, a few
statements for a whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from models.errors import DomainError, GenerationFailed
from models.invoices.generation.types import ComputedRevision
from models.invoices.generation.view import plain
from models.invoices.lifecycle import transition_each
from models.invoices.tables import Invoice, InvoiceRevision, InvoiceStatus

_LINE_PLACES = Decimal("1e-16")  # invoice_line_items' NUMERIC(38, 16)


def _line_decimal(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_LINE_PLACES)


@dataclass
class Generated:
    """A computed invoice, printed, to store as its next revision."""

    invoice_id: Any
    computed: ComputedRevision
    view: dict[str, Any]
    # The stored PDF: its path, SHA-256 and size.
    pdf: dict[str, Any]


async def store_revision(
    invoice_id: Any, computed: ComputedRevision, view: dict[str, Any], pdf: dict[str, Any], actor: Any
) -> Invoice | None:
    """Freeze the computed revision as the invoice's next one and move it to AWAITING_APPROVAL.
    Returns None when the invoice is no longer GENERATING (a stale job: nothing is stored)."""
    stored = (await store_revisions([Generated(invoice_id, computed, view, pdf)], actor))[0]
    if isinstance(stored, DomainError):
        raise stored
    return stored


async def store_revisions(generated: list[Generated], actor: Any) -> list[Invoice | None | DomainError]:
    """`store_revision` for each, in one transaction; when the late costs of one were claimed
    by another invoice meanwhile, each is stored alone, so that only that one fails."""
    try:
        return list(await _store(generated, actor))
    except GenerationFailed as exc:
        if len(generated) == 1:
            return [exc]
    found: list[Invoice | None | DomainError] = []
    for one in generated:
        try:
            found.extend(await _store([one], actor))
        except GenerationFailed as exc:
            found.append(exc)
    return found


async def _lock(conn: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Lock the invoices (in id order, as every bulk lock is taken) and read their revision
    counts and whether an automatic send was cancelled, in one round trip."""
    return {
        row["id"]: row
        for row in await conn.execute_query_dict(
            "SELECT id::text AS id, status, auto_send_at,"
            " (SELECT count(*) FROM invoice_revisions r WHERE r.invoice_id = i.id) AS revisions,"
            " EXISTS (SELECT 1 FROM invoice_events e WHERE e.invoice_id = i.id AND kind = 'AUTO_SEND_CANCELLED') AS cancelled"
            " FROM invoices i WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            [ids],
        )
    }


def _revision(one: Generated, number: int) -> InvoiceRevision:
    computed = one.computed
    return InvoiceRevision(
        invoice_id=one.invoice_id,
        revision=number,
        template_version=one.view["template_version"],
        locale=one.view.get("locale", "en"),
        currency=computed.currency,
        cost_currency=computed.cost_currency,
        exchange_rate=computed.rate,
        exchange_rates={cost: plain(rate) for cost, rate in computed.rates.items()},
        subtotal=computed.subtotal,
        checks=[finding.stored() for finding in computed.checks],
        billing_basis=computed.billing_basis.value,
        adjustments=computed.adjustments,
        charges=computed.charges,
        total=computed.total,
        issue_date=computed.issue_date,
        due_date=computed.due_date,
        snapshot=one.view,
        pdf_path=one.pdf["path"],
        pdf_sha256=one.pdf["sha256"],
        pdf_size=one.pdf["size"],
    )


async def _insert_lines(conn: Any, current: list[Generated], revisions: list[InvoiceRevision]) -> None:
    """One statement for all the lines: building an ORM object per line cost more than the rest
    of the transaction. Quantities and prices are rounded as the ORM rounds them."""
    lines = [
        (revision.id, position, line)
        for one, revision in zip(current, revisions, strict=True)
        for position, line in enumerate(one.computed.lines, start=1)
    ]
    if not lines:
        return
    await conn.execute_query(
        "INSERT INTO invoice_line_items (revision_id, position, kind, description, provider_name,"
        " service_name, service_category, quantity, unit, unit_price, amount)"
        " SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::numeric[], $9::text[], $10::numeric[], $11::numeric[])",
        [
            [str(revision_id) for revision_id, _, _ in lines],
            [position for _, position, _ in lines],
            [line.kind.value for _, _, line in lines],
            [line.description[:1024] for _, _, line in lines],
            [line.provider for _, _, line in lines],
            [line.service for _, _, line in lines],
            [line.category for _, _, line in lines],
            [_line_decimal(line.quantity) for _, _, line in lines],
            [line.unit for _, _, line in lines],
            [_line_decimal(line.unit_price) for _, _, line in lines],
            [line.amount for _, _, line in lines],
        ],
    )


def _generated_changes(one: Generated, revision: InvoiceRevision, locked: dict[str, Any]) -> tuple[dict, dict]:
    """The invoice's columns once generated, and its GENERATED event's detail."""
    computed = one.computed
    return (
        {
            "current_revision_id": revision.id,
            "currency": computed.currency,
            "subtotal": computed.subtotal,
            "adjustments": computed.adjustments,
            "charges": computed.charges,
            "total": computed.total,
            "tax_total": computed.taxes,
            "issue_date": computed.issue_date,
            "due_date": computed.due_date,
            "auto_send_at": _auto_send_at(computed, locked),
        },
        {"revision": revision.revision, "total": str(computed.total), "pdfSha256": one.pdf["sha256"]},
    )


async def _store(generated: list[Generated], actor: Any) -> list[Invoice | None]:
    ids = [str(one.invoice_id) for one in generated]
    async with in_transaction() as conn:
        locked = await _lock(conn, ids)
        current = [
            one
            for one, invoice_id in zip(generated, ids, strict=True)
            if invoice_id in locked and locked[invoice_id]["status"] == InvoiceStatus.GENERATING.value
        ]
        revisions = [_revision(one, locked[str(one.invoice_id)]["revisions"] + 1) for one in current]
        if revisions:
            await InvoiceRevision.bulk_create(revisions, using_db=conn)
        await _insert_lines(conn, current, revisions)
        await _claim_late_costs(conn, current)
        moved = await transition_each(
            [one.invoice_id for one in current],
            "GENERATED",
            actor,
            connection=conn,
            changes={"error_message": None},
            each=[_generated_changes(one, revision, locked[str(one.invoice_id)]) for one, revision in zip(current, revisions, strict=True)],
        )
        stored = {}
        for one, found in zip(current, moved, strict=True):
            if isinstance(found, DomainError):  # locked GENERATING above: cannot happen
                raise found
            stored[str(one.invoice_id)] = found
    return [stored.get(invoice_id) for invoice_id in ids]


async def _claim_late_costs(conn: Any, generated: list[Generated]) -> None:
    """Mark the late costs each revision bills as billed by its invoice, and release those an
    earlier revision billed and this one no longer does. Another invoice claiming one first
    (a race between two generations of the account) fails this one, to be generated again."""
    if not generated:
        return
    claims = [(str(one.invoice_id), str(late_id)) for one in generated for late_id in one.computed.late_cost_ids]
    await conn.execute_query(
        "UPDATE late_costs SET billed_invoice_id = NULL WHERE billed_invoice_id = ANY($1::uuid[]) AND id <> ALL($2::uuid[])",
        [[str(one.invoice_id) for one in generated], [late_id for _, late_id in claims]],
    )
    if not claims:
        return
    claimed, _ = await conn.execute_query(
        "UPDATE late_costs SET billed_invoice_id = v.invoice FROM unnest($1::uuid[], $2::uuid[]) AS v(invoice, id)"
        " WHERE late_costs.id = v.id AND (late_costs.billed_invoice_id IS NULL OR late_costs.billed_invoice_id = v.invoice)",
        [[invoice_id for invoice_id, _ in claims], [late_id for _, late_id in claims]],
    )
    if claimed != len(claims):
        raise GenerationFailed("Late costs of this account were billed by another invoice meanwhile: regenerate.")


def _auto_send_at(computed: ComputedRevision, locked: dict[str, Any]) -> datetime | None:
    """When the automatic approval and send is due: the time queued already, or the grace
    period from now; none when the account does not auto-send or someone cancelled it."""
    if computed.auto_send_after_hours is None or locked["cancelled"]:
        return None
    return locked["auto_send_at"] or datetime.now(UTC) + timedelta(hours=computed.auto_send_after_hours)
