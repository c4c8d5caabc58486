"""Cost records: the list with its totals, and the FOCUS file import."""

from __future__ import annotations

from typing import Annotated, cast

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from models import costs
from models.errors import ValidationFailed
from schema.context import Info
from schema.costs import (
    CostOrigin,
    CostRecord,
    CostRecordConnection,
    CostRecordFilter,
    CostRecordOrder,
    CostRecordOrderField,
    CostsImported,
    ImportCostsPayload,
    cost_query,
)
from schema.mutations import mutation
from schema.nodes import node_uuid
from schema.pagination import Direction, paginate
from schema.permissions import MSP_USERS, OWNERS, requires
from schema.scalars import Month


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


@strawberry.type
class Mutation:
    @mutation(
        description="Import a FOCUS cost export (CSV, UTF-8; AWS, Azure, Google Cloud, OCI) "
        "sent as a GraphQL multipart request. The whole file is imported or nothing is; rows "
        "imported before are skipped, so sending a file again is harmless.",
        scopes=OWNERS,
    )
    async def import_costs(
        self, info: Info,
        file: Annotated[Upload, strawberry.argument(description="The CSV file, as a multipart file part.")],
        origin: Annotated[CostOrigin, strawberry.argument(
            description="Whose integration exported the file; by default the MSP's."
        )] = CostOrigin.MSP_DELEGATED,
        account_id: Annotated[strawberry.ID | None, strawberry.argument(
            description="The managed account whose own integration exported the file: required "
            "with ACCOUNT_INTEGRATION (every row must be of its sub-accounts), refused otherwise."
        )] = None,
    ) -> ImportCostsPayload:
        cap = info.context.settings.max_upload_bytes
        # strawberry types an `Upload` as bytes; over ASGI it is Starlette's file.
        upload = cast(UploadFile, file)
        # One byte past the cap tells it is too big; never read more into memory.
        data = await upload.read(cap + 1)
        if len(data) > cap:
            raise ValidationFailed(f"A cost file is at most {cap:,} bytes.", field="file")
        principal = info.context.authenticated()
        report = await costs.import_costs(
            principal.organization_id, data, filename=upload.filename or "", imported_by_id=principal.user.id,
            origin=origin, account_id=node_uuid(account_id, "ManagedAccount", field="accountId"),
        )
        return CostsImported.from_report(report)
