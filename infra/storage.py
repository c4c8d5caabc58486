"""Files the product keeps (invoice and credit note PDFs, exports, cost deliveries), addressed by
relative paths stored in the database, in one store: the local folder STORAGE_DIR by default, or
the bucket or container STORAGE_URL names (`s3://bucket/prefix`, `az://container/prefix`,
`gs://bucket/prefix`), so that web processes and workers on other machines share them.

Every kind of store is reached through obstore, the library the cost sources read their buckets
with: a local folder is its `LocalStore`. A write is atomic (a local file is written aside and
renamed; an object is visible once its upload completed), large ones go up in parts, and reads
stream. A store's error is told as `StorageUnavailable`, naming its kind only: the library's text
may hold a URL with a SAS token or a request's headers.

Nothing else opens a stored file: callers pass relative paths; the one local path given out is a
delivery part's (`local_copy`), which is the stored file itself for the local folder and a
download into the caller's folder for a bucket."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import AzureStore, GCSStore, LocalStore, S3Store

from infra.settings import Settings

if TYPE_CHECKING:  # the configuration's types exist in obstore's stubs only
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, RetryConfig, S3Config

Store = LocalStore | S3Store | AzureStore | GCSStore

# Reads stream in chunks of this size; uploads of a stream go up in parts of this size.
CHUNK_BYTES = 8 << 20
SCHEMES = ("s3", "az", "gs")


class StorageUnavailable(Exception):
    """The store did not do what was asked (unreachable, refused the credentials, no bucket)."""


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the store's root
    size: int
    modified: datetime


# --------------------------------------------------------------------------- the store


def client_options(timeout_seconds: float, endpoint: str = "") -> ClientConfig:
    """HTTP options of an object store's client: a timeout per answer, plain HTTP only for an
    endpoint that asks for it (an emulator, a store on a private network)."""
    timeout = timedelta(seconds=timeout_seconds)
    options: ClientConfig = {"timeout": timeout, "connect_timeout": min(timeout, timedelta(seconds=10))}
    if endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


def retry_config(timeout_seconds: float, retries: int = 2) -> RetryConfig:
    return {
        "max_retries": retries,
        "retry_timeout": timedelta(seconds=timeout_seconds),
        "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=5), "base": 2},
    }


def azure_endpoint(endpoint: str, account: str) -> str:
    """An Azure endpoint whose host does not name the account (another cloud's gateway, an
    emulator) addresses the account by path, as Azurite does: `<endpoint>/<account>`."""
    host = urlsplit(endpoint).hostname or ""
    return endpoint if host.startswith(f"{account}.") else f"{endpoint.rstrip('/')}/{account}"


def location(url: str) -> tuple[str, str, str]:
    """STORAGE_URL as (scheme, bucket or container, prefix); ValueError when it is none of
    `s3://`, `az://`, `gs://` with a bucket."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise ValueError("STORAGE_URL is s3://bucket/prefix, az://container/prefix or gs://bucket/prefix")
    return parts.scheme, parts.netloc, parts.path.strip("/")


def store(settings: Settings) -> Store:
    """The settings' store, made once per configuration (a client keeps its connections)."""
    secret = settings.storage_secrets()
    return _store(
        settings.storage_url,
        str(settings.storage_path.resolve()),
        settings.storage_endpoint_url,
        settings.storage_region,
        settings.storage_azure_account,
        settings.storage_timeout_seconds,
        secret,
    )


@lru_cache(maxsize=8)
def _store(url: str, root: str, endpoint: str, region: str, account: str, timeout: float, secret: tuple[str, str, str, str, str]) -> Store:
    if not url:
        return LocalStore(root, mkdir=True, automatic_cleanup=True)
    scheme, bucket, prefix = location(url)
    access_key_id, secret_access_key, account_key, sas_token, service_account_key = secret
    options, retry = client_options(timeout, endpoint), retry_config(timeout)
    if scheme == "s3":
        s3: S3Config = {"region": region or "us-east-1"}
        if access_key_id:
            s3["access_key_id"], s3["secret_access_key"] = access_key_id, secret_access_key
        if endpoint:
            # MinIO, Ceph, R2 and emulators are addressed by path, not by a bucket's host name.
            s3["endpoint"], s3["virtual_hosted_style_request"] = endpoint, False
        return S3Store(bucket, prefix=prefix or None, config=s3, client_options=options, retry_config=retry)
    if scheme == "az":
        azure: AzureConfig = {"account_name": account}
        if endpoint:
            azure["endpoint"] = azure_endpoint(endpoint, account)
        if sas_token:
            azure["sas_key"] = sas_token
        elif account_key:
            azure["account_key"] = account_key
        return AzureStore(bucket, prefix=prefix or None, config=azure, client_options=options, retry_config=retry)
    gcs: GCSConfig = {}
    if service_account_key or endpoint:
        key = json.loads(service_account_key or "{}")
        if endpoint:  # an emulator or a gateway: requests go unsigned, a Google token to Google only
            key.update(gcs_base_url=endpoint, disable_oauth=True)
        gcs["service_account_key"] = json.dumps(key)
    return GCSStore(bucket, prefix=prefix or None, config=gcs, client_options=options, retry_config=retry)


def describe(settings: Settings) -> str:
    """Where files are kept, for messages: the folder or the URL (which holds no secret)."""
    return settings.storage_url or str(settings.storage_path)


def _checked(relative: str) -> str:
    """A stored path as the store takes it; one that could leave the store's root is refused."""
    pieces = PurePosixPath(relative).parts
    if not pieces or relative.startswith("/") or any(piece in (".", "..") for piece in pieces) or "\\" in relative:
        raise ValueError(f"{relative!r} is outside the storage folder")
    return "/".join(pieces)


class _Failed:
    """Turns the store's errors into `FileNotFoundError` (nothing there) or `StorageUnavailable`."""

    def __init__(self, relative: str = ""):
        self.relative = relative

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        if isinstance(error, NotFoundError) or isinstance(error, FileNotFoundError):
            raise FileNotFoundError(f"{self.relative} is not in storage") from None
        if isinstance(error, (BaseError, OSError, TimeoutError)):
            raise StorageUnavailable(f"the file store failed ({type(error).__name__})") from None


# --------------------------------------------------------------------------- writing


def save(settings: Settings, relative: str, data: bytes) -> str:
    """Write atomically and return the SHA-256 of the data."""
    with _Failed(relative):
        obstore.put(store(settings), _checked(relative), data, chunk_size=CHUNK_BYTES)
        if not settings.storage_url:
            # On disk before the row naming it commits: a crash must not leave an empty file behind it.
            descriptor = os.open(settings.storage_path.resolve() / _checked(relative), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    return hashlib.sha256(data).hexdigest()


async def save_stream(settings: Settings, relative: str, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
    """Write a stream atomically, in parts of `CHUNK_BYTES` (a multipart upload to a bucket),
    never holding it whole; returns its size and SHA-256. When `chunks` raises, nothing is kept."""
    digest, size = hashlib.sha256(), 0
    refused: list[BaseException] = []

    async def counted() -> AsyncIterator[bytes]:
        nonlocal size
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        except BaseException as error:  # the caller's own (a limit passed): raised as it is, below
            refused.append(error)
            raise

    try:
        with _Failed(relative):
            await obstore.put_async(store(settings), _checked(relative), counted(), chunk_size=CHUNK_BYTES, max_concurrency=4)
    except BaseException:
        if refused:
            raise refused[0] from None
        raise
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- reading


def load(settings: Settings, relative: str) -> bytes:
    """A stored file whole (a PDF to attach or to embed an e-invoice in); FileNotFoundError
    when it is not there."""
    with _Failed(relative):
        return bytes(obstore.get(store(settings), _checked(relative)).bytes())


def exists(settings: Settings, relative: str) -> bool:
    """Whether a file is stored at `relative` (its metadata only is read)."""
    try:
        with _Failed(relative):
            obstore.head(store(settings), _checked(relative))
    except FileNotFoundError:
        return False
    return True


async def stream(settings: Settings, relative: str) -> tuple[int, AsyncIterator[bytes]]:
    """A stored file's size and its bytes, a chunk at a time; FileNotFoundError when it is not there."""
    with _Failed(relative):
        result = await obstore.get_async(store(settings), _checked(relative))

    async def chunks() -> AsyncIterator[bytes]:
        with _Failed(relative):
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)

    return result.meta["size"], chunks()


async def local_copy(settings: Settings, relative: str, folder: Path) -> Path:
    """A stored file as a local file to read: the file itself in the local folder; in a
    bucket, a download into `folder` (the caller removes it)."""
    if not settings.storage_url:
        return settings.storage_path.resolve() / _checked(relative)
    target = folder / _checked(relative)
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    _, chunks = await stream(settings, relative)
    with target.open("wb") as handle:
        async for chunk in chunks:
            await asyncio.to_thread(handle.write, chunk)
    return target


def zipped(settings: Settings, files: Iterable[tuple[str, str]]) -> bytes:
    """A zip of stored files: (name in the archive, stored path) each. PDFs are compressed
    already: stored, not deflated again."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, relative in files:
            archive.writestr(name, load(settings, relative))
    return buffer.getvalue()


def listed(settings: Settings, folder: str) -> list[StoredFile]:
    """The files under a stored folder, at any depth (none when it is not there)."""
    found: list[StoredFile] = []
    try:
        with _Failed(folder):
            for batch in obstore.list(store(settings), prefix=f"{_checked(folder)}/", chunk_size=1000):
                found.extend(StoredFile(meta["path"], meta["size"], meta["last_modified"]) for meta in batch)
    except FileNotFoundError:
        return []
    return found


def used_bytes(settings: Settings, relative: str) -> int:
    """The bytes of the files under a stored folder (0 when it is not there)."""
    return sum(file.size for file in listed(settings, relative))


# --------------------------------------------------------------------------- removing


def remove(settings: Settings, relative: str) -> None:
    """Remove a stored folder (or file) and all it holds; nothing when it is not there."""
    if not settings.storage_url:
        # Folders too: an upload refused midway leaves its part's folder behind, empty.
        path = settings.storage_path.resolve() / _checked(relative)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    paths = [file.path for file in listed(settings, relative)] or [_checked(relative)]
    with contextlib.suppress(FileNotFoundError), _Failed(relative):
        for start in range(0, len(paths), 1000):
            obstore.delete(store(settings), paths[start : start + 1000])


def purge(settings: Settings, folder: str, older_than: datetime) -> int:
    """Remove the entries of `folder/*/*` (one folder per organization, then one per stored
    item) whose newest file was written before `older_than`; returns how many were removed."""
    entries: dict[str, list[StoredFile]] = {}
    depth = len(PurePosixPath(_checked(folder)).parts) + 2
    for file in listed(settings, folder):
        entry = "/".join(PurePosixPath(file.path).parts[:depth])
        entries.setdefault(entry, []).append(file)
    old = [files for files in entries.values() if max(file.modified for file in files) < older_than]
    with _Failed(folder):
        for files in old:
            obstore.delete(store(settings), [file.path for file in files])
    return len(old)


# --------------------------------------------------------------------------- moving to a bucket


@dataclass(frozen=True)
class Copied:
    """What `copy_folder` did: files and bytes copied, and the paths whose copy read back
    with another SHA-256 (none when all went well)."""

    files: int
    bytes: int
    mismatched: tuple[str, ...]


async def copy_folder(settings: Settings, folder: Path, progress: Any = None, at_once: int = 8) -> Copied:
    """Every file under a local storage folder into the STORAGE_URL store, under the same
    relative path; each is then read back from the store and its SHA-256 compared with the
    local file's. `progress`, if given, is called with the bytes of each file done."""
    if not settings.storage_url:
        raise ValueError("STORAGE_URL is unset: there is no bucket to copy into.")
    root, files = await asyncio.to_thread(_files_under, folder)
    turns = asyncio.Semaphore(at_once)

    async def one(path: Path) -> tuple[str, int, bool]:
        relative = _checked(path.relative_to(root).as_posix())
        async with turns:
            local = await asyncio.to_thread(_sha256_of, path)
            with _Failed(relative):
                await obstore.put_async(store(settings), relative, path, chunk_size=CHUNK_BYTES)
            size, chunks = await stream(settings, relative)
            digest = hashlib.sha256()
            async for chunk in chunks:
                digest.update(chunk)
        if progress is not None:
            progress(size)
        return relative, size, digest.hexdigest() == local

    done = await asyncio.gather(*(one(path) for path in files))
    return Copied(len(done), sum(size for _, size, _ in done), tuple(relative for relative, _, same in done if not same))


def _files_under(folder: Path) -> tuple[Path, list[Path]]:
    root = folder.resolve()
    return root, sorted(path for path in root.rglob("*") if path.is_file())


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


DELIVERIES_FOLDER = "cost-deliveries"


def delivery_folder(organization_id: Any) -> str:
    """Where an organization's uploaded cost deliveries are kept, one folder each."""
    return f"{DELIVERIES_FOLDER}/{organization_id}"


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
