"""What every command shares: the Typer app, the consoles, settings, running one async
operation against the database, progress lines and finding an organization or account.

Domain errors are expected outcomes, so they end in a red line and exit status 1, never in a
traceback."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from typing import Any, TypeVar

import typer
from arq import ArqRedis
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from infra import broker, db
from infra.embedded import resolve_urls
from infra.settings import Settings, get_settings
from models.actors import Actor, acting
from models.errors import DomainError, NotFound, ValidationFailed

app = typer.Typer(
    help="Invoicing for managed service providers: cloud costs in, approved invoices out.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

def resolved_settings() -> Settings:
    """The settings with DATABASE_URL and REDIS_URL resolved (embedded servers started)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with console.status("Starting the database and Redis…"):
        return resolve_urls(get_settings())


def run(settings: Settings, operation: Callable[[], Awaitable[T]], *, migrate: bool = False) -> T:
    """Run one async operation against the database, a unit of work (`committed`) made by the
    `cli` actor; a domain error becomes a red message and exit status 1."""

    async def main() -> T:
        if migrate:
            await migrate_schema(settings)
        # The audit log names the command line as who made its changes.
        with acting(Actor.system("cli")):
            async with db.connected(settings), committed(settings):
                return await operation()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        errors.print(f"[bold red]{escape(exc.message)}[/bold red]")
        raise typer.Exit(1) from None


async def migrate_schema(settings: Settings) -> None:
    """Apply pending migrations, one line per migration."""

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            console.print(f"  [green]applied[/green] {app_label}.{name}")
        elif event == "rollback_done":
            console.print(f"  [yellow]rolled back[/yellow] {app_label}.{name}")

    with console.status("Checking migrations…"):
        await db.migrate(settings, progress=progress)
    # `migrate` initialises Tortoise for itself; the command connects afresh afterwards.
    await db.close()


class RowsPerSecond(ProgressColumn):
    """The recent rate, from rich's own samples of the task."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} rows/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int], None]]:
    """A live progress line, handed to long domain operations as `progress(rows_done)`;
    they cannot know the total before the end, so it counts rows rather than fill a bar."""
    with Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed:,} rows"), RowsPerSecond(), TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int) -> None:
            bar.update(task, completed=done)

        yield update


async def find_organization(name_or_id: str | None):
    """The organization named (by id or exact name), or the only one there is."""
    from models.organizations import Organization

    if name_or_id is None:
        organizations = await Organization.all().limit(2)
        if len(organizations) != 1:
            raise ValidationFailed(
                "There are several organizations: name one with --organization." if organizations
                else "There is no organization yet: run `invoicing create-organization` or `invoicing demo`."
            )
        return organizations[0]
    query = Organization.filter(name=name_or_id)
    if is_uuid(name_or_id):
        query = Organization.filter(id=name_or_id)
    found = await query.limit(2)
    if len(found) != 1:
        problem = "Several organizations are named" if found else "There is no organization"
        raise NotFound(f"{problem} '{name_or_id}'.")
    return found[0]


async def find_managed_account(organization: Any, name: str):
    """The organization's managed account of that exact name."""
    from models.managed_accounts import ManagedAccount

    account = await ManagedAccount.get_or_none(organization=organization, name=name)
    if account is None:
        raise NotFound(f"No managed account '{name}' in {organization.name}.")
    return account


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def money(value: Any) -> str:
    return f"{value:,.2f}"



async def nothing() -> None:
    return None


def parse_month(value: str) -> date:
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a month; write YYYY-MM.") from None


@asynccontextmanager
async def committed(settings: Settings) -> AsyncIterator[None]:
    """A command, or a step it waits on (generation), is a unit of work: what it committed is
    announced and the work it calls for queued once it is over (jobs/effects.py), as after a
    mutation. Redis is reached only when something happened."""
    from jobs import effects
    from models.outbox import collecting

    with collecting() as happened:
        try:
            yield
        finally:
            if happened:
                async with redis_connection(settings) as redis:
                    await effects.run(redis, happened)


@asynccontextmanager
async def redis_connection(settings: Settings) -> AsyncIterator[ArqRedis]:
    """A Redis connection for one command: publishing events, queueing jobs."""
    redis = await broker.connect(settings)
    try:
        yield redis
    finally:
        await redis.aclose()
