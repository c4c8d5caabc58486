"""Database wiring: the Tortoise configuration, migrations and connection lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.transactions import in_transaction

from infra.settings import Settings

APP = "models"


class PooledConnection(asyncpg.Connection):
    """A connection that goes back to the pool without asyncpg's reset statement (RESET ALL,
    UNLISTEN *, CLOSE ALL and releasing advisory locks), which cost every query outside a
    transaction a second round trip. Nothing here leaves session state behind: settings are
    SET LOCAL, advisory locks are taken for the transaction, and nothing LISTENs or keeps a
    cursor. An open transaction is still rolled back when a connection comes back."""

    def get_reset_query(self) -> str:
        return ""


def tortoise_config(settings: Settings) -> dict[str, Any]:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not resolved; call embedded.resolve_urls() first")
    connection = expand_db_url(settings.database_url.replace("postgresql://", "postgres://", 1))
    connection["credentials"]["connection_class"] = PooledConnection
    return {
        "connections": {"default": connection},
        "apps": {APP: {"models": ["models"], "migrations": "migrations"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def init(settings: Settings) -> None:
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)


async def close() -> None:
    await Tortoise.close_connections()


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[None]:
    await init(settings)
    try:
        yield
    finally:
        await close()


class _RepeatableRead(TransactionWrapper):
    """A transaction that begins as REPEATABLE READ in its one BEGIN statement (rather than
    BEGIN, then SET TRANSACTION: a round trip more for every query)."""

    async def begin(self) -> None:
        self.transaction = self._connection.transaction(isolation="repeatable_read")
        await self.transaction.start()


@contextlib.asynccontextmanager
async def snapshot() -> AsyncIterator[None]:
    """Everything read inside sees the database as of the first statement (a REPEATABLE READ
    transaction): a change committed meanwhile shows in none of the reads or in all of them,
    never in some (under READ COMMITTED each statement takes a snapshot of its own). The reads
    share the transaction's one connection."""
    client = connections.get("default")
    if isinstance(client, AsyncpgDBClient):  # the pool's client, not already in a transaction
        async with TransactionContextPooled(_RepeatableRead(client), client._pool_init_lock):
            yield
        return
    async with in_transaction() as connection:
        await connection.execute_script("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


async def migrate(settings: Settings, progress=None) -> None:
    """Bring the schema up to date (from nothing, or from any earlier migration)."""
    await tortoise_migrate(config=tortoise_config(settings), progress=progress)


def __getattr__(name: str) -> Any:
    # `tortoise makemigrations` (configured in pyproject.toml) reads db.TORTOISE_ORM.
    if name == "TORTOISE_ORM":
        from infra.embedded import resolve_urls
        from infra.settings import get_settings

        return tortoise_config(resolve_urls(get_settings()))
    raise AttributeError(name)
