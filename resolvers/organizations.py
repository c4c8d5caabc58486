"""The organization's settings."""

from __future__ import annotations

import strawberry

from models import organizations
from schema.context import Info
from schema.mutations import mutation
from schema.organizations import (
    Organization,
    OrganizationUpdated,
    UpdateOrganizationInput,
    UpdateOrganizationPayload,
    organization_changes,
)
from schema.permissions import OWNERS


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
