"""An arq worker running the product's job functions inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def running(redis, ctx: dict[str, Any], **options: Any) -> AsyncIterator[Any]:
    """A worker on the test's Redis polling the product's queue while the block runs. On the
    way out it stops taking jobs and lets those under way finish (a few seconds at most),
    then closes; what it had to cancel is not the test's failure. (arq's close() cancels the
    jobs still running and waits for them: their cancellation would otherwise escape the
    test's teardown, which pytest does not survive: the fixtures of the next tests would not
    be built again.)"""
    from arq.worker import Worker

    from infra import broker
    from jobs.worker import WorkerSettings

    defaults = {"functions": WorkerSettings.functions, "max_jobs": WorkerSettings.max_jobs, "poll_delay": WorkerSettings.poll_delay}
    worker = Worker(redis_pool=redis, queue_name=broker.QUEUE_NAME, handle_signals=False, ctx=ctx, **{**defaults, **options})
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        worker.allow_pick_jobs = False
        under_way = [job for job in worker.tasks.values() if not job.done()]
        if under_way:
            await asyncio.wait(under_way, timeout=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await worker.close()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


async def idle(redis, timeout: float = 60) -> None:
    """Until the product's queue holds no job and none is running: whatever the test's last
    action enqueued has run (a notice that should not exist has been sent by then)."""
    from arq.constants import in_progress_key_prefix

    from infra import broker

    for _ in range(int(timeout / 0.05)):
        # Counted, not listed: a job taken between arq's listing and its reading fails a listing.
        if not await redis.zcard(broker.QUEUE_NAME) and not await redis.keys(f"{in_progress_key_prefix}*"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the queue did not empty")
