"""The one place that reaches object stores (cost sources' S3 buckets, Azure blob containers and
Cloud Storage buckets), through obstore.

Credentials are handed in by `models.cost_sources` and go nowhere but into the store's client;
an error of the store is told in our words (`CostSourceUnreadable` with its problem), never with
the library's message, which may hold a URL, a request id or a header.

A custom endpoint is resolved first and refused when any of its addresses is loopback, private,
link-local or otherwise not public, unless COST_SOURCE_PRIVATE_ENDPOINTS allows it. The client
resolves the name again when it connects: obstore takes no resolved address, so a name that
changes its answer between the two (DNS rebinding) is not caught here."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3.session
import botocore.config
import botocore.exceptions
import obstore
from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import AzureStore, GCSStore, S3Store

from infra import egress, storage
from infra.settings import Settings
from models.cost_sources import (
    CREDENTIAL_FIELD,
    CostSource,
    CostSourceKind,
    CostSourceUnreadable,
    Credentials,
    SourceProblem,
    StoredObject,
)

if TYPE_CHECKING:  # the configuration's types exist in obstore's stubs only
    from obstore.store import AzureConfig, GCSConfig, S3Config, S3Credential

Store = S3Store | AzureStore | GCSStore

log = logging.getLogger(__name__)

_CHUNK = 8 << 20
_LIST_CHUNK = 1000


async def check_endpoint(settings: Settings, endpoint: str) -> None:
    """Refuse an endpoint whose host is, or resolves to, an address that is not public
    (unless the operator allows them), or does not resolve at all (`infra.egress`)."""
    if settings.cost_source_private_endpoints:
        return
    try:
        await egress.resolve(urlsplit(endpoint).hostname or "", allow_private=settings.cost_source_private_endpoints,
                             timeout=settings.cost_source_timeout_seconds)
    except egress.EgressRefused as refused:
        if refused.refusal == egress.Refusal.UNRESOLVED:
            raise CostSourceUnreadable(
                "The endpoint's host name does not resolve.", SourceProblem.UNREACHABLE, field="endpoint"
            ) from None
        raise CostSourceUnreadable(
            "The endpoint is on a loopback, private or link-local address, which this server does not reach.",
            SourceProblem.ENDPOINT_REFUSED, field="endpoint",
        ) from None


async def open_store(settings: Settings, source: CostSource, credentials: Credentials) -> Store:
    """The source's bucket or container as an obstore store (its prefix is left to the
    callers, which list and read full keys). A custom endpoint is checked first."""
    endpoint = settings.aws_s3_endpoint_url if source.kind == CostSourceKind.AWS_S3 else source.endpoint
    if endpoint and source.kind != CostSourceKind.AWS_S3:
        await check_endpoint(settings, endpoint)
    options = storage.client_options(settings.cost_source_timeout_seconds, endpoint)
    retry = storage.retry_config(settings.cost_source_timeout_seconds)
    try:
        if source.kind == CostSourceKind.AZURE_BLOB:
            return AzureStore(source.bucket, config=_azure_config(source, credentials), client_options=options,
                              retry_config=retry)
        if source.kind == CostSourceKind.GCS:
            return GCSStore(source.bucket, config=_gcs_config(source, credentials), client_options=options,
                            retry_config=retry)
        return S3Store(source.bucket, config=_s3_config(source, credentials, endpoint), client_options=options,
                       retry_config=retry, credential_provider=_AssumedRole(settings, source, credentials)
                       if credentials.role_arn else None)
    except (BaseError, ValueError) as error:  # a key that cannot be used: obstore parses it when the store is made
        log.info("cost source: credentials unusable (%s)", type(error).__name__)
        raise CostSourceUnreadable(
            "The credentials cannot be used (a malformed key or token); enter them again.", SourceProblem.ACCESS_DENIED,
            field=CREDENTIAL_FIELD[source.kind],
        ) from None



def _s3_config(source: CostSource, credentials: Credentials, endpoint: str) -> S3Config:
    config: S3Config = {"region": source.region or "us-east-1"}
    if not credentials.role_arn:
        config["access_key_id"], config["secret_access_key"] = credentials.access_key_id, credentials.secret_access_key
    if endpoint:
        config["endpoint"] = endpoint
        # Emulators and most S3-compatible stores are addressed by path, not by a bucket's host name.
        config["virtual_hosted_style_request"] = False
    return config


class _AssumedRole:
    """The role's temporary credentials, asked of STS with the source's access key or, without
    one, the worker's own AWS credentials (its environment, profile or instance role); obstore
    asks again before they expire. STS's refusal reaches the caller as the store's error."""

    def __init__(self, settings: Settings, source: CostSource, credentials: Credentials):
        keys = (
            {"aws_access_key_id": credentials.access_key_id, "aws_secret_access_key": credentials.secret_access_key}
            if credentials.access_key_id else {}
        )
        self._client_options = {
            "region_name": source.region or "us-east-1", "endpoint_url": settings.aws_sts_endpoint_url or None, **keys,
            "config": botocore.config.Config(
                connect_timeout=settings.cost_source_timeout_seconds, read_timeout=settings.cost_source_timeout_seconds,
                retries={"max_attempts": 2},
            ),
        }
        self._request = {"RoleArn": credentials.role_arn, "RoleSessionName": f"invoicing-{source.id}"[:64]}
        if credentials.external_id:
            self._request["ExternalId"] = credentials.external_id

    def __repr__(self) -> str:
        return "_AssumedRole(…)"

    async def __call__(self) -> S3Credential:
        return await asyncio.to_thread(self._assume)

    def _assume(self) -> S3Credential:
        try:
            answer = boto3.session.Session().client("sts", **self._client_options).assume_role(**self._request)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            log.info("cost source: the role was not assumed (%s)", code)
            raise PermissionError(f"AccessDenied: STS refused to assume the role ({code})") from None
        except botocore.exceptions.BotoCoreError as error:
            log.info("cost source: STS unreachable (%s)", type(error).__name__)
            raise ConnectionError("STS did not answer") from None
        found = answer["Credentials"]
        return {"access_key_id": found["AccessKeyId"], "secret_access_key": found["SecretAccessKey"],
                "token": found["SessionToken"], "expires_at": found["Expiration"].astimezone(UTC)}  # obstore takes UTC only


def _azure_config(source: CostSource, credentials: Credentials) -> AzureConfig:
    """The container's account reached with the SAS token, the service principal or the
    account key. A custom endpoint (another Azure cloud, an emulator) whose host does not name
    the account is addressed by path, as Azurite is: `<endpoint>/<account>/<container>`."""
    config: AzureConfig = {"account_name": source.account}
    if source.endpoint:
        config["endpoint"] = storage.azure_endpoint(source.endpoint, source.account)
    if credentials.sas_token:
        config["sas_key"] = credentials.sas_token
    elif credentials.account_key:
        config["account_key"] = credentials.account_key
    else:
        config["tenant_id"], config["client_id"] = credentials.tenant_id, credentials.client_id
        config["client_secret"] = credentials.client_secret
    return config


def _gcs_config(source: CostSource, credentials: Credentials) -> GCSConfig:
    """The service account's key; with a custom endpoint (an emulator, a gateway) requests go
    unsigned: a Google token is sent to Google only."""
    key = json.loads(credentials.service_account_key)
    if source.endpoint:
        key.update(gcs_base_url=source.endpoint, disable_oauth=True)
    return {"service_account_key": json.dumps(key)}


async def list_objects(store: Store, prefix: str) -> list[StoredObject]:
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


async def read_bytes(store: Store, key: str, limit: int) -> bytes:
    """A small object (a manifest) whole, refused past `limit` bytes."""
    data = bytearray()
    async for chunk in stream(store, key):
        data += chunk
        if len(data) > limit:
            raise CostSourceUnreadable(f"{key} is larger than a manifest can be.", SourceProblem.UNREACHABLE)
    return bytes(data)


async def stream(store: Store, key: str) -> AsyncIterator[bytes]:
    """An object's bytes, a chunk at a time; the store's errors as `CostSourceUnreadable`."""
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
    if isinstance(error, (PermissionDeniedError, UnauthenticatedError)) or any(marker in text for marker in (
        "403 Forbidden", "401 Unauthorized", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
        "AuthenticationFailed", "AuthorizationFailure", "InvalidClientTokenId", "Invalid RSA key",
    )):
        log.info("cost source: access refused")
        return CostSourceUnreadable(
            "The store refused the credentials (unknown key, wrong secret, or no right to list and read the bucket).",
            SourceProblem.ACCESS_DENIED, field="accessKeyId",
        )
    if isinstance(error, NotFoundError) or any(
        marker in text for marker in ("NoSuchBucket", "ContainerNotFound", "404 Not Found")
    ):
        log.info("cost source: bucket not found")
        return CostSourceUnreadable(
            "The bucket (or container) does not exist.", SourceProblem.BUCKET_NOT_FOUND, field="location"
        )
    log.info("cost source: store unreachable (%s)", type(error).__name__)
    return CostSourceUnreadable(
        "The store did not answer (endpoint, region or network); the next sync tries again.", SourceProblem.UNREACHABLE,
    )
