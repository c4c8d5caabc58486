"""Test databases copied from a template that the migrations built once.

Migrating from nothing costs Tortoise a minute or more of CPU (it replays the model state of
every operation of every migration); copying a migrated database (`CREATE DATABASE ... TEMPLATE`)
takes well under a second. The template is named by the migrations' text (and the step they
are taken to), so a run finds the template of its own migrations, built by an earlier run or by
the other worker of its own run, and a changed migration builds a new one. Runs side by side
take the template's advisory lock to build or copy it, so one builds and the others wait."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
PREFIX = "invoicing_template_"
# Templates of other migrations (other branches, earlier commits) kept besides the newest.
KEPT = 6


def template_name(target: str | None = None) -> str:
    """The template of the migrations as they are, taken to `target` (a migration's name, as
    `models.0006_cost_origin`; None: all of them)."""
    digest = hashlib.sha256(f"{version('tortoise-orm')} {target}".encode())
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{PREFIX}{digest.hexdigest()[:16]}"


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the server's `postgres` database, as the role `url` names."""
    parts = urlsplit(url)
    connection = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
    try:
        yield connection
    finally:
        await connection.close()


async def create_migrated(url: str, target: str | None = None) -> None:
    """(Re)create the database `url` names, migrated (to `target`), as a copy of its template,
    which is built first when no run has built it yet."""
    name, template = urlsplit(url).path.lstrip("/"), template_name(target)
    async with _admin(url) as admin:
        await admin.execute("SELECT pg_advisory_lock(hashtext($1))", template)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
                await _build(admin, url, template, target)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.execute("SELECT pg_advisory_unlock(hashtext($1))", template)


async def _build(admin: asyncpg.Connection, url: str, template: str, target: str | None) -> None:
    """Migrate an empty database under a name of its own, then give it the template's name: a
    build cut short leaves no template behind."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    from infra import db
    from infra.settings import Settings

    building = f"{template}_building"
    await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{building}"')
    building_url = urlunsplit(urlsplit(url)._replace(path=f"/{building}"))
    config = db.tortoise_config(Settings(database_url=building_url, redis_url="redis://127.0.0.1:6379/0"))
    try:
        await migrate(config=config, target=target)
    finally:
        await Tortoise.close_connections()
    await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
    # A template: any role that may create databases may copy it.
    await admin.execute(f'ALTER DATABASE "{template}" IS_TEMPLATE true')
    await _prune(admin)


async def _prune(admin: asyncpg.Connection) -> None:
    """Drop the oldest templates but the KEPT newest, each unless a run holds it now or it
    belongs to another role."""
    rows = await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname NOT LIKE '%\\_building' ORDER BY oid DESC",
        f"{PREFIX}%",
    )
    for row in rows[KEPT:]:
        stale = row["datname"]
        if not await admin.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", stale):
            continue
        try:
            await admin.execute(f'ALTER DATABASE "{stale}" IS_TEMPLATE false')
            await admin.execute(f'DROP DATABASE "{stale}" WITH (FORCE)')
        except asyncpg.PostgresError:
            pass
        finally:
            await admin.execute("SELECT pg_advisory_unlock(hashtext($1))", stale)
