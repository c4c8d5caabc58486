"""Files the product keeps (invoice PDFs, exports), under STORAGE_DIR, addressed by relative
paths stored in the database."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infra.settings import Settings


def _resolve(settings: Settings, relative: str) -> Path:
    root = settings.storage_path.resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside the storage folder")
    return path


def save(settings: Settings, relative: str, data: bytes) -> str:
    """Write atomically (temporary file, then rename) and return the SHA-256 of the data."""
    path = _resolve(settings, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)
    return hashlib.sha256(data).hexdigest()


def load(settings: Settings, relative: str) -> bytes:
    return _resolve(settings, relative).read_bytes()


def zipped(settings: Settings, files: Iterable[tuple[str, str]]) -> bytes:
    """A zip of stored files: (name in the archive, stored path) each. PDFs are compressed
    already: stored, not deflated again."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, relative in files:
            archive.write(_resolve(settings, relative), arcname=name)
    return buffer.getvalue()


def path(settings: Settings, relative: str) -> Path:
    """Where a stored file is on disk, for streaming it."""
    return _resolve(settings, relative)


def purge(settings: Settings, folder: str, older_than: datetime) -> int:
    """Remove the entries of `folder/*/*` (one folder per organization, then one per stored
    item) last changed before `older_than`; returns how many were removed."""
    root = _resolve(settings, folder)
    removed = 0
    for entry in root.glob("*/*"):
        if entry.stat().st_mtime < older_than.timestamp():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    return removed


DELIVERIES_FOLDER = "cost-deliveries"


def delivery_folder(organization_id: Any) -> str:
    """Where an organization's uploaded cost deliveries are kept, one folder each."""
    return f"{DELIVERIES_FOLDER}/{organization_id}"


def used_bytes(settings: Settings, relative: str) -> int:
    """The bytes of the files under a stored folder (0 when it is not there)."""
    root = _resolve(settings, relative)
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.is_dir() else 0


def purge_deliveries(settings: Settings, now: datetime | None = None) -> int:
    """Remove uploaded cost deliveries kept longer than DELIVERY_RETENTION_DAYS; returns how
    many. Their imports' records and cost rows stay: only the files go."""
    older_than = (now or datetime.now(UTC)) - timedelta(days=settings.delivery_retention_days)
    return purge(settings, DELIVERIES_FOLDER, older_than)


def safe_name(filename: str | None, default: str = "upload") -> str:
    """A client's file name as one harmless path segment: its last component, with anything
    but letters, digits, dot, dash and underscore replaced."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return name[:200] or default


def safe_relative(filename: str | None, default: str = "upload") -> str:
    """A client's file name that may hold folders (`BILLING_PERIOD=2025-10/part-1.csv`) as a
    harmless relative path: each folder as `safe_name` makes it (`=` kept), `.` and `..` left
    out. A name to match and show, never a path to open."""
    pieces = [
        re.sub(r"[^A-Za-z0-9._=-]", "_", piece).lstrip(".")[:200]
        for piece in (filename or "").replace("\\", "/").split("/")
        if piece not in ("", ".", "..")
    ]
    return "/".join(piece for piece in pieces if piece)[-1000:].lstrip("/") or default


def remove(settings: Settings, relative: str) -> None:
    """Remove a stored folder (or file) and all it holds; nothing when it is not there."""
    path = _resolve(settings, relative)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
