"""Idempotency keys: a retried mutation that creates money or sends something does its work
once.

A request with a key claims it (one row per organization, user and key) in a statement of its
own, committed before the work starts; the unique key makes two concurrent requests claim it
once. The claimant does the work and stores its answer on the row; a later request with the
key and the same input (the same `fingerprint`) within `KEY_LIFETIME` is answered with it, and
does nothing. The same key with another input is refused (`IdempotencyKeyReused`); a request
that comes while the first is still working is refused too (`IdempotencyKeyInProgress`): it
may try again in a moment. A claim whose work failed unexpectedly is released, so that a
retry does the work. The claimant holds its claim by a lease it renews while it works
(`renew`); a claim whose lease ran out belongs to a process that died mid-work (its work's
transaction rolled back with it), and a retry with the same input takes it over and does the
work. Expired keys are purged by the worker's daily cron (`purge_keys`)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import uuid4

from tortoise import fields
from tortoise.expressions import Q
from tortoise.migrations.constraints import UniqueConstraint
from tortoise.models import Model

from models.base import enum_check
from models.errors import Conflict, ErrorCode, ValidationFailed

log = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)
# How long a claim holds without its claimant renewing it (every quarter of it while working).
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


class KeyState(StrEnum):
    WORKING = "WORKING"
    DONE = "DONE"


class IdempotencyKey(Model):
    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField()
    user_id = fields.UUIDField()
    key = fields.CharField(max_length=MAX_KEY_LENGTH)
    # Which mutation, and a digest of its input: what "the same request" means.
    fingerprint = fields.CharField(max_length=64)
    state = fields.CharEnumField(KeyState, max_length=16, default=KeyState.WORKING)
    # The kept answer as JSON text, not jsonb: an answer may echo what the client sent, and jsonb
    # cannot hold the NUL character that JSON text writes as an escape.
    answer = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)
    # Until when the claimant holds a WORKING claim, unless it renews it.
    lease_until = fields.DatetimeField(null=True)

    class Meta:
        table = "idempotency_keys"
        constraints = (
            UniqueConstraint(fields=("organization_id", "user_id", "key"), name="idempotency_keys_unique"),
            enum_check("idempotency_keys", "state", KeyState),
        )


class IdempotencyKeyReused(Conflict):
    """The key was used before with another input (or another mutation)."""

    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


class IdempotencyKeyInProgress(Conflict):
    """The first request with the key is still doing its work."""

    code = ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS


def _now() -> datetime:
    return datetime.now(UTC)


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(f"An idempotency key is 1 to {MAX_KEY_LENGTH} printable characters.", field="idempotencyKey")
    return key


async def claim(organization_id: Any, user_id: Any, key: str, fingerprint: str) -> tuple[bool, Any]:
    """(True, None) when this request claimed the key and is to do the work; (False, the first
    answer) when the work was done with the same input. Raises when the key was used with
    another input, or its first request is still working."""
    check_key(key)
    mine = {"organization_id": organization_id, "user_id": user_id, "key": key}
    # An expired key is gone, purged or not yet.
    await IdempotencyKey.filter(**mine, expires_at__lte=_now()).delete()
    # One statement: of two concurrent claims, the database lets one insert, the other waits
    # for it to commit and inserts nothing.
    claimed = await IdempotencyKey._meta.db.execute_query_dict(
        "INSERT INTO idempotency_keys"
        " (id, organization_id, user_id, key, fingerprint, state, created_at, expires_at, lease_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8) ON CONFLICT (organization_id, user_id, key) DO NOTHING"
        " RETURNING id",
        [uuid4(), organization_id, user_id, key, fingerprint, KeyState.WORKING.value, _now() + KEY_LIFETIME, _now() + LEASE],
    )
    if claimed:
        return True, None
    held = await IdempotencyKey.get(**mine)
    if held.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This idempotency key was used with another input: use a new key for a new request.",
            field="idempotencyKey",
        )
    if held.state != KeyState.DONE and await _taken_over(held.id):
        return True, None
    if held.state != KeyState.DONE:
        raise IdempotencyKeyInProgress(
            "A request with this idempotency key is still being processed: try again in a moment.",
            field="idempotencyKey",
        )
    return False, json.loads(held.answer) if held.answer is not None else None


async def _taken_over(claim_id: Any) -> bool:
    """Take over a claim whose lease ran out (or that holds none); one statement, so of two
    retries one takes it."""
    lapsed = Q(lease_until__isnull=True) | Q(lease_until__lt=_now())
    return bool(await IdempotencyKey.filter(lapsed, id=claim_id, state=KeyState.WORKING).update(lease_until=_now() + LEASE))


async def renew(organization_id: Any, user_id: Any, key: str, done: asyncio.Event) -> None:
    """Hold a claimed key until `done` is set: its lease renewed every quarter of it."""
    while True:
        try:
            await asyncio.wait_for(done.wait(), LEASE.total_seconds() / 4)
            return
        except TimeoutError:
            pass
        try:
            await IdempotencyKey.filter(organization_id=organization_id, user_id=user_id, key=key, state=KeyState.WORKING).update(
                lease_until=_now() + LEASE
            )
        except Exception:  # the work goes on; the next renewal tries again before the lease runs out
            log.warning("An idempotency claim's lease could not be renewed.", exc_info=True)


async def answered(organization_id: Any, user_id: Any, key: str, answer: Any) -> None:
    """Keep the answer of the work done under a claimed key."""
    mine = IdempotencyKey.filter(organization_id=organization_id, user_id=user_id, key=key)
    await mine.update(state=KeyState.DONE, answer=json.dumps(answer), lease_until=None)


async def release(organization_id: Any, user_id: Any, key: str) -> None:
    """Give a claimed key back: its work failed before it could answer, and may be tried again."""
    await IdempotencyKey.filter(organization_id=organization_id, user_id=user_id, key=key, state=KeyState.WORKING).delete()


async def purge_keys(before: datetime | None = None) -> int:
    """Delete the keys expired before `before` (now)."""
    return await IdempotencyKey.filter(expires_at__lte=before or _now()).delete()
