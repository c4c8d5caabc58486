"""Running the product: the web server with its worker, the worker alone, migrations and
the SDL."""

from __future__ import annotations

import functools
import logging.config
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from infra import db
from infra.embedded import resolve_urls
from infra.live_sockets import uvicorn_options
from infra.settings import Settings, get_settings
from invoicing.cli.common import app, console, errors, nothing, resolved_settings, run
from invoicing.cli.data import DEMO_SAMPLE, load_demo_data
from invoicing.logs import configure_logging
from models.base import Scope

WORKER_STOP_MARGIN = 10
# A worker that ran this long before it stopped was working: its next start waits the least.
WORKER_HEALTHY_SECONDS = 60
FIRST_RETRY_SECONDS = 1.0
log = logging.getLogger("invoicing.worker")


@app.command()
def serve(
    demo: bool = typer.Option(
        False, "--demo", help="Load the demo organization first and print its tokens."
    ),
    sample: Path = typer.Option(DEMO_SAMPLE, help="FOCUS file the demo imports.", dir_okay=False),
    with_worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Run a worker beside the web server; --no-worker where workers run "
        "as processes of their own (`invoicing worker`, other machines).",
    ),
) -> None:
    """Apply migrations, optionally load the demo, start an arq worker as a child process and
    serve HTTP (GraphQL at /graphql) on HOST:PORT; the worker stops on exit."""
    settings = resolved_settings()
    demo_users = run(settings, functools.partial(load_demo_data, sample) if demo else nothing, migrate=True)
    worker = WorkerSupervisor(
        [sys.executable, "-m", "invoicing", "worker"], settings.child_environment(),
        settings.worker_retry_max_seconds, settings.worker_stop_seconds,
    )
    if with_worker:
        worker.start()
    try:
        _serve(settings, demo_users or [])
    finally:
        if with_worker:
            worker.stop()


class WorkerSupervisor:
    """Runs the worker beside the web server and starts it again when it dies (killed, out of
    memory), waiting longer after each quick death, up to `max_delay` seconds."""

    def __init__(self, command: list[str], env: dict[str, str], max_delay: float, stop_seconds: float = 5) -> None:
        self.command, self.env, self.max_delay = command, env, max_delay
        # The worker's own time to finish its jobs, and a margin to close.
        self.stop_seconds = stop_seconds + WORKER_STOP_MARGIN
        self.starts = 0
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = subprocess.Popen(self.command, env=self.env)
                self.starts += 1
            started = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > WORKER_HEALTHY_SECONDS:
                delay = FIRST_RETRY_SECONDS
            log.error("the worker exited (%s); starting it again in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_delay)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None:
            _stop(process, self.stop_seconds)
        self._thread.join(self.stop_seconds)


def _serve(settings: Settings, demo_users: list | None = None) -> None:
    import uvicorn

    from invoicing.app import create_app

    listening = f"http://{settings.host}:{settings.port}"
    label = "GraphiQL" if settings.environment == "development" else "GraphQL"
    base = settings.public_url.rstrip("/")
    console.print(f"\n{label}: [bold cyan]{base}/graphql[/bold cyan]")
    console.print(f"Month-end console (owners and viewers): [bold cyan]{base}/console[/bold cyan]")
    console.print(f"Customer portal: [bold cyan]{base}/portal[/bold cyan]")
    for user in demo_users or []:
        if user.scope == Scope.CUSTOMER:
            # One line, never wrapped, so that the password can be copied whole.
            console.print(
                f"  sign in as {user.email} with the password {user.password} ({escape(user.account or '')}; "
                "its invoices show once approved)", soft_wrap=True, highlight=False,
            )
    if not settings.public_url.startswith(listening):
        console.print(
            f"[yellow]Listening on {listening}; set PUBLIC_URL (and ALLOWED_ORIGINS) to the address "
            "browsers use, or download links will point elsewhere.[/yellow]"
        )
    # uvicorn shuts down on SIGTERM, then raises it again once its own handler is gone: this
    # handler turns it into SystemExit so that `serve` still stops its worker on the way out.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # On SIGTERM uvicorn takes no new connection, closes WebSockets with 1012 (service restart:
    # clients reconnect, to another process) and lets requests under way finish.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="info", **uvicorn_options(settings),
        timeout_graceful_shutdown=settings.web_stop_seconds, **_log_config(settings),
    )


def _log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's own logging, or none in JSON: `create_app` made every logger write JSON."""
    return {"log_config": None} if settings.log_format == "json" else {}


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop(process: subprocess.Popen, wait: float) -> None:
    """Stop the worker gracefully (on SIGTERM it finishes or hands back its jobs), then for good."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@app.command()
def worker() -> None:
    """Run the arq worker alone: invoice generation, e-mails and notices, the monthly close,
    automatic sends, overdue marking, payment reminders, invitation e-mails, credit notes, token
    and cost delivery purges, Xero pushes and payments. It outlives Redis and PostgreSQL: when
    either fails, it starts again with a growing pause."""
    from arq.logs import default_log_config

    settings = resolve_urls(get_settings())
    if settings.log_format == "json":
        configure_logging(settings)
    else:
        logging.config.dictConfig(default_log_config(verbose=False))
    run_worker_until_stopped(settings)


def run_worker_until_stopped(settings: Settings) -> None:
    """arq's worker, started again whenever it fails (arq exits on a Redis error, at start-up
    or in its loop; start-up fails while PostgreSQL is down), after a pause that doubles from
    one second up to `worker_retry_max_seconds` and starts over once a worker ran for a while.
    Returns when the worker was stopped (SIGINT, SIGTERM)."""
    from jobs.worker import claiming_worker

    delay = FIRST_RETRY_SECONDS
    while True:
        started = time.monotonic()
        try:
            claiming_worker(settings).run()
            return
        except Exception as exc:  # whatever stopped it, a worker that stays down serves nobody
            if time.monotonic() - started > WORKER_HEALTHY_SECONDS:
                delay = FIRST_RETRY_SECONDS
            log.warning("the worker stopped (%s: %s); starting again in %.1f s", type(exc).__name__, exc, delay)
        # arq's signal handlers went with its loop: a stop during the pause must still stop.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        time.sleep(delay)
        delay = min(delay * 2, settings.worker_retry_max_seconds)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date, one line per migration applied."""
    settings = resolved_settings()
    run(settings, nothing, migrate=True)
    console.print("[green]The database is up to date.[/green]")


@app.command()
def makemigrations(
    name: str | None = typer.Option(None, help="A name for the migration file."),
) -> None:
    """(Developers) write a migration for the model changes not yet in migrations/."""
    settings = resolved_settings()
    written = run(settings, functools.partial(_write_migrations, settings, name))
    for app_label, migration, path in written:
        console.print(f"[green]created[/green] {app_label}.{migration} [dim]{path}[/dim]")


async def _write_migrations(settings: Settings, name: str | None) -> list[tuple[str, str, Path]]:
    """What `tortoise makemigrations` does, on this project's configuration."""
    from tortoise import Tortoise
    from tortoise.migrations.autodetector import MigrationAutodetector
    from tortoise.migrations.writer import format_migration_name

    apps_config = db.tortoise_config(settings)["apps"]
    writers = await MigrationAutodetector(Tortoise.apps, apps_config).changes()
    if not writers:
        console.print("No changes detected.")
    written = []
    for writer in writers:
        if name:
            writer.name = format_migration_name(int(writer.name.split("_", 1)[0]), name)
        written.append((writer.app_label, writer.name, Path(writer.write())))
    return written

@app.command()
def schema(check: bool = typer.Option(False, help="Only check that schema.graphql is current.")) -> None:
    """Write the GraphQL SDL to schema.graphql (the SPA developer's manual), or --check it."""
    from invoicing.root import sdl

    target = Path(__file__).resolve().parents[2] / "schema.graphql"
    text = sdl()
    if check:
        if target.read_text() != text:
            errors.print("[red]schema.graphql is out of date: run `invoicing schema`.[/red]")
            raise typer.Exit(1)
        console.print("schema.graphql is current.")
        return
    target.write_text(text)
    console.print(f"[green]wrote[/green] {target}")
