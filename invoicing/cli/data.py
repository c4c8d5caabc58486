"""Data in: the demo, cost imports, organizations, users and API tokens."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from infra.settings import get_settings
from invoicing.cli.common import (
    app,
    console,
    find_managed_account,
    find_organization,
    money,
    progress_bar,
    resolved_settings,
    run,
)
from models.base import Scope
from models.costs import CostOrigin
from models.errors import NotFound

DEMO_SAMPLE = Path(__file__).resolve().parents[2] / "demo" / "focus-1.0-sample.csv"


@app.command()
def demo(
    sample: Path = typer.Option(DEMO_SAMPLE, help="FOCUS file to import.", dir_okay=False),
) -> None:
    """Load the demo MSP (customers, users, a month of costs), or refresh it: safe to run again.
    Prints its users with fresh passwords and API tokens."""
    settings = resolved_settings()
    run(settings, functools.partial(load_demo_data, sample), migrate=True)


async def load_demo_data(sample: Path) -> list:
    """Load the demo and print what it did; its users, with their fresh credentials."""
    from models.demo import load_demo

    if not sample.is_file():  # noqa: ASYNC240 (one stat of a local file, before the work starts)
        raise NotFound(f"There is no FOCUS sample at {sample}; name one with --sample.")
    with progress_bar(f"Reading {sample.name}") as progress:
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
    return result.users


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
    files: list[Path] = typer.Argument(
        ..., help="The delivery: a FOCUS file (CSV, gzip CSV, Parquet, zip), its parts, a folder of "
        "them (an export's folder), or an export's manifest: AWS's <export>-Manifest.json (its parts under the "
        "export's data/ folder) or Azure's manifest.json (its parts beside it).", exists=True,
    ),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    origin: CostOrigin = typer.Option(
        CostOrigin.MSP_DELEGATED, case_sensitive=False,
        help="MSP_DELEGATED (the MSP's integration) or ACCOUNT_INTEGRATION (one the account added).",
    ),
    account: str | None = typer.Option(
        None, help="The managed account (name) whose own integration exported the file (ACCOUNT_INTEGRATION)."
    ),
) -> None:
    """Import a FOCUS cost delivery (all of it or nothing): files, parts, a folder, a zip, or an AWS
    or Azure export's manifest, with a progress line in rows per second. The report: rows now
    current, unchanged, of approved months (late costs), replaced, totals, and the sub-accounts
    no customer claims."""
    settings = resolved_settings()
    operation = functools.partial(_import_costs, files, organization, origin, account)
    _print_report(*run(settings, operation))


async def _import_costs(
    files: Path | list[Path], organization_ref: str | None, origin: CostOrigin, account_name: str | None
):
    from models.costs import import_costs as import_file

    # A manifest's path stands for its export: the delivery finds the parts it names.
    sources = files if isinstance(files, list) else [files]
    organization = await find_organization(organization_ref)
    account = None if account_name is None else await find_managed_account(organization, account_name)
    names = ", ".join(path.name for path in sources)
    with progress_bar(f"Importing {names}") as progress:
        report = await import_file(
            organization.id, sources if len(sources) > 1 else sources[0], filename=names, progress=progress,
            origin=origin, account_id=account and account.id,
        )
    return report, await _account_names(report)


async def _account_names(report: Any) -> dict[Any, str]:
    """Names of the managed accounts a report refers to (it holds only ids)."""
    from models.managed_accounts import ManagedAccount

    ids = {
        report.managed_account_id, *(total.managed_account_id for total in report.totals),
        *(entry.managed_account_id for entry in report.late_costs),
    } - {None}
    return dict(await ManagedAccount.filter(id__in=ids).values_list("id", "name"))


def _customer_order(total: Any, account_names: dict[Any, str]) -> tuple[bool, str]:
    """Customers by name, then the rows that belong to no customer."""
    return total.managed_account_id is None, account_names.get(total.managed_account_id, "")


def _print_report(report: Any, account_names: dict[Any, str]) -> None:
    """The import report: counts, billed cost per customer and month, and the sub-accounts
    no managed account claims (their rows are kept but nobody is invoiced for them)."""
    console.print(
        f"\n[bold]{report.rows:,}[/bold] rows: [green]{report.inserted:,} now current[/green], "
        f"{report.duplicates:,} unchanged (identical to the current delivery), {report.late:,} of approved "
        f"months; {report.replaced:,} rows of earlier deliveries replaced."
    )
    for entry in report.late_costs:
        console.print(
            f"[yellow]{escape(account_names.get(entry.managed_account_id, '?'))} {entry.billing_month:%Y-%m} was "
            f"invoiced at {entry.currency} {money(entry.invoiced_cost)}; this delivery says "
            f"{money(entry.delivered_cost)}: {money(entry.difference)} kept as late costs.[/yellow]"
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
            f"{total.currency} {money(total.billed_cost)}",
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
            f"{item.currency} {money(item.billed_cost)}",
        )
    console.print(unmatched)


@app.command("purge-deliveries")
def purge_deliveries() -> None:
    """Remove uploaded cost deliveries' files kept longer than DELIVERY_RETENTION_DAYS (the worker
    does it hourly); their imports' records and cost rows stay."""
    from infra import storage

    settings = get_settings()
    removed = storage.purge_deliveries(settings)
    console.print(f"Removed {removed} cost deliveries older than {settings.delivery_retention_days} days.")


@app.command("create-organization")
def create_organization(
    name: str = typer.Argument(..., help="The MSP's name."),
    timezone: str = typer.Option("UTC", help="IANA time zone its months close in (Europe/London)."),
    prefix: str = typer.Option("INV", help="Invoice number prefix (A-Z, 0-9)."),
) -> None:
    """Create an MSP organization (its other settings: the `updateOrganization` mutation)."""
    settings = resolved_settings()
    organization = run(settings, functools.partial(_create_organization, name, timezone, prefix))
    console.print(f"Created organization [bold]{escape(organization.name)}[/bold] ({organization.id}).")


async def _create_organization(name: str, timezone: str, prefix: str):
    from models.organizations import create_organization as create

    return await create(name, timezone=timezone, invoice_prefix=prefix)


@app.command("create-user")
def create_user(
    email: str = typer.Argument(...),
    scope: Scope = typer.Option(..., case_sensitive=False, help="OWNER, VIEWER or CUSTOMER."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    account: str | None = typer.Option(None, help="The managed account (name) a CUSTOMER belongs to."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    name: str = typer.Option("", help="Display name."),
) -> None:
    """Create a user who can log in with a password, prompted (hidden) when not given. A CUSTOMER
    user needs --account."""
    settings = resolved_settings()
    operation = functools.partial(_create_user, email, scope, organization, account, password, name)
    user = run(settings, operation)
    console.print(f"Created {user.scope.value} [bold]{escape(user.email)}[/bold].")


async def _create_user(email, scope, organization_ref, account_name, password, name):
    from models.auth import create_user as create

    organization = await find_organization(organization_ref)
    account = None if account_name is None else await find_managed_account(organization, account_name)
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
    settings = resolved_settings()
    days = settings.api_token_days if days is None else days
    raw = run(settings, functools.partial(_create_token, email, days, name))
    console.print(raw, soft_wrap=True, highlight=False, markup=False)


async def _create_token(email: str, days: int, name: str) -> str:
    from models.auth import User, issue_api_token

    user = await User.get_or_none(email=email.strip().lower(), is_active=True)
    if user is None:
        raise NotFound(f"No active user {email}.")
    raw, _ = await issue_api_token(user, name, days)
    return raw
