"""Billing profiles: the list, create/update/delete, and the logo upload."""

from __future__ import annotations

from typing import Annotated, cast

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from models import billing_profiles
from schema.billing_profiles import (
    BillingProfile,
    BillingProfileConnection,
    BillingProfileDeleted,
    BillingProfileLogoSet,
    BillingProfileOrder,
    BillingProfileOrderField,
    BillingProfileSaved,
    CreateBillingProfileInput,
    CreateBillingProfilePayload,
    DeleteBillingProfilePayload,
    RemoveBillingProfileLogoPayload,
    SetBillingProfileLogoPayload,
    UpdateBillingProfileInput,
    UpdateBillingProfilePayload,
    profile_data,
)
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid
from schema.core.pagination import Direction, paginate
from schema.core.permissions import MSP_USERS, OWNERS, requires

TYPE_NAME = "BillingProfile"


def _saved(row) -> BillingProfileSaved:
    return BillingProfileSaved(billing_profile=BillingProfile.from_model(row))


@strawberry.type
class Query:
    @strawberry.field(
        description="The organization's billing profiles.", extensions=requires(*MSP_USERS)
    )
    async def billing_profiles(
        self, info: Info, first: int | None = None, after: str | None = None,
        last: int | None = None, before: str | None = None,
        order_by: BillingProfileOrder | None = None,
    ) -> BillingProfileConnection:
        order = order_by or BillingProfileOrder(field=BillingProfileOrderField.NICKNAME, direction=Direction.ASC)
        return await paginate(
            info,
            BillingProfileConnection,
            billing_profiles.visible_profiles(info.context.principal),
            BillingProfile.from_model,
            order, first=first, after=after, last=last, before=before,
        )


@strawberry.type
class Mutation:
    @mutation(description="Create a billing profile.", scopes=OWNERS,)
    async def create_billing_profile(
        self, info: Info, input: CreateBillingProfileInput
    ) -> CreateBillingProfilePayload:
        row = await billing_profiles.create_profile(info.context.principal, profile_data(input))
        return _saved(row)

    @mutation(
        description="Change a billing profile; only the fields given change. Invoices already "
        "generated keep what they printed until regenerated.",
        scopes=OWNERS,
    )
    async def update_billing_profile(
        self, info: Info, id: strawberry.ID, input: UpdateBillingProfileInput
    ) -> UpdateBillingProfilePayload:
        row = await billing_profiles.update_profile(
            info.context.principal, node_uuid(id, TYPE_NAME), profile_data(input)
        )
        return _saved(row)

    @mutation(
        description="Delete a billing profile; the managed accounts using it are left without one.",
        scopes=OWNERS,
    )
    async def delete_billing_profile(self, info: Info, id: strawberry.ID) -> DeleteBillingProfilePayload:
        detached = await billing_profiles.delete_profile(info.context.principal, node_uuid(id, TYPE_NAME))
        return BillingProfileDeleted(deleted_id=id, detached_managed_accounts=detached)

    @mutation(
        description="Upload a logo (PNG or JPEG, judged by content; at most "
        f"{billing_profiles.MAX_LOGO_BYTES // 1024} KiB and {billing_profiles.MAX_LOGO_SIDE} "
        "pixels a side), sent as a "
        "GraphQL multipart request. With applyToAllProfiles every profile of the organization "
        "gets it, so it is uploaded only once.",
        scopes=OWNERS,
    )
    async def set_billing_profile_logo(
        self, info: Info, id: strawberry.ID,
        file: Annotated[Upload, strawberry.argument(description="The image, as a multipart file part.")],
        apply_to_all_profiles: Annotated[
            bool | None,
            strawberry.argument(description="Also put this logo on every other profile (null: no)."),
        ] = False,
    ) -> SetBillingProfileLogoPayload:
        # strawberry types an `Upload` as bytes; over ASGI it is Starlette's file.
        upload = cast(UploadFile, file)
        # One byte past the limit is enough to know it is too big; never read more.
        data = await upload.read(billing_profiles.MAX_LOGO_BYTES + 1)
        rows = await billing_profiles.set_logo(
            info.context.principal, node_uuid(id, TYPE_NAME), data, bool(apply_to_all_profiles)
        )
        profiles = [BillingProfile.from_model(row) for row in rows]
        return BillingProfileLogoSet(billing_profile=profiles[0], billing_profiles=profiles)

    @mutation(description="Remove a billing profile's logo.", scopes=OWNERS,)
    async def remove_billing_profile_logo(
        self, info: Info, id: strawberry.ID
    ) -> RemoveBillingProfileLogoPayload:
        row = await billing_profiles.remove_logo(info.context.principal, node_uuid(id, TYPE_NAME))
        return _saved(row)
