"""Xero's tokens at rest, and PKCE.

Tokens are sealed (`models.sealing`) under XERO_TOKEN_KEY (a Fernet key), which production
requires (infra/settings.py); elsewhere, unset, under a key of their own derived as
`models.sealing` says (never from anything kept in DATA_DIR)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from infra.settings import Settings
from models import sealing

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


def seal(settings: Settings, value: dict) -> str:
    return sealing.seal(sealing.fernet(settings, _HKDF_INFO, settings.xero_token_key), value)


def unseal(settings: Settings, sealed: str) -> dict | None:
    """The sealed value, or None when it cannot be read (another key, or altered)."""
    return sealing.unseal(sealing.fernet(settings, _HKDF_INFO, settings.xero_token_key), sealed)


def seal_tokens(settings: Settings, tokens: TokenSet) -> str:
    return seal(settings, asdict(tokens))


def unseal_tokens(settings: Settings, sealed: str) -> TokenSet | None:
    value = unseal(settings, sealed)
    return TokenSet(**value) if value is not None else None


def new_state() -> str:
    return secrets.token_urlsafe(32)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def browser_binding(settings: Settings, state: str) -> str:
    """What the cookie of the browser that started the authorization `state` names holds: an
    HMAC of the state under the server's key, which whoever merely holds the state (a leaked
    or forwarded authorize link) cannot make."""
    digest = hmac.new(settings.signing_key, b"xero browser binding\x00" + state.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def browser_bound(settings: Settings, state: str, cookie: str | None) -> bool:
    return bool(state and cookie) and hmac.compare_digest(browser_binding(settings, state), cookie or "")


def auth_event_id(access_token: str) -> str | None:
    """The `authentication_event_id` claim of Xero's access token (a JWT, received straight
    from Xero's token endpoint): the authorization the connections it made share."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    value = claims.get("authentication_event_id") if isinstance(claims, dict) else None
    return value if isinstance(value, str) and value else None


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
