"""How a cost delivery is laid out: the part files it holds, found through its manifests and
unpacked from its zips within bounds.

A delivery is what was sent: part files, a manifest with its parts, a folder (an export's
top folder, a billing period's folder, a run's folder) or a zip of any of these, or the path
of an AWS export's manifest (its parts are then looked for under the export's `data/`).

Manifests say which files are the delivery: AWS Data Exports' `<export>-Manifest.json`
(`dataFiles`, full S3 URIs; the legacy Cost and Usage Report's `reportKeys`) and Azure Cost
Management's `manifest.json` (`blobs` with `blobName`). An export in "create new" mode keeps
each run (execution) in a folder of its own under the billing period, side by side: the
latest manifest of a period says which run is current, and a folder of several runs without
one is refused, since adding them up would bill the month several times.

Files sent as themselves must each be named by the manifest; files found in a folder or zip
that it does not name (earlier runs, other exports) are left alone. Zips are unpacked once
(never a zip in a zip) and the bounds are checked on the bytes as they are written, whatever
the archive declares.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from models.costs.sources import Part
from models.errors import CostFileRejected

_MANIFEST_SUFFIX = "manifest.json"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_CHUNK = 1 << 20
# A billing period's folder: AWS's `BILLING_PERIOD=2025-10`, Azure's `20251001-20251031`.
_PERIOD_FOLDER = re.compile(r"^(BILLING_PERIOD=\d{4}-\d{2}|\d{8}-\d{8})$")


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """Bounds on what a delivery's zips may unpack to: bytes in all, entries in all, and
    bytes per compressed byte, of each entry and of each zip as a whole (checked once past
    `ratio_from` bytes, so that small files that compress well are never refused; the whole
    zip's, so that many small entries, or entries sharing their compressed bytes, add up)."""

    extracted_bytes: int
    entries: int
    ratio: int
    ratio_from: int = 1 << 20


@dataclass(slots=True)
class _File:
    path: Path
    label: str  # its name in messages
    relative: tuple[str, ...]  # its path within what was sent, matched against manifest keys
    sent: bool  # sent as itself, not found in a folder or a zip


@dataclass(slots=True)
class _Manifest:
    file: _File
    keys: list[str]
    export: tuple[str, ...]  # the folders its files are in, runs left out: one export's period
    order: tuple[str, float] = field(default=("", 0.0))


def delivery_parts(
    sources: Iterable[Path | tuple[Path, str]], workdir: Path, limits: DeliveryLimits,
) -> list[Part]:
    """The part files of a delivery, in order: each source a path, or a file's path and the
    name it was sent under (a relative path, matched against manifest keys like a folder's
    files). Zips are unpacked into `workdir`. Raises
    `CostFileRejected` for a delivery without a file, a manifest naming a file that is not
    there or one file twice, a file sent that its manifest does not name, a folder of several
    runs without a manifest, and a zip that cannot be read or passes the limits."""
    unpacker = _Unpacker(workdir, limits)
    files: list[_File] = []
    for source in sources:
        if isinstance(source, tuple):
            files.extend(_source_files(Path(source[0]), unpacker, source[1]))
        else:
            files.extend(_source_files(Path(source), unpacker))
    manifests = [file for file in files if _is_manifest(file.path)]
    data = [file for file in files if not _is_manifest(file.path)]
    chosen = _latest(_read_manifest(file) for file in manifests)
    if chosen:
        parts = _named(chosen, data)
    else:
        _refuse_several_runs(data)
        parts = data
    seen: dict[Path, str] = {}
    for part in parts:
        key = part.path.resolve()
        if key in seen:
            raise CostFileRejected(f"{part.label} is in the delivery twice", file=part.label)
        seen[key] = part.label
    result = [Part(part.path, part.label, _kind(part.path)) for part in parts]
    if not result:
        raise CostFileRejected("the delivery holds no cost file")
    return result


def manifest_keys(path: Path, name: str) -> list[str]:
    """The data files an export's manifest (stored at `path`, known as `name`) names, as
    written in it (S3 URIs, blob names). Raises `CostFileRejected` when it is not a manifest."""
    return _read_manifest(_File(path, name, tuple(PurePosixPath(name).parts) or (path.name,), sent=True)).keys


def _kind(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(4)
    if head.startswith(b"\x1f\x8b"):
        return "csv.gz"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head == b"PAR1":
        return "parquet"
    return "csv"


def _is_manifest(path: Path) -> bool:
    return path.name.lower().endswith(_MANIFEST_SUFFIX)


# --------------------------------------------------------------------------- what was sent


def _source_files(source: Path, unpacker: _Unpacker, name: str = "") -> list[_File]:
    relative = tuple(piece for piece in PurePosixPath(name).parts if piece not in ("/", ".", "..")) or (source.name,)
    label = "/".join(relative)
    if source.is_dir():
        return _folder_files(source, label, unpacker)
    if not source.is_file():
        raise CostFileRejected(f"{label} is not in the delivery", file=label)
    if _is_manifest(source):
        return [_File(source, label, relative, sent=True), *_beside_manifest(source, unpacker)]
    if _kind(source) == "zip":
        return unpacker.unpack(source, label)
    return [_File(source, label, relative, sent=True)]


def _beside_manifest(manifest: Path, unpacker: _Unpacker) -> list[_File]:
    """Where a manifest sent by its path finds its parts: an AWS export's `data/` folder
    (the manifest is under the export's `metadata/`), else the manifest's own folder (an
    Azure run keeps its manifest beside its parts). A manifest uploaded alone finds nothing."""
    for folder in manifest.parents:
        if folder.name == "metadata" and (folder.parent / "data").is_dir():
            data = folder.parent / "data"
            return [
                _File(file.path, file.label, ("data", *file.relative), sent=False)
                for file in _folder_files(data, "data", unpacker)
            ]
    # Only the files right beside it, as they are: a manifest saved in a busy folder does not
    # make every zip and folder around it part of the delivery.
    return [
        _File(path, str(PurePosixPath(manifest.parent.name, path.name)), (path.name,), sent=False)
        for path in sorted(manifest.parent.iterdir())
        if path.is_file() and path != manifest and not path.name.startswith(".") and not _is_manifest(path)
    ]


def _folder_files(folder: Path, label: str, unpacker: _Unpacker) -> list[_File]:
    """The files of a folder (hidden ones left out) and of the zips in it, none of them sent
    as itself."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if not path.is_file() or any(piece.startswith(".") for piece in relative):
            continue
        name = str(PurePosixPath(label, *relative))
        if not _is_manifest(path) and _kind(path) == "zip":
            found.extend(unpacker.unpack(path, name))
        else:
            found.append(_File(path, name, relative, sent=False))
    return found


# --------------------------------------------------------------------------- manifests


def _read_manifest(file: _File) -> _Manifest:
    """The data files a manifest names, and the export and period they are of."""
    try:
        with file.path.open(encoding="utf-8-sig") as stream:
            content = json.load(stream)
        if not isinstance(content, dict):
            raise ValueError
        if "blobs" in content:  # Azure Cost Management
            keys: Any = [blob["blobName"] for blob in content["blobs"]]
            run = content.get("runInfo") or {}
            submitted, execution = str(run.get("submittedTime") or ""), str(run.get("runId") or "")
        else:  # AWS Data Exports, or the legacy Cost and Usage Report
            keys = content.get("dataFiles", content.get("reportKeys"))
            submitted, execution = "", str(content.get("executionId") or "")
        if not isinstance(keys, list) or not all(isinstance(key, str) and key.strip() for key in keys):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise CostFileRejected(
            "the manifest is not an export manifest (JSON with its dataFiles, or Azure's blobs)",
            file=file.label, name_file=True,
        ) from None
    folders = {_without_run(_key_parts(key)[:-1], execution) for key in keys}
    modified = file.path.stat().st_mtime
    return _Manifest(file, keys, tuple(sorted("/".join(folder) for folder in folders)), (submitted, modified))


def _key_parts(key: str) -> tuple[str, ...]:
    """A manifest key's path: an S3 URI's bucket and key, or a blob's name."""
    return tuple(piece for piece in PurePosixPath(key.split("://", 1)[-1]).parts if piece not in ("/", "."))


def _without_run(folders: tuple[str, ...], execution: str) -> tuple[str, ...]:
    """The folders with the run's own folder left out (the one after the billing period's,
    or the one named as the run), so that runs of one period compare equal."""
    for index, piece in enumerate(folders):
        if _PERIOD_FOLDER.match(piece) and index + 1 < len(folders):
            return folders[: index + 1] + folders[index + 2:]
    return tuple(piece for piece in folders if piece != execution) if execution else folders


def _latest(manifests: Iterable[_Manifest]) -> list[_Manifest]:
    """One manifest per export and period: the latest run's (Azure's submittedTime, else the
    file's time, which a zip keeps)."""
    by_export: dict[tuple[str, ...], _Manifest] = {}
    for manifest in manifests:
        current = by_export.get(manifest.export)
        if current is None or manifest.order > current.order:
            by_export[manifest.export] = manifest
    return sorted(by_export.values(), key=lambda manifest: manifest.file.label)


def _named(manifests: list[_Manifest], data: list[_File]) -> list[_File]:
    """The files the manifests name, in their order; each once, each there, and every file
    sent as itself named (but for another run of a period whose latest run is taken)."""
    parts: list[_File] = []
    named: set[int] = set()
    for manifest in manifests:
        for key in manifest.keys:
            found = _find(data, key, manifest.file.label)
            if id(found) in named:
                raise CostFileRejected(
                    f"the manifest names {found.relative[-1]} twice", file=manifest.file.label, name_file=True
                )
            named.add(id(found))
            parts.append(found)
    taken = {run for manifest in manifests for key in manifest.keys if (run := _run_of(_key_parts(key)[:-1]))}
    for file in data:
        if file.sent and id(file) not in named:
            run = _run_of(file.relative[:-1])
            if run and run[1] and any(period == run[0] and name != run[1] for period, name in taken):
                continue  # another run of a period whose latest run was taken: superseded
            raise CostFileRejected(
                f"{file.label} is not one of the files its manifest names", file=file.label, name_file=True
            )
    return parts


def _find(files: list[_File], key: str, label: str) -> _File:
    """The file a manifest key names: the one whose path within the delivery ends the key's
    (or the key ends its), the longest such match; a different run's file of the same name
    never matches."""
    wanted = _key_parts(key)
    best: list[_File] = []
    best_length = 0
    for file in files:
        length = min(len(file.relative), len(wanted))
        if length == 0 or file.relative[-length:] != wanted[-length:]:
            continue
        if length > best_length:
            best, best_length = [file], length
        elif length == best_length:
            best.append(file)
    name = wanted[-1] if wanted else key
    if not best:
        raise CostFileRejected(f"the manifest names {name}, which is not in the delivery", file=label, name_file=True)
    if len(best) > 1:
        raise CostFileRejected(
            f"the manifest names {name}, and {len(best)} files of the delivery could be it; send them "
            "with their folders", file=label, name_file=True,
        )
    return best[0]


def _run_of(folders: tuple[str, ...]) -> tuple[str, str] | None:
    """The billing period's folder and the run's folder under it ("" for none) of a file's
    folders; None when no billing period's folder is among them."""
    for index in range(len(folders) - 1, -1, -1):
        if _PERIOD_FOLDER.match(folders[index]):
            return folders[index], folders[index + 1] if index + 1 < len(folders) else ""
    return None


def _refuse_several_runs(files: list[_File]) -> None:
    """Without a manifest, a billing period's folder must hold one run, not several."""
    runs: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for file in files:
        folders = PurePosixPath(file.label).parts[:-1]
        period = max((index for index, piece in enumerate(folders) if _PERIOD_FOLDER.match(piece)), default=None)
        if period is None:
            continue
        run = folders[period + 1] if period + 1 < len(folders) else ""
        runs[folders[: period + 1]].add(run)
    for where, names in runs.items():
        if len(names) > 1:
            raise CostFileRejected(
                f"{'/'.join(where)} holds {len(names)} runs of the export ({', '.join(sorted(n or '(none)' for n in names))}); "
                "without its manifest nothing says which one is current: send the manifest, or one run's files",
                file="/".join(where),
            )


# --------------------------------------------------------------------------- zips


class _Unpacker:
    """Unpacks a delivery's zips into `workdir`, counting entries and bytes over all of them."""

    def __init__(self, workdir: Path, limits: DeliveryLimits):
        self.workdir = workdir
        self.limits = limits
        self.entries = 0
        self.written = 0
        self.zips = 0
        self.zip_size = self.zip_written = 0

    def unpack(self, path: Path, label: str) -> list[_File]:
        self.zips += 1
        target = self.workdir / f"zip-{self.zips}"
        target.mkdir()
        try:
            files = self._unpack(path, target, label)
        except CostFileRejected:
            shutil.rmtree(target, ignore_errors=True)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError, ValueError):
            shutil.rmtree(target, ignore_errors=True)
            raise CostFileRejected(f"{label} is not a zip file that can be read", file=label) from None
        return files

    def _unpack(self, path: Path, target: Path, label: str) -> list[_File]:
        files = []
        self.zip_size, self.zip_written = path.stat().st_size, 0
        with zipfile.ZipFile(path) as archive:
            entries = [entry for entry in archive.infolist() if not entry.is_dir()]
            self.entries += len(entries)
            if self.entries > self.limits.entries:
                raise CostFileRejected(
                    f"{label} holds more than {self.limits.entries:,} files; send fewer at a time", file=label
                )
            names: set[tuple[str, ...]] = set()
            for entry in entries:
                name = tuple(piece for piece in PurePosixPath(entry.filename.replace("\\", "/")).parts if piece != ".")
                if not name or ".." in name or name[0] == "/":
                    raise CostFileRejected(f"{label} holds a file outside its folder ({entry.filename!r})", file=label)
                if name in names:
                    raise CostFileRejected(f"{label} holds {'/'.join(name)} twice", file=label)
                names.add(name)
                if entry.flag_bits & 0x1:
                    raise CostFileRejected(
                        f"{label} holds an encrypted file ({'/'.join(name)}); send it unencrypted", file=label
                    )
                if name[-1].lower().endswith(".zip"):
                    raise CostFileRejected(f"{label} holds another zip; send its files instead", file=label)
                destination = target.joinpath(*name)
                destination.parent.mkdir(parents=True, exist_ok=True)
                self._write(archive, entry, destination, label)
                with contextlib.suppress(ValueError, OverflowError, OSError):
                    stamp = datetime(*entry.date_time).timestamp()
                    os.utime(destination, (stamp, stamp))
                if any(piece.startswith(".") for piece in name):
                    continue
                files.append(_File(destination, str(PurePosixPath(label, *name)), name, sent=False))
        return files

    def _write(self, archive: zipfile.ZipFile, entry: zipfile.ZipInfo, destination: Path, label: str) -> None:
        limits = self.limits
        written = 0
        with archive.open(entry) as packed, destination.open("wb") as unpacked:
            while chunk := packed.read(_CHUNK):
                if written == 0 and chunk.startswith(_ZIP_MAGIC):
                    raise CostFileRejected(f"{label} holds another zip; send its files instead", file=label)
                written += len(chunk)
                self.written += len(chunk)
                self.zip_written += len(chunk)
                if self.written > limits.extracted_bytes:
                    raise CostFileRejected(
                        f"{label} unpacks to more than {limits.extracted_bytes:,} bytes; send its files instead",
                        file=label,
                    )
                if (written > limits.ratio_from and written > limits.ratio * max(entry.compress_size, 1)) or (
                    self.zip_written > limits.ratio_from and self.zip_written > limits.ratio * self.zip_size
                ):
                    raise CostFileRejected(
                        f"{label} unpacks to more than {limits.ratio} times its size; send its files instead",
                        file=label,
                    )
                unpacked.write(chunk)


__all__ = ["DeliveryLimits", "delivery_parts", "manifest_keys"]
