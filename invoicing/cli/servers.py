"""Running the product: the web server with its worker, the worker alone, migrations and
the SDL."""

from __future__ import annotations

import functools
import logging.config
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from infra import db
from infra.embedded import resolve_urls
from infra.settings import Settings, get_settings
from invoicing.cli.common import app, console, errors, nothing, resolved_settings, run
from invoicing.cli.data import DEMO_SAMPLE, load_demo_data

WORKER_STOP_SECONDS = 15


@app.command()
def serve(
    demo: bool = typer.Option(
        False, "--demo", help="Load the demo organization first and print its tokens."
    ),
    sample: Path = typer.Option(DEMO_SAMPLE, help="FOCUS file the demo imports.", dir_okay=False),
) -> None:
    """Run the web server (GraphQL at /graphql) with an arq worker beside it."""
    settings = resolved_settings()
    run(settings, functools.partial(load_demo_data, sample) if demo else nothing, migrate=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "invoicing", "worker"], env=settings.child_environment()
    )
    try:
        _serve(settings)
    finally:
        _stop(worker)


def _serve(settings: Settings) -> None:
    import uvicorn

    from invoicing.app import create_app

    listening = f"http://{settings.host}:{settings.port}"
    label = "GraphiQL" if settings.environment == "development" else "GraphQL"
    console.print(f"\n{label}: [bold cyan]{settings.public_url.rstrip('/')}/graphql[/bold cyan]")
    if not settings.public_url.startswith(listening):
        console.print(
            f"[yellow]Listening on {listening}; set PUBLIC_URL (and ALLOWED_ORIGINS) to the address "
            "browsers use, or download links will point elsewhere.[/yellow]"
        )
    # uvicorn shuts down on SIGTERM, then raises it again once its own handler is gone: this
    # handler turns it into SystemExit so that `serve` still stops its worker on the way out.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="info",
        ws_max_size=settings.ws_max_message_bytes,
    )


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop(process: subprocess.Popen) -> None:
    """Stop the worker gracefully (arq finishes its running jobs on SIGTERM), then for good."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@app.command()
def worker() -> None:
    """Run the arq worker: invoice generation, e-mails and the monthly close."""
    from arq.logs import default_log_config
    from arq.worker import run_worker

    settings = resolve_urls(get_settings())
    logging.config.dictConfig(default_log_config(verbose=False))
    from jobs.worker import worker_settings

    run_worker(worker_settings(settings))


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
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
    """Write the GraphQL SDL to schema.graphql (the SPA developer's manual)."""
    from schema.root import sdl

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
