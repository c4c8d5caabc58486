"""Secrets kept at rest (Xero's tokens, cost sources' credentials), sealed as one Fernet token
each (AES-128-CBC with an HMAC-SHA256, from `cryptography`): without the key, a copy of the
database reads nothing and cannot alter them unnoticed.

Each use has a label of its own: its key is the operator's key for that use when set, otherwise
derived from SECRET_KEY with HKDF-SHA256 under the label, so that no other use of SECRET_KEY (nor
another label) yields it."""

from __future__ import annotations

import base64
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def fernet(secret: bytes, label: bytes, key: str | None = None) -> Fernet:
    """The sealer of one use: `key` (a Fernet key) when given, else derived from `secret`."""
    if key:
        return Fernet(key.encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(sealer: Fernet, value: dict) -> str:
    return sealer.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()


def unseal(sealer: Fernet, sealed: str) -> dict | None:
    """The sealed value, or None when it cannot be read (another key, or altered)."""
    try:
        return json.loads(sealer.decrypt(sealed.encode()))
    except (InvalidToken, ValueError):
        return None
