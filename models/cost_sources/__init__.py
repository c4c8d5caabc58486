"""Cost sources: the buckets where an organization's cloud cost exports land, read by a
scheduled sync (the reading itself is `infra.object_stores`; the sync is `jobs.cost_sources`).

`tables`: the table and who sees it; `locations`: where a source is, per kind of store;
`credentials`: sealed at rest, shown as a hint only; `operations`: creating and changing one;
`discovery`: the deliveries of a listing; `syncs`: what a sync leaves, and when the next is due."""

from models.cost_sources.credentials import CREDENTIAL_FIELD, Credentials, credentials_of
from models.cost_sources.discovery import (
    Delivery,
    StoredObject,
    already_taken,
    discover,
    missing_parts,
    months_found,
    newest,
    object_key,
    still_written,
)
from models.cost_sources.locations import location_of
from models.cost_sources.operations import SourceInput, create_source, delete_source, owned_source, update_source
from models.cost_sources.syncs import due_sources, imports_of, record_sync
from models.cost_sources.tables import (
    AVAILABLE_KINDS,
    CostSource,
    CostSourceKind,
    CostSourceState,
    CostSourceUnreadable,
    SourceProblem,
    visible_sources,
)

__all__ = [
    "AVAILABLE_KINDS", "CREDENTIAL_FIELD", "CostSource", "CostSourceKind", "CostSourceState", "CostSourceUnreadable",
    "Credentials", "Delivery", "SourceInput", "SourceProblem", "StoredObject", "already_taken", "create_source",
    "credentials_of", "delete_source", "discover", "due_sources", "imports_of", "location_of", "missing_parts",
    "months_found", "newest", "object_key", "owned_source", "record_sync", "still_written", "update_source",
    "visible_sources",
]
