"""Where a cost source is, per kind of store: its location (bucket or container, prefix, Azure
storage account), its region and the endpoint of a store other than AWS itself."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from models.cost_sources.tables import S3_KINDS, CostSource, CostSourceKind
from models.errors import ValidationFailed

# Azure storage account names: 3 to 24 lower-case letters and digits; containers as S3 buckets, no dots.
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# S3 bucket names (the general-purpose rules): 3 to 63 lower-case letters, digits, dots and dashes.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d$|^[a-z0-9-]{1,32}$")

_LOCATION_FORMS = {
    CostSourceKind.AWS_S3: "s3://bucket/prefix",
    CostSourceKind.S3_COMPATIBLE: "s3://bucket/prefix",
    CostSourceKind.AZURE_BLOB: "az://account.blob.core.windows.net/container/prefix (or "
    "abfss://container@account.dfs.core.windows.net/prefix)",
    CostSourceKind.GCS: "gs://bucket/prefix",
}


def parse_location(location: str, kind: CostSourceKind = CostSourceKind.AWS_S3) -> tuple[str, str, str]:
    """The location as its bucket (or container), prefix (without slashes around it) and
    Azure storage account (empty for the other kinds): `s3://bucket/prefix`,
    `az://<account>.blob.core.windows.net/<container>/<prefix>` or
    `abfs[s]://<container>@<account>.dfs.core.windows.net/<prefix>`, `gs://bucket/prefix`."""
    parts = urlsplit(location.strip())
    refused = ValidationFailed(f"Give the location as {_LOCATION_FORMS[kind]}.", field="location")
    if not parts.netloc or parts.query or parts.fragment or parts.password:
        raise refused
    account = ""
    if kind in S3_KINDS:
        if parts.scheme != "s3":
            raise refused
        bucket, prefix = parts.netloc, parts.path
        if not _BUCKET.match(bucket):
            raise ValidationFailed("The bucket name is not a valid S3 bucket name.", field="location")
    elif kind == CostSourceKind.GCS:
        if parts.scheme != "gs":
            raise refused
        bucket, prefix = parts.netloc, parts.path
        if not _GCS_BUCKET.match(bucket):
            raise ValidationFailed("The bucket name is not a valid Cloud Storage bucket name.", field="location")
    else:
        host = (parts.hostname or "").lower()
        if parts.scheme == "az" and host.endswith(".blob.core.windows.net") and not parts.username:
            account = host.removesuffix(".blob.core.windows.net")
            bucket, _, prefix = parts.path.lstrip("/").partition("/")
        elif parts.scheme in ("abfs", "abfss") and host.endswith(".dfs.core.windows.net") and parts.username:
            account, bucket, prefix = host.removesuffix(".dfs.core.windows.net"), parts.username, parts.path
        else:
            raise refused
        if not _ACCOUNT.match(account) or not _CONTAINER.match(bucket):
            raise ValidationFailed("The storage account or container name is not valid.", field="location")
    return bucket, prefix.strip("/"), account


def location_of(source: CostSource) -> str:
    """The source's location as it is given (`parse_location`'s forms)."""
    if source.kind == CostSourceKind.AZURE_BLOB:
        found = f"az://{source.account}.blob.core.windows.net/{source.bucket}/{source.prefix}"
    else:
        found = f"{'gs' if source.kind == CostSourceKind.GCS else 's3'}://{source.bucket}/{source.prefix}"
    return found.rstrip("/")


def parse_region(value: str) -> str:
    """The region given (empty: none)."""
    if value and not _REGION.match(value):
        raise ValidationFailed("The region is not a region name (such as eu-west-1).", field="region")
    return value


def parse_endpoint(value: str) -> str:
    """The endpoint given as `https://host[:port]` (empty: none)."""
    if not value.strip():
        return ""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise ValidationFailed("Give the endpoint as https://host[:port] without credentials.", field="endpoint")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationFailed("Give the endpoint as https://host[:port] alone, without a path.", field="endpoint")
    return f"{parts.scheme}://{parts.netloc}"


def check_reach(kind: CostSourceKind, endpoint: str, region: str) -> None:
    """Whether the endpoint and region reach a store of this kind: AWS itself by its region,
    another S3-compatible store by its endpoint."""
    if kind == CostSourceKind.AWS_S3:
        if endpoint:
            raise ValidationFailed("An AWS_S3 source reaches AWS itself: give its region, not an endpoint.", field="endpoint")
        if not region:
            raise ValidationFailed("Give the bucket's region (such as eu-west-1).", field="region")
    elif kind == CostSourceKind.S3_COMPATIBLE and not endpoint:
        raise ValidationFailed("Give the S3-compatible store's endpoint (https://host).", field="endpoint")
