"""Webhook deliveries: 10,000 events to 10 endpoints, from the commit to the receiver.

Ten organizations each get one endpoint (subscribed to `payment.recorded`) on a receiver that
runs as its own process on loopback (uvicorn; it verifies every signature with
`standardwebhooks` and notes when each event arrived). The worker runs as `invoicing worker`
does, in a process of its own. This process records 10,000 payments, spread evenly over the
organizations' invoices, each a unit of work of its own as a mutation is (ten writers side by
side), noting the time of each commit; the effects queue the events and wake the worker's delivery lanes.

Prints the events and deliveries, the signatures that failed (0), `deliveries_per_s` (from the
first commit to the last receipt) and, last, `p99_ms` from commit to receipt.

The database named by --database-url is DROPPED and recreated: never point it at one you keep.

    .venv/bin/python bench/webhooks.py [--events 10000] [--endpoints 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_costs import DEFAULT_DATABASE_URL, fresh_database  # noqa: E402

WRITERS = 10


def receiver_app(secrets_file: Path):
    """The receiver: verifies each delivery and notes (payment id, arrival, verified)."""
    from standardwebhooks import Webhook, WebhookVerificationError
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    secrets: dict[str, Webhook] = {}
    arrivals: list[tuple[str, float, bool]] = []

    async def receive(request):
        arrived = time.time()
        if not secrets:
            secrets.update({path: Webhook(secret) for path, secret in json.loads(secrets_file.read_text()).items()})  # noqa: ASYNC240 (once, a small file)
        body = await request.body()
        try:
            payload = secrets[request.path_params["path"]].verify(body, dict(request.headers))
            arrivals.append((payload["data"]["payment"]["id"], arrived, True))
        except (WebhookVerificationError, KeyError):
            arrivals.append(("", arrived, False))
        return PlainTextResponse("ok")

    async def stats(request):
        return JSONResponse(arrivals)

    return Starlette(routes=[Route("/hooks/{path}", receive, methods=["POST"]), Route("/stats", stats)])


def serve_receiver(port: int, secrets_file: Path) -> None:
    import uvicorn

    uvicorn.run(receiver_app(secrets_file), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def seed(endpoints: int, invoices_each: int, receiver: str, secrets_file: Path):
    """Per organization: an owner, invoices to pay, and one endpoint at the receiver."""
    from infra.settings import get_settings
    from models import BillingPeriod, Invoice, InvoiceRevision, ManagedAccount, Organization
    from models.auth import Principal, create_user
    from models.base import Scope
    from models.webhooks import EndpointInput, create_endpoint

    settings = get_settings()
    owners, invoices, secrets = [], [], {}
    total = Decimal(100000)

    async def anywhere(url: str) -> None:
        return None

    for n in range(endpoints):
        org = await Organization.create(name=f"Bench MSP {n}")
        owner = Principal(await create_user(org.id, email=f"owner{n}@bench.example", scope=Scope.OWNER), None)
        account = await ManagedAccount.create(organization=org, name="Customer")
        for month in range(invoices_each):
            period = await BillingPeriod.create(
                organization=org,
                start_date=date(2020 + month // 12, month % 12 + 1, 1),
                end_date=date(2020 + (month + 1) // 12, (month + 1) % 12 + 1, 1),
            )
            invoice = await Invoice.create(organization=org, managed_account=account, billing_period=period, currency="USD")
            revision = await InvoiceRevision.create(
                invoice=invoice,
                revision=1,
                template_version="1",
                currency="USD",
                cost_currency="USD",
                subtotal=total,
                adjustments=0,
                charges=0,
                total=total,
                issue_date=date(2026, 1, 1),
                due_date=date(2099, 1, 1),
                snapshot={},
            )
            await Invoice.filter(id=invoice.id).update(
                current_revision_id=revision.id,
                status="APPROVED",
                number=f"INV-{n}-{month}",
                subtotal=total,
                total=total,
                issue_date=date(2026, 1, 1),
                due_date=date(2099, 1, 1),
                approved_at=datetime.now(UTC),
            )
            invoices.append((owner, invoice))
        _, secret = await create_endpoint(
            owner, settings, EndpointInput(url=f"{receiver}/hooks/org{n}", events=["payment.recorded"]), anywhere
        )
        secrets[f"org{n}"] = secret
        owners.append(owner)
    secrets_file.write_text(json.dumps(secrets))  # noqa: ASYNC240 (a small file, before the run)
    return invoices


async def main(events: int, endpoints: int, database_url: str, redis_url: str) -> None:
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, WEBHOOK_PRIVATE_ADDRESSES="true", WEBHOOK_ALLOW_HTTP="true")
    import httpx

    from infra import broker, db
    from infra.settings import get_settings
    from jobs.effects import following
    from models.payments.ledger import record_payment
    from models.payments.tables import PaymentMethod
    from models.webhooks import node_id

    await fresh_database(database_url)
    settings = get_settings()
    redis = await broker.connect(settings)
    await redis.delete(broker.QUEUE_NAME, broker.HEALTH_CHECK_KEY)
    port = free_port()
    secrets_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-webhooks-{os.getpid()}.json"
    invoices_each = max(events // endpoints // 100, 1)
    invoices = await seed(endpoints, invoices_each, f"http://127.0.0.1:{port}", secrets_file)
    environment = {**os.environ, "WEBHOOK_PRIVATE_ADDRESSES": "true", "WEBHOOK_ALLOW_HTTP": "true"}
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port), "--secrets", str(secrets_file)], env=environment)  # noqa: ASYNC220
    worker = subprocess.Popen(  # noqa: ASYNC220 (started once, before the run)
        [sys.executable, "-m", "invoicing", "worker"], env=environment, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(f"http://127.0.0.1:{port}/stats")
                    break
                await asyncio.sleep(0.1)
            for _ in range(600):  # the worker is up once its health check is written
                if await redis.exists(broker.HEALTH_CHECK_KEY):
                    break
                await asyncio.sleep(0.1)
            committed: dict[str, float] = {}
            started = time.time()

            async def writer(first: int) -> None:
                # Writers side by side, as API requests are; one invoice per writer at a time.
                for n in range(first, events, WRITERS):
                    owner, invoice = invoices[n % len(invoices)]
                    async with following(redis):
                        done = await record_payment(
                            owner, invoice.id, amount=Decimal("1.00"), paid_on=date(2026, 1, 2), method=PaymentMethod.BANK_TRANSFER
                        )
                        committed[node_id("Payment", done.payment.id)] = time.time()

            await asyncio.gather(*(writer(first) for first in range(WRITERS)))
            last_commit = time.time()
            arrivals: list = []
            deadline = time.time() + 600
            while time.time() < deadline:
                arrivals = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
                if len(arrivals) >= events:
                    break
                await asyncio.sleep(0.5)
    finally:
        for process in (worker, receiver):
            process.send_signal(signal.SIGTERM)
        for process in (worker, receiver):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        secrets_file.unlink(missing_ok=True)
        await redis.aclose()
        await db.close()
    latencies = sorted((arrived - committed[payment]) * 1000 for payment, arrived, ok in arrivals if ok and payment in committed)
    finished = max(arrived for _, arrived, _ in arrivals) if arrivals else time.time()
    print(f"events {events} endpoints {endpoints} committed_in_s {last_commit - started:.1f}")
    print(f"deliveries {len(arrivals)} unverified {sum(1 for _, _, ok in arrivals if not ok)}")
    print(f"p50_ms {latencies[len(latencies) // 2]:.0f}" if latencies else "p50_ms n/a")
    print(f"deliveries_per_s {len(arrivals) / max(finished - started, 1e-9):.0f}")
    print(f"p99_ms {latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]:.0f}" if latencies else "p99_ms n/a")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP and recreate (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secrets", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.receiver:
        serve_receiver(arguments.receiver, arguments.secrets)
    else:
        asyncio.run(main(arguments.events, arguments.endpoints, arguments.database_url, arguments.redis_url))
