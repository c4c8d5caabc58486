"""Xero's tokens at rest, and PKCE.

Tokens are kept as one Fernet token (AES-128-CBC with an HMAC-SHA256, from `cryptography`):
without the key, a copy of the database reads nothing and cannot alter them unnoticed. The key
is XERO_TOKEN_KEY (a Fernet key) when set; otherwise it is derived from SECRET_KEY with
HKDF-SHA256 under a label of its own, so that no other use of SECRET_KEY yields it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from infra.settings import Settings

_HKDF_INFO = b"invoicing xero token encryption"


@dataclass(frozen=True)
class TokenSet:
    """What Xero's token endpoint answered, as kept (`expires_at` in seconds since the epoch)."""

    access_token: str
    refresh_token: str
    expires_at: float
    scope: str = ""

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)


def _fernet(settings: Settings) -> Fernet:
    if settings.xero_token_key:
        return Fernet(settings.xero_token_key.encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(settings.signing_key)
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(settings: Settings, value: dict) -> str:
    return _fernet(settings).encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()


def unseal(settings: Settings, sealed: str) -> dict | None:
    """The sealed value, or None when it cannot be read (another key, or altered)."""
    try:
        return json.loads(_fernet(settings).decrypt(sealed.encode()))
    except (InvalidToken, ValueError):
        return None


def seal_tokens(settings: Settings, tokens: TokenSet) -> str:
    return seal(settings, asdict(tokens))


def unseal_tokens(settings: Settings, sealed: str) -> TokenSet | None:
    value = unseal(settings, sealed)
    return TokenSet(**value) if value is not None else None


def new_state() -> str:
    return secrets.token_urlsafe(32)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def new_code_verifier() -> str:
    """RFC 7636: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~]; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def webhook_signed(settings: Settings, body: bytes, signature: str) -> bool:
    """Whether `signature` (the `x-xero-signature` header) is base64(HMAC-SHA256(webhook key,
    raw body)), as Xero signs every webhook request."""
    if not settings.xero_webhook_key:
        return False
    expected = base64.b64encode(hmac.new(settings.xero_webhook_key.encode(), body, hashlib.sha256).digest())
    # Compared as bytes: a header of any characters is a wrong signature, not a TypeError.
    return hmac.compare_digest(expected, (signature or "").encode("utf-8", "surrogateescape"))
