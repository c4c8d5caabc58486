"""The one place that reaches object stores (cost sources' buckets), through obstore.

Credentials are handed in by `models.cost_sources` and go nowhere but into the store's client;
an error of the store is told in our words (`CostSourceUnreadable` with its problem), never with
the library's message, which may hold a URL, a request id or a header.

A custom endpoint is resolved first and refused when any of its addresses is loopback, private,
link-local or otherwise not public, unless COST_SOURCE_PRIVATE_ENDPOINTS allows it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from infra.settings import Settings
from models.cost_sources import (
    CostSource,
    CostSourceKind,
    CostSourceUnreadable,
    Credentials,
    SourceProblem,
    StoredObject,
)

if TYPE_CHECKING:  # the configuration's types exist in obstore's stubs only
    from obstore.store import ClientConfig, S3Config

log = logging.getLogger(__name__)

_CHUNK = 8 << 20
_LIST_CHUNK = 1000


async def check_endpoint(settings: Settings, endpoint: str) -> None:
    """Refuse an endpoint whose host is, or resolves to, an address that is not public
    (unless the operator allows them), or does not resolve at all."""
    if settings.cost_source_private_endpoints:
        return
    host = urlsplit(endpoint).hostname or ""
    try:
        async with asyncio.timeout(settings.cost_source_timeout_seconds):
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        raise CostSourceUnreadable(
            "The endpoint's host name does not resolve.", SourceProblem.UNREACHABLE, field="endpoint"
        ) from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise CostSourceUnreadable(
                "The endpoint is on a loopback, private or link-local address, which this server does not reach.",
                SourceProblem.ENDPOINT_REFUSED, field="endpoint",
            )


async def open_store(settings: Settings, source: CostSource, credentials: Credentials) -> S3Store:
    """The source's bucket as an obstore store (its prefix is left to the callers, which
    list and read full keys)."""
    if source.kind not in (CostSourceKind.AWS_S3, CostSourceKind.S3_COMPATIBLE):
        raise CostSourceUnreadable(f"{source.kind} sources are not yet available.", SourceProblem.NOT_AVAILABLE, field="kind")
    endpoint = source.endpoint if source.kind == CostSourceKind.S3_COMPATIBLE else settings.aws_s3_endpoint_url
    if source.kind == CostSourceKind.S3_COMPATIBLE:
        await check_endpoint(settings, endpoint)
    timeout = timedelta(seconds=settings.cost_source_timeout_seconds)
    options: ClientConfig = {"timeout": timeout, "connect_timeout": min(timeout, timedelta(seconds=10))}
    if endpoint.startswith("http://"):
        options["allow_http"] = True
    config: S3Config = {
        "access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key,
        "region": source.region or "us-east-1",
    }
    if endpoint:
        config["endpoint"] = endpoint
        # Emulators and most S3-compatible stores are addressed by path, not by a bucket's host name.
        config["virtual_hosted_style_request"] = False
    return S3Store(
        source.bucket, config=config, client_options=options,
        retry_config={
            "max_retries": 2, "retry_timeout": timeout,
            "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=5), "base": 2},
        },
    )


async def list_objects(store: S3Store, prefix: str) -> list[StoredObject]:
    """Every object under the prefix (a folder: `prefix/`), with its ETag, size and time."""
    found: list[StoredObject] = []
    try:
        async for batch in obstore.list(store, prefix=f"{prefix.strip('/')}/" if prefix.strip("/") else None,
                                        chunk_size=_LIST_CHUNK):
            found.extend(
                StoredObject(meta["path"], (meta.get("e_tag") or "").strip('"'), meta["size"], meta["last_modified"])
                for meta in batch
            )
    except (BaseError, OSError, TimeoutError) as error:
        raise _unreadable(error) from None
    return found


async def read_bytes(store: S3Store, key: str, limit: int) -> bytes:
    """A small object (a manifest) whole, refused past `limit` bytes."""
    data = bytearray()
    async for chunk in _stream(store, key):
        data += chunk
        if len(data) > limit:
            raise CostSourceUnreadable(f"{key} is larger than a manifest can be.", SourceProblem.UNREACHABLE)
    return bytes(data)


async def download(store: S3Store, key: str, target: Path) -> int:
    """An object into a file, a chunk at a time (memory stays bounded whatever its size);
    returns its bytes. The disk writes run off the event loop."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as handle:
        async for chunk in _stream(store, key):
            await asyncio.to_thread(handle.write, chunk)
            written += len(chunk)
    return written


async def _stream(store: S3Store, key: str) -> AsyncIterator[bytes]:
    try:
        result = await obstore.get_async(store, key)
        async for chunk in result.stream(min_chunk_size=_CHUNK):
            yield bytes(chunk)
    except NotFoundError:
        raise CostSourceUnreadable(f"{key} is no longer in the bucket.", SourceProblem.UNREACHABLE) from None
    except (BaseError, OSError, TimeoutError) as error:
        raise _unreadable(error) from None


def _unreadable(error: Exception) -> CostSourceUnreadable:
    """The store's error in our words. Its text is read only to tell which it was (obstore
    gives S3's status and code in it); it is logged by kind, never whole."""
    text = str(error)
    if isinstance(error, (PermissionDeniedError, UnauthenticatedError)) or any(
        marker in text for marker in ("403 Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
    ):
        log.info("cost source: access refused")
        return CostSourceUnreadable(
            "The store refused the credentials (unknown key, wrong secret, or no right to list and read the bucket).",
            SourceProblem.ACCESS_DENIED, field="accessKeyId",
        )
    if "NoSuchBucket" in text or isinstance(error, NotFoundError):
        log.info("cost source: bucket not found")
        return CostSourceUnreadable("The bucket does not exist.", SourceProblem.BUCKET_NOT_FOUND, field="location")
    log.info("cost source: store unreachable (%s)", type(error).__name__)
    return CostSourceUnreadable(
        "The store did not answer (endpoint, region or network); the next sync tries again.", SourceProblem.UNREACHABLE,
    )
