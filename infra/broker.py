"""Redis plumbing shared by the web processes and the worker: one arq pool per process."""

from __future__ import annotations

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

from infra.settings import Settings

QUEUE_NAME = "invoicing:jobs"
# The worker refreshes this key; /healthz reads it to tell whether a worker is alive.
HEALTH_CHECK_KEY = f"{QUEUE_NAME}:health-check"
HEALTH_CHECK_SECONDS = 10


def redis_settings(settings: Settings) -> RedisSettings:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not resolved; call embedded.resolve_urls() first")
    return RedisSettings.from_dsn(settings.redis_url)


async def connect(settings: Settings) -> ArqRedis:
    return await create_pool(redis_settings(settings), default_queue_name=QUEUE_NAME)
