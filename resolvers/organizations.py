"""The organization's settings."""

from __future__ import annotations

import strawberry

from models import organizations
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.permissions import OWNERS
from schema.organizations import (
    Organization,
    OrganizationUpdated,
    UpdateOrganizationInput,
    UpdateOrganizationPayload,
    organization_changes,
)


@strawberry.type
class Mutation:
    @mutation(
        description="Change your organization's settings; only the fields given change, and a "
        "refused value changes none.",
        scopes=OWNERS,
    )
    async def update_organization(self, info: Info, input: UpdateOrganizationInput) -> UpdateOrganizationPayload:
        organization = await organizations.update_organization(info.context.authenticated(), organization_changes(input))
        return OrganizationUpdated(organization=Organization.from_model(organization))
