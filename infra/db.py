"""Database wiring: the Tortoise configuration, migrations and connection lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from infra.settings import Settings

APP = "models"


def tortoise_config(settings: Settings) -> dict[str, Any]:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not resolved; call embedded.resolve_urls() first")
    url = settings.database_url.replace("postgresql://", "postgres://", 1)
    return {
        "connections": {"default": url},
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
