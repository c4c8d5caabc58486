"""Printing a statement of account: asked for by `printStatement`, printed here in the worker's
warm Chromium like the other documents, and kept in storage under a name its content decides
(`models.statements.statement_path`), so the same statement is printed once."""

from __future__ import annotations

import asyncio
from datetime import date

from infra import storage
from jobs.credit_notes import stable_pdf
from jobs.effects import runs_effects
from jobs.locales import page_label
from jobs.rendering import render_statement_html
from models.managed_accounts import ManagedAccount
from models.statements import statement, statement_path, statement_view


@runs_effects
async def print_statement(ctx: dict, account_id: str, start: str, end: str) -> str:
    """Print and keep the account's statement from `start` to `end` as it stands now."""
    account = await ManagedAccount.get_or_none(id=account_id)
    if account is None:
        return "nothing to do"
    found = await statement(account, date.fromisoformat(start), date.fromisoformat(end))
    view = await statement_view(found)
    path = statement_path(account, view)
    settings = ctx["settings"]
    if await asyncio.to_thread(storage.exists, settings, path):
        return "printed already"
    html = render_statement_html(view)
    pdf = stable_pdf(await ctx["pdf"].render(html, page_label=page_label(view["locale"])), found.today)
    await asyncio.to_thread(storage.save, settings, path, pdf)
    return "printed"
