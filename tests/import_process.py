"""A registered cost import run in a process of its own, as the worker runs it; prints its
outcome and how much its peak RSS grew during the run (JSON on the last line).

    python -m tests.import_process <cost import id>

The environment names the database (DATABASE_URL) and the settings, as for the worker.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys


async def _main(cost_import_id: str) -> dict:
    from infra import db
    from infra.settings import get_settings
    from jobs.imports import run_cost_import

    await db.init(get_settings())
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome = await run_cost_import({}, cost_import_id)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        await db.close()
    return {**outcome, "peak_growth_mb": (after - before) / 1024}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(sys.argv[1]))))
