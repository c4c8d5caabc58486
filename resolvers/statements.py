"""Statements of account: printing one as PDF on the worker."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated

import strawberry

from infra import storage
from jobs import dispatch
from models import statements
from schema.core.context import Info
from schema.core.mutations import mutation
from schema.core.nodes import node_uuid_or_none
from schema.core.permissions import ANY_USER
from schema.statements import AccountStatement, PrintStatementPayload, StatementPrinting


@strawberry.type
class Mutation:
    @mutation(
        description="Print the account's statement from `from` to `to` as PDF, in its language, on the worker; "
        "ask `statement.pdfUrl` (on `ManagedAccount.statement`) until it is set. The same statement is printed "
        "once. MSP users print any of their accounts', a customer its own.",
        scopes=ANY_USER,
    )
    async def print_statement(
        self,
        info: Info,
        account_id: strawberry.ID,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
    ) -> PrintStatementPayload:
        account = await statements.account_for(info.context.authenticated(), node_uuid_or_none(account_id, "ManagedAccount"))
        found = await statements.statement(account, from_, to)
        path = statements.statement_path(account, await statements.statement_view(found))
        printed = await asyncio.to_thread(storage.exists, info.context.settings, path)
        if not printed:
            await dispatch.enqueue_statement(info.context.redis, path, account.id, from_.isoformat(), to.isoformat())
        return StatementPrinting(statement=AccountStatement.of(found), ready=printed)
