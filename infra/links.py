"""Short-lived signed download links, `GET /files/<token>`: a browser's `<a href>` cannot send
an `Authorization` header, so the link itself carries who may download what, for a few
minutes (`LINK_TTL_SECONDS`).

A token is an itsdangerous `URLSafeTimedSerializer` value (payload, timestamp, HMAC-SHA256
keyed by `SECRET_KEY` with a salt of its own): readable by whoever holds it, but any change
breaks the signature. The payload names the file (an invoice's PDF or CSV, or an export in
storage), the requester's scope at signing time and the id of the token the requester
presented; the download checks them all again, so a sign-out or a revoked token ends its links.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from infra import storage
from infra.settings import Settings
from models.exports import EXPORTS_FOLDER

# A salt of their own: a value signed with the same key for another purpose is no link.
SALT = "invoicing.files.v1"


def clock() -> datetime:
    """The time links are signed and checked at (tests move it)."""
    return datetime.now(UTC)


class _Signer(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock().timestamp())


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        settings.signing_key, salt=SALT, signer=_Signer, signer_kwargs={"digest_method": hashlib.sha256}
    )


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: datetime


def _scope(principal) -> dict[str, Any]:
    """Who asked, as it stood when the link was made, and with which token: signing out or
    revoking that token ends its links too."""
    account = principal.managed_account_id
    return {
        "o": str(principal.organization_id), "u": str(principal.user.id), "s": principal.scope.value,
        "a": str(account) if account else None, "tk": str(principal.presented_token.id),
    }


def requester(claims: dict[str, Any]) -> dict[str, Any]:
    """Who a link was made for, as keyword arguments of `models.auth.principal_of_link`."""
    return {
        "user_id": claims["u"], "organization_id": claims["o"], "scope": claims["s"],
        "managed_account_id": claims["a"], "token_id": claims.get("tk"),
    }


def sign(settings: Settings, principal, kind: str, target: str, filename: str = "") -> Link:
    """A link to `target` (an invoice id for kind "pdf" or "csv", a storage path for
    "export") for `principal`."""
    token = _serializer(settings).dumps({"k": kind, "t": target, "f": filename, **_scope(principal)})
    expires_at = clock().replace(microsecond=0) + timedelta(seconds=settings.link_ttl_seconds)
    return Link(url=f"{settings.public_url.rstrip('/')}/files/{token}", expires_at=expires_at)


def verify(settings: Settings, token: str) -> dict[str, Any] | None:
    """The payload of a genuine, unexpired link, else None (expired, altered and forged
    links are not told apart)."""
    try:
        claims = _serializer(settings).loads(token, max_age=settings.link_ttl_seconds)
    except BadData:
        return None
    return claims if isinstance(claims, dict) else None


def publish_export(settings: Settings, principal, filename: str, data: bytes) -> Link:
    """Keep an export in storage (under the organization's folder) and link to it."""
    relative = f"{EXPORTS_FOLDER}/{principal.organization_id}/{uuid.uuid4()}/{filename}"
    storage.save(settings, relative, data)
    return sign(settings, principal, "export", relative, filename)


def purge_exports(settings: Settings) -> int:
    """Delete stored exports whose links can no longer be valid; returns how many."""
    return storage.purge(
        settings, EXPORTS_FOLDER, older_than=clock() - timedelta(seconds=settings.link_ttl_seconds + 60)
    )
