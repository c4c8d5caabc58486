"""Secrets kept at rest (Xero's tokens, cost sources' credentials), sealed as one Fernet token
each (AES-128-CBC with an HMAC-SHA256, from `cryptography`): without the key, a copy of the
database reads nothing and cannot alter them unnoticed.

Each use has a label of its own: its key is the operator's key for that use when set, otherwise
derived with HKDF-SHA256 under the label (so that no other use, nor another label, yields it)
from SECRET_KEY when it is set, else from a key generated once into SEALING_KEY_FILE. Never from
the `secret_key` file kept in DATA_DIR beside the embedded database: a copy of that folder would
then read its own secrets."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from infra.settings import Settings


def fernet(settings: Settings, label: bytes, key: str | None = None) -> Fernet:
    """The sealer of one use: `key` (a Fernet key) when given, else derived under `label`."""
    if key:
        return Fernet(key.encode())
    secret = settings.secret_key.encode() if settings.secret_key else _generated_key(settings.sealing_key_path)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


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


def seal(sealer: Fernet, value: dict) -> str:
    return sealer.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()


def unseal(sealer: Fernet, sealed: str) -> dict | None:
    """The sealed value, or None when it cannot be read (another key, or altered)."""
    try:
        return json.loads(sealer.decrypt(sealed.encode()))
    except (InvalidToken, ValueError):
        return None
