"""An organization's own invoice template, tried from a terminal before it is uploaded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.markup import escape

from invoicing.cli.common import app, console, errors
from jobs import invoice_templates
from jobs.rendering import sample_view
from models.invoice_templates import MAX_TEMPLATE_BYTES, TemplateRejected
from models.locales import SUPPORTED_LOCALES


@app.command("check-template")
def check_template(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The Jinja template (UTF-8)."),
    locale: str = typer.Option("en", help=f"Print the sample invoice in this language ({', '.join(SUPPORTED_LOCALES)})."),
    html: Path | None = typer.Option(None, help="Write the sample invoice, as the template prints it, to this HTML file."),
) -> None:
    """Check an invoice template as `uploadInvoiceTemplate` will: compiled and a sample invoice
    printed with it in the sandbox. A template that fails is refused with the line and the reason."""
    source = file.read_text(encoding="utf-8")
    if len(source.encode()) > MAX_TEMPLATE_BYTES:
        errors.print(f"The template is larger than {MAX_TEMPLATE_BYTES} bytes.")
        raise typer.Exit(1)
    try:
        printed = asyncio.run(_printed(source, locale))
    except TemplateRejected as exc:
        errors.print(f"[red]Refused[/red]: {escape(exc.message)}")
        raise typer.Exit(1) from None
    if html is not None:
        html.write_text(printed, encoding="utf-8")
    console.print(f"[green]{escape(file.name)} prints the sample invoice[/green] ({len(printed)} characters of HTML).")


async def _printed(source: str, locale: str) -> str:
    await invoice_templates.check_template(source)
    (printed,) = await invoice_templates.render_own(source, [{**sample_view(), "locale": locale}])
    return printed
