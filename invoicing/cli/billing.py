"""The invoice pipeline from a terminal: close a month, generate it, export it."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.settings import Settings
from invoicing.cli.common import (
    app,
    committed,
    console,
    errors,
    find_organization,
    money,
    parse_month,
    resolved_settings,
    run,
)


@app.command("close-period")
def close_period(
    month: str = typer.Argument(..., help="The month to close, YYYY-MM."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    force: bool = typer.Option(False, help="Close even though a cost source's data of the month is not complete."),
) -> None:
    """Close a past month: every managed account gets a READY_TO_INVOICE invoice. While a cost
    source's data of the month is not complete (see `completeness`), only with --force."""
    settings = resolved_settings()
    created = run(settings, functools.partial(_close_period, parse_month(month), organization, force))
    console.print(f"[green]{month} closed[/green]: {created} invoices ready to invoice.")


async def _close_period(month, organization_ref: str | None, force: bool) -> int:
    from models.actors import Actor
    from models.billing_periods import close_period as close

    organization = await find_organization(organization_ref)
    return len(await close(organization.id, month, Actor.system("cli"), must_be_past=True, force=force))


@app.command()
def completeness(
    month: str = typer.Argument(..., help="The month, YYYY-MM."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
) -> None:
    """How complete a month's cost data is, per cost source and provider (MISSING, PARTIAL,
    COMPLETE), and whether the month was closed before it was."""
    settings = resolved_settings()
    console.print(run(settings, functools.partial(_completeness, parse_month(month), organization)))


async def _completeness(month, organization_ref: str | None) -> Table:
    from models.billing_periods import BillingPeriod
    from models.completeness import month_sources, overall

    organization = await find_organization(organization_ref)
    sources = await month_sources(organization.id, month, organization.data_settle_hours)
    period = await BillingPeriod.filter(organization_id=organization.id, start_date=month).first()
    state = overall(sources)
    title = f"{month:%Y-%m}: {state.value if state else 'no cost source'}"
    if period is not None and period.forced_at is not None:
        title += f", closed before complete on {period.forced_at:%Y-%m-%d %H:%M} UTC"
    table = Table("Source", "Provider", "State", "Latest delivery written", title=title)
    for source in sources:
        table.add_row(escape(source.source_name), escape(source.provider or ""), source.state.value,
                      f"{source.written_at:%Y-%m-%d %H:%M} UTC" if source.written_at else "")
    return table


@app.command()
def generate(
    month: str = typer.Argument(..., help="Generate this month's ready invoices, YYYY-MM."),
    organization: str | None = typer.Option(None, help="Organization name or id (default: the only one)."),
    wait: bool = typer.Option(True, help="Wait until the worker has generated them all."),
) -> None:
    """Generate every READY_TO_INVOICE invoice of a month (the worker renders the PDFs) and wait
    for the worker to finish them (--no-wait: only queue them)."""
    settings = resolved_settings()
    table = run(settings, functools.partial(_generate, settings, parse_month(month), organization, wait))
    console.print(table)


async def _generate(settings: Settings, month, organization_ref: str | None, wait: bool) -> Table:
    from models.actors import Actor
    from models.invoices import Invoice, InvoiceStatus
    from models.invoices.actions import start_generations

    organization = await find_organization(organization_ref)
    ready = Invoice.filter(organization_id=organization.id, billing_period__start_date=month)
    chosen = await ready.filter(status=InvoiceStatus.READY_TO_INVOICE).values_list("id", flat=True)
    # Their jobs are queued before the command waits for them.
    async with committed(settings):
        outcomes = await start_generations(chosen, organization.id, Actor.system("cli"))
    ids = [outcome.invoice.id for outcome in outcomes if outcome.invoice]
    refused = [outcome.error.message for outcome in outcomes if outcome.error]
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
                      f"{money(invoice.total)} {invoice.currency}")
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
    """Export a month's approved invoices as Xero or detailed CSV (a zip past 500 invoices in Xero
    format, or with the invoices' credit notes as a second file)."""
    from models.exports import ExportFormat

    try:
        fmt = ExportFormat(format.upper())
    except ValueError:
        raise typer.BadParameter(f"'{format}' is not a format; write xero or detailed.") from None
    settings = resolved_settings()
    file = run(settings, functools.partial(_export, parse_month(month), fmt, organization))
    target = output or Path(file.filename)
    target.write_bytes(file.data)
    console.print(f"[green]wrote[/green] {target}: {file.invoice_count} invoices.")


async def _export(month, fmt, organization_ref: str | None):
    from models.exports import export_month

    organization = await find_organization(organization_ref)
    with Progress(
        SpinnerColumn(), TextColumn("Exporting"), TextColumn("{task.completed:,} invoices"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task("export", total=None)
        return await export_month(organization, month, fmt, lambda done: bar.update(task, completed=done))
