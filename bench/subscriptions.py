"""Latency of live invoice events, from the commit to the subscriber, on loopback.

Starts the web service as its own process (uvicorn, as `invoicing serve` runs it), opens 1,
100 and 1,000 WebSocket subscribers to

    subscription { invoiceStatusChanged { status at invoice { number } } }

then, round after round, commits a change to an invoice, publishes it as every writer does,
and records when each subscriber receives it. Prints p50/p99 per subscriber count; the last
line is `p99_ms_at_1000 <value>`.

    .venv/bin/python bench/subscriptions.py [--database-url URL] [--redis-url URL] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.graphql_list import recreate  # noqa: E402

QUERY = "subscription { invoiceStatusChanged { status at invoice { number } } }"
ORIGIN = "http://127.0.0.1:8000"


async def seed():
    from models import BillingPeriod, Invoice, ManagedAccount, Organization
    from models.auth import TokenKind, create_user, issue_token
    from models.base import Scope

    org = await Organization.create(name="Bench MSP")
    account = await ManagedAccount.create(organization=org, name="Customer")
    period = await BillingPeriod.create(organization=org, start_date=date(2026, 10, 1), end_date=date(2026, 11, 1))
    invoice = await Invoice.create(
        organization=org, managed_account=account, billing_period=period, currency="USD", number="INV-2026-0001",
    )
    owner = await create_user(org.id, "bench@example.com", Scope.OWNER)
    raw, _ = await issue_token(owner, TokenKind.API, timedelta(days=1))
    return invoice, raw


class Subscriber:
    def __init__(self, address: str, token: str, received: dict):
        self.address, self.token, self.received = address, token, received

    async def open(self) -> None:
        import websockets

        self.ws = await websockets.connect(
            f"ws://{self.address}/graphql", subprotocols=["graphql-transport-ws"], origin=ORIGIN, max_queue=None,
        )
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}))
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
        self.task = asyncio.create_task(self.listen())

    async def listen(self) -> None:
        async for raw in self.ws:
            arrived = time.monotonic()
            message = json.loads(raw)
            if message.get("type") == "next":
                self.received.setdefault(message["payload"]["data"]["invoiceStatusChanged"]["at"], []).append(arrived)

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(address: str, token: str, invoice, redis, count: int, rounds: int) -> list[float]:
    from infra import events
    from models import Invoice

    received: dict[str, list[float]] = {}
    subscribers = [Subscriber(address, token, received) for _ in range(count)]
    for batch in range(0, count, 100):
        await asyncio.gather(*(s.open() for s in subscribers[batch:batch + 100]))
    await asyncio.sleep(0.5)  # every subscription registered on the server
    latencies = []
    for _ in range(rounds):
        at = datetime.now(UTC)
        await Invoice.filter(id=invoice.id).update(updated_at=at)  # the commit
        committed = time.monotonic()
        await events.publish(redis, [await Invoice.get(id=invoice.id)])
        key = at.isoformat()
        deadline = time.monotonic() + 10
        while len(received.get(key, ())) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        arrivals = received.get(key, [])
        assert len(arrivals) == count, f"{len(arrivals)} of {count} subscribers received round {key}"
        latencies += [(arrived - committed) * 1000 for arrived in arrivals]
        await asyncio.sleep(0.02)
    await asyncio.gather(*(s.close() for s in subscribers))
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/invoicing_bench_subscriptions")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    os.environ.update(
        DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, ENVIRONMENT="production",
        PORT=str(args.port), ALLOWED_ORIGINS=json.dumps([ORIGIN]), SUBSCRIPTION_RECHECK_SECONDS="3600",
    )
    import httpx

    from infra import broker, db
    from infra.settings import get_settings

    settings = get_settings()
    await recreate(args.database_url)
    await db.migrate(settings)
    await db.close()
    await db.init(settings)
    invoice, token = await seed()
    redis = await broker.connect(settings)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(args.port), "--log-level", "warning"],
        cwd=ROOT, env=dict(os.environ),
    )
    address = f"127.0.0.1:{args.port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://{address}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        figures = {}
        for count in (1, 100, 1000):
            latencies = await measure(address, token, invoice, redis, count, args.rounds)
            figures[count] = percentile(latencies, 0.99)
            print(f"subscribers {count:>4}: p50 {statistics.median(latencies):7.2f} ms  "
                  f"p99 {figures[count]:7.2f} ms  ({len(latencies)} deliveries)")
    finally:
        server.terminate()
        server.wait(15)
        await redis.aclose()
        await db.close()
    print(f"p99_ms_at_1000 {figures[1000]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
