"""Files the product keeps (invoice PDFs, exports), under STORAGE_DIR, addressed by relative
paths stored in the database."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

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
