"""A registered cost import run in a process of its own, as the worker runs it; prints its
outcome and how far its resident memory rose above where it stood when the run began (JSON
on the last line).

    python -m tests.import_process <cost import id>

The environment names the database (DATABASE_URL) and the settings, as for the worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _reset_peak() -> int:
    """Linux: "5" resets the peak resident size (VmHWM) to the present one, so that the peak
    read afterwards is the run's own, not the start-up's. Returns the present size (KiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _kib("VmRSS")


def _kib(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    assert found, field
    return int(found.group(1))


async def _main(cost_import_id: str) -> dict:
    from infra import db
    from infra.settings import get_settings
    from jobs.imports import run_cost_import

    await db.init(get_settings())
    try:
        before = _reset_peak()
        outcome = await run_cost_import({"settings": get_settings()}, cost_import_id)
        peak = _kib("VmHWM")
    finally:
        await db.close()
    return {**outcome, "peak_growth_mb": round((peak - before) / 1024, 1)}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(_main(sys.argv[1]))) + "\n")
