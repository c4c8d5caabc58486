"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from tortoise import Tortoise
from tortoise.migrations.autodetector import MigrationAutodetector

from infra import db


async def test_models_and_migrations_agree(settings):
    apps_config = db.tortoise_config(settings)["apps"]
    changes = await MigrationAutodetector(Tortoise.apps, apps_config).changes()
    pending = [op.describe() for writer in changes for op in writer.operations]
    assert pending == [], f"run `invoicing makemigrations`: {pending}"
