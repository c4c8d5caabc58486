"""Moving the product's files: `invoicing storage copy` copies a local storage folder into the
bucket STORAGE_URL names, before the product runs on several machines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from infra import storage
from infra.settings import get_settings
from invoicing.cli.common import app, console

files = typer.Typer(help="The product's stored files (PDFs, exports, cost deliveries).", no_args_is_help=True)
app.add_typer(files, name="storage")


@files.command("copy")
def copy(
    source: Path = typer.Option(
        None,
        "--from",
        help="The local storage folder; default STORAGE_DIR (DATA_DIR/storage).",
        exists=True,
        file_okay=False,
    ),
) -> None:
    """Copy every file of a local storage folder into STORAGE_URL's bucket, then read each back
    and check its SHA-256. Safe to run again (files are written whole, over their earlier copy)."""
    settings = get_settings()
    if not settings.storage_url:
        console.print("[red]Set STORAGE_URL (s3://, az:// or gs://) to the bucket to copy into.[/red]")
        raise typer.Exit(2)
    folder = source or settings.storage_path
    console.print(f"Copying {folder} into {storage.describe(settings)}...")
    try:
        copied = asyncio.run(storage.copy_folder(settings, folder))
    except storage.StorageUnavailable as error:
        console.print(f"[red]The copy stopped: {error}. Check STORAGE_URL and its credentials; run it again.[/red]")
        raise typer.Exit(1) from None
    for relative in copied.mismatched:
        console.print(f"[red]{relative}: the copy's SHA-256 differs from the local file's.[/red]")
    console.print(
        f"Copied {copied.files:,} files ({copied.bytes:,} bytes); "
        f"{copied.files - len(copied.mismatched):,} verified by SHA-256, {len(copied.mismatched):,} differ."
    )
    if copied.mismatched:
        raise typer.Exit(1)
