"""Cost records: the list with its totals; cost deliveries: their import, in the background,
and its progress, live."""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, cast

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from infra import links, storage
from models import costs
from models.costs import usage
from models.errors import ValidationFailed
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid, node_uuid_or_none
from schema.core.pagination import Direction, paginate
from schema.core.permissions import ANY_USER, MSP_USERS, OWNERS, requires
from schema.core.scalars import Month, plain
from schema.costs import (
    AccountUsage,
    CostImport,
    CostImportConnection,
    CostImportOrder,
    CostImportOrderField,
    CostImportQueued,
    CostOrigin,
    CostRecord,
    CostRecordConnection,
    CostRecordFilter,
    CostRecordOrder,
    CostRecordOrderField,
    CostsImported,
    ImportCostsPayload,
    UsageLine,
    cost_query,
)
from schema.managed_accounts import ManagedAccount

# How often a live import is read again for `costImportChanged` (it records progress each second).
PROGRESS_POLL_SECONDS = 0.5


@strawberry.type
class Query:
    @strawberry.field(
        description="Imported cost rows of your organization, optionally of one managed "
        "account and one month, with their totals per currency.",
        extensions=requires(*MSP_USERS),
    )
    async def costs(
        self, info: Info,
        account_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this managed account's rows.")] = None,
        period: Annotated[Month | None, strawberry.argument(description="Only this invoice month.")] = None,
        first: int | None = None, after: str | None = None, last: int | None = None, before: str | None = None,
        filter: CostRecordFilter | None = None, order_by: CostRecordOrder | None = None,
    ) -> CostRecordConnection:
        query = costs.filter_costs(costs.visible_costs(info.context.principal), cost_query(account_id, period, filter))
        order = order_by or CostRecordOrder(field=CostRecordOrderField.CHARGE_PERIOD_START, direction=Direction.DESC)
        page = await paginate(
            info,
            CostRecordConnection, query, CostRecord.from_model,
            order, first=first, after=after, last=last, before=before,
        )
        page.query = query
        return page

    @strawberry.field(
        description="A managed account's usage by service category over a range of months (at most 36), "
        "on its billing basis and before billing rules, with a CSV link. MSP users read any account's; a "
        "customer its own once the MSP allows it (`usageVisibleToCustomer`); null otherwise.",
        extensions=requires(*ANY_USER),
    )
    async def usage(
        self, info: Info, account_id: strawberry.ID, from_: Annotated[Month, strawberry.argument(name="from")], to: Month,
    ) -> AccountUsage | None:
        principal = info.context.authenticated()
        account = await usage.usage_account(principal, node_uuid_or_none(account_id, "ManagedAccount"))
        if account is None:
            return None
        rows = await usage.usage_by_category(account, from_, to)
        link = links.sign(info.context.settings, principal, "usage", f"{account.id}/{from_.isoformat()}/{to.isoformat()}")
        return AccountUsage(
            account=ManagedAccount.from_model(account), csv_url=link.url,
            lines=[UsageLine(month=Month(r["month"]), service_category=r["category"], currency=r["currency"],
                             amount=plain(r["amount"]), rows=r["rows"]) for r in rows],
        )

    @strawberry.field(
        description="Cost deliveries received, newest first: their state, progress and what they did.",
        extensions=requires(*MSP_USERS),
    )
    async def cost_imports(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None, order_by: CostImportOrder | None = None,
    ) -> CostImportConnection:
        order = order_by or CostImportOrder(field=CostImportOrderField.CREATED_AT, direction=Direction.DESC)
        return await paginate(
            info, CostImportConnection, costs.visible_imports(info.context.authenticated()),
            CostImport.from_model, order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(
        description="Receive a FOCUS cost delivery (AWS, Azure, Google Cloud, OCI) sent as a GraphQL "
        "multipart request: one file, or its parts in `files` (CSV, gzip CSV, Parquet, a zip, an AWS or "
        "Azure export's manifest with its parts), recognised by content. A part's file name may keep its "
        "folders (`BILLING_PERIOD=2025-10/<run>/<export>-00001.parquet`): the manifest's keys are matched by "
        "name and folders; a part the manifest does not name, or one it names that is missing, refuses the "
        "delivery. The files are stored as they arrive "
        "and a worker imports them as one unit: all of it or nothing. A delivery replaces what "
        "earlier deliveries said about the same provider, billing account and month; months "
        "already approved keep what was invoiced and their difference is kept as late costs. "
        "By default the answer is `CostImportQueued` (follow it with `costImportChanged`); with "
        "`wait` the import runs now and the answer is its report.",
        scopes=OWNERS, idempotent=True,
    )
    async def import_costs(
        self, info: Info,
        file: Annotated[Upload | None, strawberry.argument(description="The delivery, or its first part.")] = None,
        files: Annotated[list[Upload] | None, strawberry.argument(
            description="Further parts of the same delivery."
        )] = None,
        origin: Annotated[CostOrigin, strawberry.argument(
            description="Whose integration exported the delivery; by default the MSP's."
        )] = CostOrigin.MSP_DELEGATED,
        account_id: Annotated[strawberry.ID | None, strawberry.argument(
            description="The managed account whose own integration exported the delivery: required "
            "with ACCOUNT_INTEGRATION (every row must be of its sub-accounts), refused otherwise."
        )] = None,
        wait: Annotated[bool, strawberry.argument(
            description="Import now, in this request, and answer the report (small deliveries, scripts)."
        )] = False,
    ) -> ImportCostsPayload:
        principal = info.context.authenticated()
        uploads = [cast(UploadFile, upload) for upload in ([file] if file else []) + (files or [])]
        if not uploads:
            raise ValidationFailed("Send the delivery as `file` (and any further parts as `files`).", field="file")
        account = node_uuid(account_id, "ManagedAccount", field="accountId")
        folder, stored = await _store(info, principal.organization_id, uploads)
        try:
            cost_import = await costs.register_delivery(
                principal.organization_id, stored, filename=", ".join(u.filename or "" for u in uploads),
                imported_by_id=principal.user.id, origin=origin, account_id=account, in_background=not wait,
            )
        except BaseException:
            await asyncio.to_thread(storage.remove, info.context.settings, folder)
            raise
        if not wait:
            return CostImportQueued(cost_import=CostImport.from_model(cost_import))
        report = await costs.run_import(
            cost_import.id, fetch=functools.partial(storage.local_copy, info.context.settings)
        )
        await cost_import.refresh_from_db()
        return CostsImported.from_report(report, cost_import)


# A control character in a file name (NUL above all) is refused before anything is stored.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


async def _store(info: Info, organization_id: uuid.UUID, uploads: list[UploadFile]) -> tuple[str, list]:
    """The delivery's parts into storage under a folder of its own; the cap counts the whole
    delivery and the organization's stored deliveries, and a refused one leaves nothing behind."""
    settings = info.context.settings
    for number, upload in enumerate(uploads, start=1):
        if _CONTROL.search(upload.filename or ""):
            raise ValidationFailed(
                "A file name holds a control character; rename the file.", field="file" if number == 1 else "files"
            )
    kept = storage.delivery_folder(organization_id)
    room = settings.max_stored_delivery_bytes - await asyncio.to_thread(storage.used_bytes, settings, kept)
    folder = f"{kept}/{uuid.uuid4()}"

    async def save(name: str, chunks: AsyncIterator[bytes]) -> str:
        await storage.save_stream(settings, f"{folder}/{name}", chunks)
        return f"{folder}/{name}"

    try:
        paths = await costs.store_parts(
            save, [(storage.safe_name(upload.filename), upload) for upload in uploads], min(settings.max_upload_bytes, room),
        )
    except costs.PartTooLarge as too_large:
        await asyncio.to_thread(storage.remove, settings, folder)
        field = "file" if too_large.number == 1 else "files"
        if room < settings.max_upload_bytes:
            raise ValidationFailed(
                f"Your organization keeps at most {settings.max_stored_delivery_bytes:,} bytes of cost deliveries, "
                f"and {max(room, 0):,} are left until older ones are purged "
                f"({settings.delivery_retention_days} days after their upload).", field=field,
            ) from None
        raise ValidationFailed(f"A cost delivery is at most {settings.max_upload_bytes:,} bytes.", field=field) from None
    except BaseException:
        await asyncio.to_thread(storage.remove, settings, folder)
        raise
    # Sent with its folders, a part matches its manifest's keys by them too.
    return folder, [(path, storage.safe_relative(upload.filename)) for path, upload in zip(paths, uploads, strict=True)]


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A cost import as it goes: its state and `rowsDone` each time they change, "
        "until it is DONE or FAILED (the last event). Null when you may not see it.",
        extensions=requires(*MSP_USERS),
    )
    async def cost_import_changed(self, info: Info, id: strawberry.ID) -> AsyncGenerator[CostImport | None, None]:
        visible = costs.visible_imports(info.context.authenticated())
        import_id = node_uuid_or_none(id, "CostImport")
        seen = None
        while True:
            row = await visible.filter(id=import_id).first() if import_id else None
            if row is None:
                yield None
                return
            if (row.state, row.rows_done) != seen:
                seen = (row.state, row.rows_done)
                yield CostImport.from_model(row)
            if row.state in (costs.CostImportState.DONE, costs.CostImportState.FAILED):
                return
            await asyncio.sleep(PROGRESS_POLL_SECONDS)
