"""Xero's tokens at rest, and PKCE.

Tokens are kept as one Fernet token (AES-128-CBC with an HMAC-SHA256, from `cryptography`):
without the key, a copy of the database reads nothing and cannot alter them unnoticed. The key
is XERO_TOKEN_KEY (a Fernet key), which production requires (infra/settings.py). Elsewhere,
unset, it is derived from a SECRET_KEY given in the environment with HKDF-SHA256 under a label
of its own (so that no other use of SECRET_KEY yields it), or else generated once into
XERO_TOKEN_KEY_FILE: never from the `secret_key` file kept in DATA_DIR beside the embedded
database, since a copy of that folder would then read its own tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

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
    if settings.secret_key:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(settings.secret_key.encode())
        return Fernet(base64.urlsafe_b64encode(derived))
    return Fernet(_generated_key(settings.xero_key_file))


def _generated_key(path: Path) -> bytes:
    """The key kept in `path`, made on first use (readable by its owner only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
                file.write(Fernet.generate_key())
        except FileExistsError:  # another process made it first: theirs is the key
            pass
    return path.read_bytes().strip()


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
