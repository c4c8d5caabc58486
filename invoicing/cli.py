"""The `invoicing` command: serve, run the worker, migrate, load the demo, import costs and
manage organizations, users and tokens from a terminal.

Each command is a thin shell around `models/`: it resolves the settings (starting the embedded
servers when no URLs are configured), connects, calls one domain operation and prints the
outcome. Domain errors are expected outcomes, so they end in a red line and exit status 1,
never in a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.config
import signal
import subprocess
import sys
import uuid
from datetime import date
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra import db
from infra.embedded import resolve_urls
from models.base import Scope
from models.costs import CostOrigin
from models.errors import DomainError, NotFound, ValidationFailed
from infra.settings import Settings, get_settings

app = typer.Typer(
    help="Invoicing for managed service providers: cloud costs in, approved invoices out.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

DEMO_SAMPLE = Path(__file__).resolve().parent.parent / "demo" / "focus-1.0-sample.csv"
WORKER_STOP_SECONDS = 15


# --- plumbing --------------------------------------------------------------------------------


def _settings() -> Settings:
    """The settings with DATABASE_URL and REDIS_URL resolved (embedded servers started)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with console.status("Starting the database and Redis…"):
        return resolve_urls(get_settings())


def _run(settings: Settings, operation: Callable[[], Awaitable[T]], *, migrate: bool = False) -> T:
    """Run one async operation against the database; a domain error becomes a red message
    and exit status 1."""

    async def main() -> T:
        if migrate:
            await _migrate(settings)
        async with db.connected(settings):
            return await operation()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        errors.print(f"[bold red]{escape(exc.message)}[/bold red]")
        raise typer.Exit(1) from None


async def _migrate(settings: Settings) -> None:
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


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int], None]]:
    """A live progress line, handed to long domain operations as `progress(rows_done)`;
    they cannot know the total before the end, so it counts rows rather than fill a bar."""
    with Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed:,} rows"), TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int) -> None:
            bar.update(task, completed=done)

        yield update


async def _organization(name_or_id: str | None):
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
    if _is_uuid(name_or_id):
        query = Organization.filter(id=name_or_id)
    found = await query.limit(2)
    if len(found) != 1:
        problem = "Several organizations are named" if found else "There is no organization"
        raise NotFound(f"{problem} '{name_or_id}'.")
    return found[0]


async def _managed_account(organization: Any, name: str):
    """The organization's managed account of that exact name."""
    from models.managed_accounts import ManagedAccount

    account = await ManagedAccount.get_or_none(organization=organization, name=name)
    if account is None:
        raise NotFound(f"No managed account '{name}' in {organization.name}.")
    return account


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _money(value: Any) -> str:
    return f"{value:,.2f}"


async def _account_names(report: Any) -> dict[Any, str]:
    """Names of the managed accounts a report refers to (it holds only ids)."""
    from models.managed_accounts import ManagedAccount

    ids = {report.managed_account_id, *(total.managed_account_id for total in report.totals)} - {None}
    return dict(await ManagedAccount.filter(id__in=ids).values_list("id", "name"))


def _customer_order(total: Any, account_names: dict[Any, str]) -> tuple[bool, str]:
    """Customers by name, then the rows that belong to no customer."""
    return total.managed_account_id is None, account_names.get(total.managed_account_id, "")


def _print_report(report: Any, account_names: dict[Any, str]) -> None:
    """The import report: counts, billed cost per customer and month, and the sub-accounts
    no managed account claims (their rows are kept but nobody is invoiced for them)."""
    console.print(
        f"\n[bold]{report.rows:,}[/bold] rows: [green]{report.inserted:,} new[/green], "
        f"{report.duplicates:,} already imported."
    )
    if report.origin == CostOrigin.ACCOUNT_INTEGRATION:
        console.print(
            f"From {escape(account_names[report.managed_account_id])}'s own integration: invoiced "
            "only while the account includes its integrations."
        )
    totals = Table(title="Billed cost in the file", title_justify="left")
    for column in ("customer", "month", "rows", "billed cost"):
        totals.add_column(column, justify="right" if column in ("rows", "billed cost") else "left")
    for total in sorted(report.totals, key=lambda t: (_customer_order(t, account_names), t.billing_month)):
        name = account_names.get(total.managed_account_id)
        totals.add_row(
            escape(name) if name else "[yellow](no customer)[/yellow]",
            total.billing_month.strftime("%Y-%m"), f"{total.rows:,}",
            f"{total.currency} {_money(total.billed_cost)}",
        )
    console.print(totals)
    if not report.unmatched:
        console.print("[green]Every sub-account belongs to a managed account.[/green]")
        return
    unmatched = Table(title="Sub-accounts no managed account claims: not invoiced", title_justify="left")
    for column in ("provider", "sub-account id", "name", "rows", "billed cost"):
        unmatched.add_column(
            column, justify="right" if column in ("rows", "billed cost") else "left", overflow="fold"
        )
    for item in report.unmatched:
        unmatched.add_row(
            escape(item.provider_name), escape(item.sub_account_id or "(none)"),
            escape(item.sub_account_name or ""), f"{item.rows:,}",
            f"{item.currency} {_money(item.billed_cost)}",
        )
    console.print(unmatched)


# --- servers ---------------------------------------------------------------------------------


@app.command()
def serve(
    demo: bool = typer.Option(
        False, "--demo", help="Load the demo organization first and print its tokens."
    ),
    sample: Path = typer.Option(DEMO_SAMPLE, help="FOCUS file the demo imports.", dir_okay=False),
) -> None:
    """Run the web server (GraphQL at /graphql) with an arq worker beside it."""
    settings = _settings()
    _run(settings, functools.partial(_load_demo, sample) if demo else _nothing, migrate=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "invoicing", "worker"], env=settings.child_environment()
    )
    try:
        _serve(settings)
    finally:
        _stop(worker)


async def _nothing() -> None:
    return None


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

    resolve_urls(get_settings())
    logging.config.dictConfig(default_log_config(verbose=False))
    from jobs.worker import WorkerSettings

    run_worker(WorkerSettings)


# --- schema ----------------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    _run(settings, _nothing, migrate=True)
    console.print("[green]The database is up to date.[/green]")


@app.command()
def makemigrations(
    name: str | None = typer.Option(None, help="A name for the migration file."),
) -> None:
    """(Developers) write a migration for the model changes not yet in migrations/."""
    settings = _settings()
    written = _run(settings, functools.partial(_write_migrations, settings, name))
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


# --- data ------------------------------------------------------------------------------------


@app.command()
def demo(
    sample: Path = typer.Option(DEMO_SAMPLE, help="FOCUS file to import.", dir_okay=False),
) -> None:
    """Load the demo MSP (customers, users, a month of costs); safe to run again."""
    settings = _settings()
    _run(settings, functools.partial(_load_demo, sample), migrate=True)


async def _load_demo(sample: Path) -> None:
    from models.demo import load_demo

    if not sample.is_file():
        raise NotFound(f"There is no FOCUS sample at {sample}; name one with --sample.")
    with _progress_bar(f"Reading {sample.name}") as progress:
        result = await load_demo(sample, progress=progress)
    verb = "Created" if result.created else "Refreshed the credentials of"
    console.print(f"{verb} the demo organization [bold]{escape(result.organization.name)}[/bold].")
    if result.report is not None:
        _print_report(result.report, await _account_names(result.report))
    else:
        console.print(f"{sample.name} was imported before; not importing it again.")
    for month in result.closed:
        console.print(f"{month:%B %Y} is closed: its invoices are ready to generate (generateInvoices).")
    _print_demo_users(result.users)


def _print_demo_users(demo_users: list) -> None:
    users = Table(title="Demo users (passwords and tokens are shown only now)", title_justify="left")
    for column in ("scope", "e-mail", "password", "account"):
        users.add_column(column, no_wrap=True)
    for user in demo_users:
        users.add_row(user.scope.value, user.email, user.password, escape(user.account or ""))
    console.print(users)
    console.print("API tokens (30 days), for the header [bold]Authorization: Bearer <token>[/bold]:")
    for user in demo_users:
        # One line each, never wrapped, so that a token can be copied whole.
        console.print(f"  {user.scope.value:<8} {user.token}", soft_wrap=True, highlight=False)


@app.command("import-costs")
def import_costs(
    file: Path = typer.Argument(..., help="A FOCUS CSV export.", exists=True, dir_okay=False),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    origin: CostOrigin = typer.Option(
        CostOrigin.MSP_DELEGATED, case_sensitive=False,
        help="MSP_DELEGATED (the MSP's integration) or ACCOUNT_INTEGRATION (one the account added).",
    ),
    account: str | None = typer.Option(
        None, help="The managed account (name) whose own integration exported the file (ACCOUNT_INTEGRATION)."
    ),
) -> None:
    """Import a FOCUS cost export and report what it held and what no customer claims."""
    settings = _settings()
    operation = functools.partial(_import_costs, file, organization, origin, account)
    _print_report(*_run(settings, operation))


async def _import_costs(file: Path, organization_ref: str | None, origin: CostOrigin, account_name: str | None):
    from models.costs import import_costs as import_file

    organization = await _organization(organization_ref)
    account = None if account_name is None else await _managed_account(organization, account_name)
    with _progress_bar(f"Reading {file.name}") as progress:
        report = await import_file(
            organization.id, file, filename=file.name, progress=progress,
            origin=origin, account_id=account and account.id,
        )
    return report, await _account_names(report)


# --- organizations, users, tokens ------------------------------------------------------------


@app.command("create-organization")
def create_organization(
    name: str = typer.Argument(..., help="The MSP's name."),
    timezone: str = typer.Option("UTC", help="IANA time zone its months close in (Europe/London)."),
    prefix: str = typer.Option("INV", help="Invoice number prefix (A-Z, 0-9)."),
) -> None:
    """Create an MSP organization."""
    settings = _settings()
    organization = _run(settings, functools.partial(_create_organization, name, timezone, prefix))
    console.print(f"Created organization [bold]{escape(organization.name)}[/bold] ({organization.id}).")


async def _create_organization(name: str, timezone: str, prefix: str):
    from models.organizations import Organization

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"'{timezone}' is not an IANA time zone.", field="timezone") from None
    if not name.strip():
        raise ValidationFailed("Name the organization.", field="name")
    if not (prefix.isascii() and prefix.isalnum() and prefix.isupper() and len(prefix) <= 16):
        raise ValidationFailed("The prefix is 1 to 16 capital letters or digits.", field="prefix")
    return await Organization.create(name=name.strip(), timezone=timezone, invoice_prefix=prefix)


@app.command("create-user")
def create_user(
    email: str = typer.Argument(...),
    scope: Scope = typer.Option(..., case_sensitive=False, help="OWNER, VIEWER or CUSTOMER."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    account: str | None = typer.Option(None, help="The managed account (name) a CUSTOMER belongs to."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    name: str = typer.Option("", help="Display name."),
) -> None:
    """Create a user who can log in with a password."""
    settings = _settings()
    operation = functools.partial(_create_user, email, scope, organization, account, password, name)
    user = _run(settings, operation)
    console.print(f"Created {user.scope.value} [bold]{escape(user.email)}[/bold].")


async def _create_user(email, scope, organization_ref, account_name, password, name):
    from models.auth import create_user as create

    organization = await _organization(organization_ref)
    account = None if account_name is None else await _managed_account(organization, account_name)
    return await create(
        organization.id, email, scope, password=password, name=name, managed_account_id=account and account.id
    )


@app.command("create-token")
def create_token(
    email: str = typer.Argument(..., help="The user the token acts as."),
    days: int | None = typer.Option(None, help="Lifetime in days (default: API_TOKEN_DAYS)."),
    name: str = typer.Option("CLI", help="What the token is for."),
) -> None:
    """Create an API token and print it (it is stored only as a hash: copy it now)."""
    settings = _settings()
    days = settings.api_token_days if days is None else days
    raw = _run(settings, functools.partial(_create_token, email, days, name))
    console.print(raw, soft_wrap=True, highlight=False, markup=False)


async def _create_token(email: str, days: int, name: str) -> str:
    from models.auth import User, issue_api_token

    user = await User.get_or_none(email=email.strip().lower(), is_active=True)
    if user is None:
        raise NotFound(f"No active user {email}.")
    raw, _ = await issue_api_token(user, name, days)
    return raw



# --- the invoice pipeline --------------------------------------------------------------------


def _month(value: str) -> date:
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a month; write YYYY-MM.") from None


@app.command("close-period")
def close_period(
    month: str = typer.Argument(..., help="The month to close, YYYY-MM."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
) -> None:
    """Close a past month: every managed account gets a READY_TO_INVOICE invoice."""
    settings = _settings()
    created = _run(settings, functools.partial(_close_period, settings, _month(month), organization))
    console.print(f"[green]{month} closed[/green]: {created} invoices ready to invoice.")


@asynccontextmanager
async def _redis(settings: Settings):
    """A Redis connection for one command: publishing events, queueing jobs."""
    from infra import broker

    redis = await broker.connect(settings)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _close_period(settings: Settings, month, organization_ref: str | None) -> int:
    from infra import events
    from models.billing_periods import close_period as close
    from models.invoices.lifecycle import Actor

    organization = await _organization(organization_ref)
    created = await close(organization.id, month, Actor.system("cli"), must_be_past=True)
    async with _redis(settings) as redis:
        await events.publish_ids(redis, created)
    return len(created)


@app.command()
def generate(
    month: str = typer.Argument(..., help="Generate this month's ready invoices, YYYY-MM."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    wait: bool = typer.Option(True, help="Wait until the worker has generated them all."),
) -> None:
    """Generate every READY_TO_INVOICE invoice of a month (the worker renders the PDFs)."""
    settings = _settings()
    table = _run(settings, functools.partial(_generate, settings, _month(month), organization, wait))
    console.print(table)


async def _generate(settings: Settings, month, organization_ref: str | None, wait: bool) -> Table:
    from infra import events
    from jobs import dispatch
    from models.invoices import Invoice, InvoiceStatus
    from models.invoices.actions import start_generation
    from models.invoices.lifecycle import Actor

    organization = await _organization(organization_ref)
    ready = Invoice.filter(organization_id=organization.id, billing_period__start_date=month)
    ids, refused = [], []
    for invoice_id in await ready.filter(status=InvoiceStatus.READY_TO_INVOICE).values_list("id", flat=True):
        try:
            ids.append((await start_generation(invoice_id, organization.id, Actor.system("cli"))).id)
        except DomainError as exc:
            refused.append(exc.message)
    async with _redis(settings) as redis:
        await events.publish_ids(redis, ids)
        await dispatch.enqueue_generation(redis, ids)
    for message in refused:
        errors.print(f"[yellow]{escape(message)}[/yellow]")
    if wait and ids:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("Generating", total=len(ids))
            while (pending := await Invoice.filter(id__in=ids, status=InvoiceStatus.GENERATING).count()):
                bar.update(task, completed=len(ids) - pending, description=f"Generating: {pending} to go")
                await asyncio.sleep(0.5)
    table = Table("Invoice", "Customer", "Status", "Total", title=f"{month:%Y-%m}")
    for invoice in await ready.filter(id__in=ids).prefetch_related("managed_account").order_by("number"):
        table.add_row(invoice.number or "", invoice.managed_account.name, invoice.status.value,
                      f"{_money(invoice.total)} {invoice.currency}")
    return table


@app.command()
def export(
    month: str = typer.Option(..., help="The billed month to export, YYYY-MM."),
    format: str = typer.Option(
        "xero", help="xero (Xero's sales-invoice import) or detailed (every line, every field)."
    ),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    output: Path | None = typer.Option(None, help="File to write (default: the export's own name, here)."),
) -> None:
    """Export a month's approved invoices as CSV (a Xero export of more than 500 is a zip)."""
    from models.exports import ExportFormat

    try:
        fmt = ExportFormat(format.upper())
    except ValueError:
        raise typer.BadParameter(f"'{format}' is not a format; write xero or detailed.") from None
    settings = _settings()
    file = _run(settings, functools.partial(_export, _month(month), fmt, organization))
    target = output or Path(file.filename)
    target.write_bytes(file.data)
    console.print(f"[green]wrote[/green] {target}: {file.invoice_count} invoices.")


async def _export(month, fmt, organization_ref: str | None):
    from models.exports import export_month

    organization = await _organization(organization_ref)
    with Progress(
        SpinnerColumn(), TextColumn("Exporting"), TextColumn("{task.completed:,} invoices"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task("export", total=None)
        return await export_month(organization, month, fmt, lambda done: bar.update(task, completed=done))


@app.command()
def schema(check: bool = typer.Option(False, help="Only check that schema.graphql is current.")) -> None:
    """Write the GraphQL SDL to schema.graphql (the SPA developer's manual)."""
    from schema.root import sdl

    target = Path(__file__).resolve().parent.parent / "schema.graphql"
    text = sdl()
    if check:
        if target.read_text() != text:
            errors.print("[red]schema.graphql is out of date: run `invoicing schema`.[/red]")
            raise typer.Exit(1)
        console.print("schema.graphql is current.")
        return
    target.write_text(text)
    console.print(f"[green]wrote[/green] {target}")
