"""The product's processes started as an operator starts them, each its own operating-system
process writing its output to a file of its own: web processes (uvicorn with the app factory,
or `invoicing serve`) and workers (`invoicing worker`). For the tests that need real processes,
and for bench/msp.py."""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The app's factory served by uvicorn on loopback, as a web process is started (its port apart).
WEB = ("-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1")
# The families an operator watches (docs/operators/observability.md) that a month taken
# through the processes makes non-zero.
FAMILIES = (
    "invoicing_graphql_operation_seconds",
    "invoicing_subscriptions_active",
    "invoicing_job_seconds",
    "invoicing_queue_jobs_waiting",
    "invoicing_queue_oldest_job_age_seconds",
    "invoicing_cost_import_rows",
    "invoicing_cost_import_seconds",
    "invoicing_pdfs_printed",
    "invoicing_pdf_print_seconds",
    "invoicing_emails",
    "invoicing_xero_syncs",
    "invoicing_cost_source_syncs",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until(condition: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = 90, every: float = 0.1) -> None:
    """Until `condition()` (awaited when it is awaitable: a query's `.exists()`) is true; TimeoutError naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


class Processes:
    """Processes with the settings' environment (and `env`), each writing to `<name>.log` in
    `folder` (a new temporary folder by default), stopped by `stop()`."""

    def __init__(self, settings, folder: Path | None = None, **env: str) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="invoicing-processes-"))
        self.env = settings.child_environment() | env
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *command: str, **env: str) -> subprocess.Popen:
        """`python *command` (e.g. `-m invoicing worker`), with `env` besides the processes'."""
        with (self.folder / f"{name}.log").open("wb") as out:
            process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=self.env | env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def worker(self, name: str = "worker", **env: str) -> subprocess.Popen:
        return self.start(name, "-m", "invoicing", "worker", **env)

    async def web(self, name: str, port: int, log_level: str = "info", ready: tuple[int, ...] = (200, 503), **env: str) -> subprocess.Popen:
        """The app's factory served by uvicorn on `port`, once `/healthz` answers one of `ready`
        (503: serving, but no worker's heartbeat yet)."""
        process = self.start(name, *WEB, "--port", str(port), "--log-level", log_level, **env)
        await self.answering(name, process, port, ready)
        return process

    async def answering(self, name: str, process: subprocess.Popen, port: int, ready: tuple[int, ...] = (200, 503)) -> None:
        """Until the web process `name` answers `/healthz` on `port` with one of `ready`; its
        output in the error when it ends first."""
        url = f"http://127.0.0.1:{port}/healthz"

        async with httpx.AsyncClient(timeout=5) as client:

            async def answers() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} ended: {self.log(name)[-2000:]}")
                try:
                    return (await client.get(url)).status_code in ready
                except httpx.TransportError:
                    return False

            await until(answers, f"{name} to answer on {url}", timeout=90, every=0.05)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def lines(self) -> list[str]:
        """Every line every process wrote, a process after another."""
        return [line for path in sorted(self.folder.glob("*.log")) for line in path.read_text().splitlines()]

    def stop(self) -> None:
        """SIGTERM to each process still running, then SIGKILL to one not gone within 40 s."""
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
