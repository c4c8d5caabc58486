"""The deliveries a cost source holds, decided from a listing of its objects.

An AWS Data Exports delivery is its manifest
(`<export>/metadata/BILLING_PERIOD=YYYY-MM/[<run>/]<export>-Manifest.json`, written once all its
data files are); an Azure Cost Management one is its run's manifest
(`<export>/<YYYYMMDD-YYYYMMDD>/<run id>/manifest.json`); each the latest of its export and billing
period. A manifest already imported under the same key and ETag is skipped without reading
anything; one naming a data file not there yet is a delivery still being written, left for the
next sync. Exports without a manifest (Google Cloud's from BigQuery, OCI's reports copied into
months) are a set of files in a billing month's folder (`BILLING_PERIOD=YYYY-MM/`, not an AWS
export's `data/` one), known by their names and ETags together, and taken once none of them
changed for COST_SOURCE_QUIET_MINUTES (a set still being written changes)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from tortoise.expressions import Q

from models.cost_sources.tables import CostSource
from models.costs.importer import INTERNAL_ERROR
from models.costs.records import CostImport, CostImportState

_MANIFEST = re.compile(r"(^|/)(?P<export>[^/]*)/metadata/BILLING_PERIOD=(?P<period>\d{4}-\d{2})/(?:[^/]+/)?[^/]*manifest\.json$", re.I)
_AZURE_MANIFEST = re.compile(
    r"(^|/)(?P<export>[^/]*)/(?P<year>\d{4})(?P<month>\d{2})\d{2}-\d{8}/[^/]+/manifest\.json$", re.I
)
# A month's folder of files without a manifest (Google Cloud's exports), and the files taken from it.
_MONTH_FOLDER = re.compile(r"(^|/)BILLING_PERIOD=(?P<period>\d{4}-\d{2})/(?P<name>[^/]+)$")
_AWS_DATA = re.compile(r"(^|/)data/BILLING_PERIOD=[^/]+/[^/]+$")
_DATA_FILE = re.compile(r"\.(csv|csv\.gz|gz|parquet)$", re.I)


@dataclass(frozen=True)
class StoredObject:
    """An object of a listing: its key, ETag, size and when it was written."""

    key: str
    etag: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Delivery:
    """A delivery found: the manifest of one export's billing period, its latest run; or, for
    a store without manifests, the files of a billing month's folder (`parts`), its `manifest`
    then standing for the set: the folder's key, an ETag of the files' names and ETags, their
    bytes and the newest one's time."""

    export: str
    period: str  # "2025-10"
    manifest: StoredObject
    parts: tuple[StoredObject, ...] = ()


def discover(listing: Iterable[StoredObject]) -> list[Delivery]:
    """The deliveries of a listing, by period then export: the latest manifest of each export
    and billing period (AWS's, Azure's), and the files of each `BILLING_PERIOD=YYYY-MM/` folder
    that is not an AWS export's data folder (its manifest says which of them count)."""
    listing = list(listing)
    latest: dict[tuple[str, str], Delivery] = {}
    for stored in listing:
        found = _MANIFEST.search(stored.key)
        azure = None if found else _AZURE_MANIFEST.search(stored.key)
        if azure:
            found, period = azure, f"{azure['year']}-{azure['month']}"
        elif found:
            period = found["period"]
        else:
            continue
        export = stored.key[: found.start("export")] + found["export"]
        delivery = Delivery(export, period, stored)
        current = latest.get((export, period))
        if current is None or (stored.modified, stored.key) > (current.manifest.modified, current.manifest.key):
            latest[(export, period)] = delivery
    return sorted([*latest.values(), *_file_sets(listing)], key=lambda delivery: (delivery.period, delivery.export))


def _file_sets(listing: Iterable[StoredObject]) -> list[Delivery]:
    folders: dict[str, list[StoredObject]] = {}
    for stored in listing:
        found = _MONTH_FOLDER.search(stored.key)
        if found and _DATA_FILE.search(found["name"]) and stored.size > 0 and not _AWS_DATA.search(stored.key):
            folders.setdefault(stored.key[: found.start("name")], []).append(stored)
    deliveries = []
    for folder, files in folders.items():
        files.sort(key=lambda stored: stored.key)
        digest = hashlib.sha256("\n".join(f"{stored.key}\t{stored.etag}" for stored in files).encode()).hexdigest()
        found = _MONTH_FOLDER.search(files[0].key)
        assert found is not None  # each file was put in its folder by this match
        stands_for = StoredObject(folder, digest[:32], sum(stored.size for stored in files),
                                  max(stored.modified for stored in files))
        deliveries.append(Delivery(folder[: found.start("period")].removesuffix("BILLING_PERIOD=").rstrip("/"),
                                   found["period"], stands_for, tuple(files)))
    return sorted(deliveries, key=lambda delivery: (delivery.period, delivery.export))


def still_written(delivery: Delivery, now: datetime, quiet_minutes: float) -> bool:
    """Whether a set of files without a manifest may still be being written: one of them was
    written less than `quiet_minutes` ago (an export writes its files one after the other)."""
    return bool(delivery.parts) and now - delivery.manifest.modified < timedelta(minutes=quiet_minutes)


async def already_taken(source: CostSource, delivery: Delivery) -> bool:
    """Whether the manifest, as it is (key and ETag), was imported (or is being imported, or
    was refused: the same bytes would be refused again). One stopped by an internal error is
    taken again."""
    return await CostImport.filter(
        Q(state__not=CostImportState.FAILED) | Q(error_message__not=INTERNAL_ERROR),
        cost_source_id=source.id, source_key=delivery.manifest.key, source_etag=delivery.manifest.etag,
    ).exists()


@dataclass(frozen=True)
class MonthFound:
    """What a source holds for one billing month: its deliveries (one per export), how many
    of them are imported as they are, and when the latest was written."""

    period: date
    deliveries: int
    imported: int
    latest_at: datetime


async def months_found(source: CostSource, deliveries: list[Delivery]) -> list[MonthFound]:
    """The deliveries found, per billing month, oldest first."""
    taken = set(await CostImport.filter(cost_source_id=source.id).values_list("source_key", "source_etag"))
    months: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        months.setdefault(delivery.period, []).append(delivery)
    return [
        MonthFound(
            date.fromisoformat(f"{period}-01"), len(found),
            sum((delivery.manifest.key, delivery.manifest.etag) in taken for delivery in found),
            max(delivery.manifest.modified for delivery in found),
        )
        for period, found in sorted(months.items())
    ]


def object_key(data_file: str, bucket: str) -> str | None:
    """The object key a manifest's data file names (an S3 URI of the source's bucket); None
    for a file of another bucket."""
    parts = urlsplit(data_file)
    if parts.scheme == "s3":
        return parts.path.lstrip("/") if parts.netloc == bucket else None
    return data_file.lstrip("/")


def missing_parts(keys: Iterable[str | None], listing: Iterable[StoredObject]) -> list[str]:
    """The data files a manifest names that are not (yet) in the listing."""
    present = {stored.key for stored in listing}
    return [key or "(another bucket)" for key in keys if key is None or key not in present]


def newest(deliveries: Iterable[Delivery]) -> Delivery | None:
    """The delivery written last (None when there is none)."""
    return max(deliveries, key=lambda delivery: delivery.manifest.modified, default=None)
