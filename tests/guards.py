"""`refused_by(name)`: the database refused a write by the named constraint or trigger.

A guard test that accepted any SQL error would pass as well on a typo or a renamed column
(PostgreSQL answers "column does not exist", which the ORM maps to OperationalError, the
parent of IntegrityError). These helpers require the integrity error itself and the name of
what raised it: a constraint by `constraint_name`, a trigger by the function it runs, which
PostgreSQL names in the error's context ("PL/pgSQL function guard_invoice() line 17 at RAISE")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError

# The SQLSTATE the guard triggers raise (`USING ERRCODE = 'integrity_constraint_violation'`).
TRIGGER_SQLSTATE = "23000"


async def _trigger(name: str) -> tuple[str, str, bool] | None:
    """(table, function, whether the function guards other tables too) of the trigger `name`,
    or None when no trigger is so named."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT tgrelid::regclass::text AS tbl, tgfoid::regproc::text AS fn,"
        " (SELECT count(*) FROM pg_trigger o WHERE o.tgfoid = t.tgfoid AND NOT o.tgisinternal) > 1 AS shared"
        " FROM pg_trigger t WHERE tgname = $1 AND NOT tgisinternal",
        [name],
    )
    return (rows[0]["tbl"], rows[0]["fn"], rows[0]["shared"]) if rows else None


@contextlib.asynccontextmanager
async def refused_by(name: str) -> AsyncIterator[None]:
    """The block must fail with an integrity error raised by the constraint or trigger `name`."""
    trigger = await _trigger(name)
    with pytest.raises(IntegrityError) as raised:
        yield
    cause = raised.value.__cause__
    assert isinstance(cause, asyncpg.PostgresError), f"not a database refusal: {raised.value!r}"
    if trigger is None:
        assert cause.constraint_name == name, (
            f"refused by {cause.constraint_name or cause.context!r} ({cause.sqlstate}: {cause.message}), not by {name!r}"
        )
        return
    table, function, shared = trigger
    assert cause.sqlstate == TRIGGER_SQLSTATE, f"{cause.sqlstate}: {cause.message}"
    assert f"function {function}()" in (cause.context or ""), (
        f"raised by {cause.context!r} ({cause.message}), not by trigger {name!r}"
    )
    # A function that guards several tables (refuse_change) names the table in its message.
    assert not shared or cause.message.startswith(f"{table} "), f"{cause.message!r} is not about {table}"
