"""Effects bound to transitions: what a unit of work committed is announced and its work queued
once it is over, never for a change that rolled back, and the same from every entry."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from pathlib import Path

import pytest

from infra import events
from jobs.effects import following
from models import Invoice, outbox
from models.billing_periods import close_period
from models.invoices.lifecycle import Actor
from models.managed_accounts import AutoInvoice
from tests.graphql import gql

ROOT = Path(__file__).resolve().parent.parent
SEPT, OCT = date(2024, 9, 1), date(2024, 10, 1)
SYSTEM = Actor.system("test")
CLOSE = """mutation($month: Month!) { closeBillingPeriod(month: $month) {
  __typename ... on BillingPeriodClosed { invoicesCreated } } }"""


async def _listening(redis):
    listener = redis.pubsub()
    await listener.subscribe(events.channel(redis, events.INVOICE_CHANNEL))
    await listener.get_message(timeout=1)  # the subscription's confirmation
    return listener


async def _heard(listener) -> list[tuple[str, str]]:
    """(account, status) of each invoice event published since the last call."""
    heard = []
    while (message := await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
        change = json.loads(message["data"])
        heard.append((change["managed_account_id"], change["status"]))
    return sorted(heard)


async def _queued(redis) -> list[tuple[str, list[str], int]]:
    """(function, accounts of the invoices it is for, tries) of each queued generation job."""
    queued = []
    for job in await redis.queued_jobs():
        ids, tries = job.args
        accounts = await Invoice.filter(id__in=ids).values_list("managed_account_id", flat=True)
        queued.append((job.function, sorted(str(account) for account in accounts), tries))
    return queued


@pytest.fixture
async def auto_invoiced(world):
    """`world.account` generates its invoice when its month closes; `other_account` does not."""
    world.account.auto_invoice = AutoInvoice.GENERATE
    await world.account.save()
    return world


async def test_a_rolled_back_transaction_runs_no_effect(auto_invoiced, redis):
    world = auto_invoiced
    listener = await _listening(redis)
    async with following(redis):
        with pytest.raises(RuntimeError):
            async with outbox.transaction():
                assert len(await close_period(world.org.id, SEPT, SYSTEM)) == 2  # recorded, not committed
                raise RuntimeError("the transaction rolls back")
    assert await Invoice.all().count() == 0
    assert await redis.queued_jobs() == []
    assert await _heard(listener) == []

    # The same close, committed: announced and its generation queued, once the unit of work is over.
    async with following(redis):
        async with outbox.transaction():
            await close_period(world.org.id, SEPT, SYSTEM)
        assert await redis.queued_jobs() == []
    assert await _queued(redis) == [("generate_invoices", [str(world.account.id)], 1)]
    assert await _heard(listener) == sorted(
        [
            (str(world.account.id), "GENERATING"),
            (str(world.other_account.id), "READY_TO_INVOICE"),
        ]
    )
    await listener.aclose()


async def test_what_committed_before_an_error_is_followed_by_its_effects_once(auto_invoiced, redis):
    world = auto_invoiced
    listener = await _listening(redis)
    with pytest.raises(RuntimeError):
        async with following(redis):
            await close_period(world.org.id, SEPT, SYSTEM)
            raise RuntimeError("a later step fails; the close stands")
    assert await _queued(redis) == [("generate_invoices", [str(world.account.id)], 1)]
    assert len(await _heard(listener)) == 2
    # Outside any unit of work (a script calling the domain) nothing follows: nothing recorded.
    await close_period(world.org.id, OCT, SYSTEM)
    assert len(await redis.queued_jobs()) == 1
    assert await _heard(listener) == []
    await listener.aclose()


async def test_a_month_closed_from_the_command_line_or_the_api_queues_the_same_work(
    client,
    auto_invoiced,
    redis,
    settings,
):
    world = auto_invoiced
    listener = await _listening(redis)
    closed = await gql(client, CLOSE, {"month": "2024-09"}, token=world.tokens["owner"])
    assert closed["data"]["closeBillingPeriod"] == {"__typename": "BillingPeriodClosed", "invoicesCreated": 2}
    by_api = (await _queued(redis), await _heard(listener))
    await redis.flushdb()

    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "invoicing",
        "close-period",
        "2024-10",
        "--organization",
        str(world.org.id),
        cwd=ROOT,
        env=settings.child_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await command.communicate()
    assert command.returncode == 0, err.decode()
    assert "2 invoices ready" in out.decode()
    by_command = (await _queued(redis), await _heard(listener))

    assert (
        by_api
        == by_command
        == (
            [("generate_invoices", [str(world.account.id)], 1)],
            sorted([(str(world.account.id), "GENERATING"), (str(world.other_account.id), "READY_TO_INVOICE")]),
        )
    )
    await listener.aclose()
