"""Webhook deliveries: 10,000 events to 10 endpoints, from the commit to the receiver, and the
worker's other work beside them.

Ten organizations each get one endpoint (subscribed to `invoice.overdue` and
`payment.recorded`) on a receiver that runs as its own process on loopback (uvicorn; it
verifies every signature with `standardwebhooks` and notes when each event arrived). The
worker runs as `invoicing worker` does, in a process of its own (with its warm Chromium).

1. Other work alone: `--other` invoices of one organization generated (closed month, started
   as `generateInvoices` does, printed by the worker), timed from the start to the last
   AWAITING_APPROVAL (after the same amount of another organization's, untimed: the worker's
   first generation warms its templates and browser).
2. A burst: 10,000 approved invoices (1,000 per organization) fall due, and one run of the
   overdue marking commits them all: 10,000 `invoice.overdue` events at once. Right after its
   commit, the same amount of other work (a second organization's invoices) is started and
   timed while the burst waits: the lanes post nothing while the worker runs other jobs (but
   the posts in flight as the first generation job starts), and deliver the burst once it
   runs none. Prints `deliveries_per_s` (10,000 over the time from that commit to the last
   receipt) and the p50/p99 from the commit to each receipt (queueing included).
3. Other work alone again (a third organization), once the burst is delivered.
4. Steady changes: 200 payments recorded one after another, each a unit of work as a mutation
   is; prints the p50/p99 from each commit to its receipt (`steady_p99_ms`).

`other_work_ratio` is the time of the other work during the burst over the mean of its two
times alone (1.0: unaffected), printed with how far apart the two runs alone are (the
machine's noise); `other_work_cpu_ratio` is the same for the worker's CPU seconds, which the
machine's load hardly moves (the lanes' share of the worker while it does the other work).
Each run of the other work ends at its last AWAITING_APPROVAL, and its CPU is read there from
the worker's CPU sampled every 20 ms (the bench's poll sees that moment later, by when the
lanes post again). `cpu_ms_per_delivery` is the worker's CPU per delivery once the other work
ended (the lanes' cost alone); `--lane N` measures it in this process, without a worker or
other work. The last line is the burst's `p99_ms`. The database named by --database-url is
DROPPED and recreated: never point it at one you keep; `--worker-log` keeps the worker's log
(a generation that failed and was tried again shows there).

    .venv/bin/python bench/webhooks.py [--events 10000] [--endpoints 10] [--steady 200] [--other 24] [--worker-log FILE]
    .venv/bin/python bench/webhooks.py --lane 2000 [--endpoints 10] [--keep-database]
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
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.import_costs import DEFAULT_DATABASE_URL, fresh_database  # noqa: E402


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
            data = payload["data"]
            arrivals.append(((data.get("payment") or data["invoice"])["id"], arrived, True))
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
    """Per organization: an owner, approved invoices due long ago (one account and month each),
    and one endpoint at the receiver."""
    from tortoise import connections

    from infra.settings import get_settings
    from models import BillingPeriod, Invoice, ManagedAccount, Organization
    from models.auth import Principal, create_user
    from models.base import Scope
    from models.webhooks import EndpointInput, create_endpoint

    settings = get_settings()
    owners, secrets = [], {}

    async def anywhere(url: str) -> None:
        return None

    for n in range(endpoints):
        org = await Organization.create(name=f"Bench MSP {n}")
        owner = Principal(await create_user(org.id, email=f"owner{n}@bench.example", scope=Scope.OWNER), None)
        accounts = [await ManagedAccount.create(organization=org, name=f"Customer {a}") for a in range(10)]
        months = [date(1990 + m // 12, m % 12 + 1, 1) for m in range(invoices_each // 10 + 1)]
        periods = [
            BillingPeriod(organization=org, start_date=start, end_date=(start + timedelta(days=32)).replace(day=1)) for start in months
        ]
        await BillingPeriod.bulk_create(periods)
        periods = await BillingPeriod.filter(organization_id=org.id).order_by("start_date")
        await Invoice.bulk_create(
            [
                Invoice(organization=org, managed_account=accounts[i % 10], billing_period=periods[i // 10], currency="USD")
                for i in range(invoices_each)
            ],
            batch_size=1000,
        )
        _, secret = await create_endpoint(
            owner, settings, EndpointInput(url=f"{receiver}/hooks/org{n}", events=["invoice.overdue", "payment.recorded"]), anywhere
        )
        secrets[f"org{n}"] = secret
        owners.append(owner)
    # Each invoice generated (a revision of 1,000.00) and approved, due in 2999 until the burst
    # moves its due date to 1990 (so that the worker's own overdue run at its start leaves it).
    await connections.get("default").execute_script("""
        INSERT INTO invoice_revisions (id, invoice_id, revision, created_at, template_version, currency, cost_currency,
            exchange_rate, subtotal, adjustments, charges, total, issue_date, due_date, snapshot)
        SELECT gen_random_uuid(), id, 1, now(), '1', 'USD', 'USD', 1, 1000, 0, 0, 1000, '1990-01-01', '2999-01-31', '{}'
        FROM invoices;
        UPDATE invoices AS i SET current_revision_id = r.id, status = 'APPROVED', subtotal = 1000, total = 1000,
            number = 'INV-' || left(i.id::text, 8), issue_date = '1990-01-01', due_date = '2999-01-31', approved_at = now()
        FROM invoice_revisions AS r WHERE r.invoice_id = i.id;
    """)
    secrets_file.write_text(json.dumps(secrets))  # noqa: ASYNC240 (a small file, before the run)
    invoices = await Invoice.all().order_by("id")
    by_org = {owner.organization_id: owner for owner in owners}
    return [(by_org[invoice.organization_id], invoice) for invoice in invoices]


async def other_work(organizations: int, invoices: int) -> list:
    """The other work's organizations: `invoices` accounts each with a closed month of costs
    (`bench/month_close.py`'s), their invoices ready to generate."""
    from bench.month_close import MONTH
    from bench.month_close import seed as seed_month
    from models import Organization, User
    from models.actors import Actor
    from models.billing_periods import close_period

    found = []
    for n in range(organizations):
        org = await seed_month(invoices, 20)
        await Organization.filter(id=org.id).update(name=f"Other work {n}", invoice_prefix=f"OW{n}")
        # An e-mail names one user across organizations: the next seed's owner takes the same one.
        await User.filter(organization_id=org.id).update(email=f"owner@other{n}.example")
        await close_period(org.id, MONTH, Actor.system("bench"))
        found.append(org)
    return found


class CpuTrace:
    """A process's CPU seconds sampled every `every` seconds, each with when it was taken: its
    CPU at a moment known only afterwards, interpolated between the samples around it."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.time(), _cpu(self.pid)))
            await asyncio.sleep(self.every)

    async def at(self, moment: float) -> float:
        """The CPU seconds at `moment` (waiting for a sample after it)."""
        while not self.samples or self.samples[-1][0] < moment:  # noqa: ASYNC110 (sampled by run())
            await asyncio.sleep(self.every)
        after = next(i for i, (taken, _) in enumerate(self.samples) if taken >= moment)
        if after == 0:
            return self.samples[0][1]
        (t0, c0), (t1, c1) = self.samples[after - 1], self.samples[after]
        return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


async def generate(redis, org) -> tuple[float, float]:
    """Generate the organization's invoices as `generateInvoices` does: when it started and
    when the last turned AWAITING_APPROVAL (time.time())."""
    from bench.month_close import wait_until_generated
    from jobs import dispatch
    from models import Invoice
    from models.actors import Actor
    from models.auth import create_user
    from models.base import Scope
    from models.invoices.actions import start_generations

    owner = await create_user(org.id, f"owner@{org.id.hex}.example", Scope.OWNER)
    ids = await Invoice.filter(organization_id=org.id).order_by("created_at", "id").values_list("id", flat=True)
    started = time.time()
    await start_generations(list(ids), org.id, Actor(user_id=owner.id))
    await dispatch.enqueue_generation(redis, ids)
    return started, await wait_until_generated(org, len(ids), timeout=600)


async def main(
    events: int, endpoints: int, steady: int, other: int, database_url: str, redis_url: str, worker_log: Path | None = None
) -> None:
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, WEBHOOK_PRIVATE_ADDRESSES="true", WEBHOOK_ALLOW_HTTP="true")
    import httpx
    from tortoise import connections

    from infra import broker, db
    from infra.settings import get_settings
    from jobs.effects import following
    from models.actors import Actor
    from models.payments.ledger import record_payment
    from models.payments.overdue import mark_overdue
    from models.payments.tables import PaymentMethod
    from models.webhooks import node_id

    await fresh_database(database_url)
    settings = get_settings()
    redis = await broker.connect(settings)
    await redis.delete(broker.QUEUE_NAME, broker.HEALTH_CHECK_KEY)
    port = free_port()
    secrets_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-webhooks-{os.getpid()}.json"
    invoices_each = events // endpoints
    invoices = await seed(endpoints, invoices_each, f"http://127.0.0.1:{port}", secrets_file)
    others = await other_work(4, other)
    seeded = time.time()
    environment = {**os.environ, "WEBHOOK_PRIVATE_ADDRESSES": "true", "WEBHOOK_ALLOW_HTTP": "true"}
    receiver = start_receiver(port, secrets_file, environment)
    output = worker_log.open("w") if worker_log else subprocess.DEVNULL  # noqa: ASYNC230 (opened once, before the run)
    worker = subprocess.Popen(  # noqa: ASYNC220 (started once, before the run)
        [sys.executable, "-m", "invoicing", "worker"], env=environment, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient() as http:
            await receiver_ready(http, port)
            for _ in range(600):  # the worker is up once its health check is written
                if await redis.exists(broker.HEALTH_CHECK_KEY):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # its jobs run at start-up end
            started = time.time()
            begun, ended = await generate(redis, others[3])  # the worker's first generation warms its templates and browser
            warm = ended - begun
            alone, alone_cpu = [], []
            trace = CpuTrace(worker.pid)
            sampling = asyncio.create_task(trace.run())

            async def other_alone(org) -> None:
                cpu = _cpu(worker.pid)
                begun, ended = await generate(redis, org)
                alone.append(ended - begun)
                alone_cpu.append(await trace.at(ended) - cpu)

            await other_alone(others[0])
            print(f"other work: warming {warm:.2f} s, alone {alone[0]:.2f} s", flush=True)
            # The approved invoices' guard (a trigger) set aside for this one move of the seed.
            await connections.get("default").execute_script(
                "BEGIN; SET LOCAL session_replication_role = replica;"
                " UPDATE invoices SET due_date = '1990-01-31' WHERE status = 'APPROVED';"
                " UPDATE invoice_revisions SET due_date = '1990-01-31' WHERE due_date = '2999-01-31'; COMMIT;"
            )
            committed: dict[str, float] = {}
            async with following(redis):
                overdue = await mark_overdue(datetime.now(UTC), Actor.system("bench"))
                burst_commit = time.time()
            committed.update({node_id("Invoice", invoice.id): burst_commit for invoice in overdue})
            cpu_burst_started = _cpu(worker.pid)
            begun, beside_ended = await generate(redis, others[1])
            beside, cpu_beside_ended = beside_ended - begun, await trace.at(beside_ended)
            burst = await _arrivals(http, port, len(overdue))
            cpu_burst_ended = _cpu(worker.pid)
            await other_alone(others[2])
            for n in range(steady):
                owner, invoice = invoices[n % len(invoices)]
                async with following(redis):
                    done = await record_payment(
                        owner, invoice.id, amount=Decimal("1.00"), paid_on=date(2026, 1, 2), method=PaymentMethod.BANK_TRANSFER
                    )
                    committed[node_id("Payment", done.payment.id)] = time.time()
            arrivals = await _arrivals(http, port, len(overdue) + steady)
            sampling.cancel()
    finally:
        for process in (worker, receiver):
            process.send_signal(signal.SIGTERM)
        for process in (worker, receiver):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        secrets_file.unlink(missing_ok=True)
        if worker_log:
            output.close()
        await redis.aclose()
        await db.close()

    def figures(found: list) -> list[float]:
        return sorted((arrived - committed[key]) * 1000 for key, arrived, ok in found if ok and key in committed)

    burst_ms, steady_ms = figures(burst), figures(arrivals[len(burst) :])
    finished = max(arrived for _, arrived, _ in burst) if burst else time.time()
    delivered_before = sum(1 for _, arrived, ok in burst if ok and arrived <= beside_ended)
    print(f"events {len(overdue)} endpoints {endpoints} worker_ready_in_s {started - seeded:.1f}")
    print(f"deliveries {len(arrivals)} unverified {sum(1 for _, _, ok in arrivals if not ok)}")
    print(f"steady_events {steady} steady_p50_ms {_at(steady_ms, 0.5)} steady_p99_ms {_at(steady_ms, 0.99)}")
    print(
        f"other_work {other} invoices generated: alone_s {alone[0]:.2f} {alone[1]:.2f} during_burst_s {beside:.2f}"
        f" (burst delivered {delivered_before} of {len(burst)} meanwhile, in {finished - burst_commit:.1f} s in all)"
    )
    spread = (max(alone) - min(alone)) / (sum(alone) / len(alone))
    print(f"other_work_ratio {beside / (sum(alone) / len(alone)):.2f} (its two runs alone differ by {100 * spread:.0f}% of their mean)")
    beside_cpu = cpu_beside_ended - cpu_burst_started
    print(
        f"other_work_cpu_ratio {beside_cpu / (sum(alone_cpu) / len(alone_cpu)):.2f} (the worker's CPU seconds:"
        f" alone {alone_cpu[0]:.2f} {alone_cpu[1]:.2f}, during the burst {beside_cpu:.2f})"
    )
    after_other = sum(1 for _, arrived, ok in burst if ok and arrived > beside_ended)
    print(
        f"cpu_ms_per_delivery {1000 * (cpu_burst_ended - cpu_beside_ended) / max(after_other, 1):.2f}"
        f" (the worker's CPU over the {after_other} deliveries after the other work ended)"
    )
    print(f"p50_ms {_at(burst_ms, 0.5)}")
    print(f"deliveries_per_s {len(burst) / max(finished - burst_commit, 1e-9):.0f}")
    print(f"p99_ms {_at(burst_ms, 0.99)}")


async def lane(deliveries: int, endpoints: int, database_url: str, keep: bool = False) -> None:
    """One lane alone, in this process: `deliveries` queued at once to `endpoints` endpoints on
    the loopback receiver, then delivered by `deliver_due` as a worker's lane does; prints the
    CPU this process used per delivery (claiming, signing, posting, logging), a figure that
    the machine's load hardly moves, beside the wall time. With `keep`, the database of an
    earlier run is emptied rather than made anew (migrating takes minutes on a busy machine)."""
    os.environ.update(DATABASE_URL=database_url, WEBHOOK_PRIVATE_ADDRESSES="true", WEBHOOK_ALLOW_HTTP="true")
    import httpx
    from tortoise import Tortoise

    from infra import db
    from infra.settings import get_settings
    from infra.webhooks import Sender
    from jobs.webhooks import deliver_due
    from models import Organization
    from models.auth import Principal, create_user
    from models.base import Scope
    from models.webhooks import EndpointInput, Event, WebhookDelivery, create_endpoint, queue_events

    started = time.perf_counter()
    if keep:
        await db.init(get_settings())
        await Tortoise.get_connection("default").execute_script("TRUNCATE organizations, users, webhook_events CASCADE")
    else:
        await fresh_database(database_url)
    print(f"database ready in {time.perf_counter() - started:.1f} s", flush=True)
    settings = get_settings()
    port = free_port()
    secrets_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-webhooks-{os.getpid()}.json"
    secrets, events = {}, []

    async def anywhere(url: str) -> None:
        return None

    for n in range(endpoints):
        org = await Organization.create(name=f"Bench MSP {n}")
        owner = Principal(await create_user(org.id, email=f"owner{n}@bench.example", scope=Scope.OWNER), None)
        _, secrets[f"org{n}"] = await create_endpoint(
            owner, settings, EndpointInput(url=f"http://127.0.0.1:{port}/hooks/org{n}", events=["payment.recorded"]), anywhere
        )
        events += [Event(org.id, "payment.recorded", _payment(n * deliveries + i)) for i in range(deliveries // endpoints)]
    secrets_file.write_text(json.dumps(secrets))  # noqa: ASYNC240 (a small file, before the run)
    await queue_events(events, datetime.now(UTC))
    receiver = start_receiver(port, secrets_file)
    try:
        async with httpx.AsyncClient() as http:
            await receiver_ready(http, port)
            cpu, wall = time.process_time(), time.perf_counter()
            async with Sender(settings, connections=settings.webhook_concurrency) as sender:
                attempted = await deliver_due(settings, sender)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            arrivals = await _arrivals(http, port, len(events))
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(20)
        secrets_file.unlink(missing_ok=True)
    delivered = await WebhookDelivery.filter(state="DELIVERED").count()
    await db.close()
    print(f"lane deliveries {attempted} delivered {delivered} unverified {sum(1 for _, _, ok in arrivals if not ok)}")
    print(f"lane_cpu_ms_per_delivery {1000 * cpu / max(attempted, 1):.2f} (wall {wall:.1f} s, {attempted / wall:.0f} a second)")


def start_receiver(port: int, secrets_file: Path, environment: dict[str, str] | None = None) -> subprocess.Popen:
    """The receiver, a process of its own (this file with `--receiver`)."""
    command = [sys.executable, __file__, "--receiver", str(port), "--secrets", str(secrets_file)]
    return subprocess.Popen(command, env=environment)


async def receiver_ready(http, port: int) -> None:
    """Until the receiver answers (20 s at most)."""
    import httpx

    for _ in range(200):
        with contextlib.suppress(httpx.HTTPError):
            await http.get(f"http://127.0.0.1:{port}/stats")
            return
        await asyncio.sleep(0.1)


def _payment(n: int) -> dict:
    """A payment event's data, about the size of a real one."""
    from models.webhooks import node_id

    invoice = {
        "id": node_id("Invoice", n),
        "number": f"INV-2026-{n:05d}",
        "status": "APPROVED",
        "paymentStatus": "PARTIALLY_PAID",
        "deliveryStatus": "SENT",
        "currency": "EUR",
        "total": "1250.00",
        "subtotal": "1033.06",
        "taxTotal": "216.94",
        "amountPaid": "100.00",
        "amountDue": "1150.00",
        "issueDate": "2026-11-01",
        "dueDate": "2026-11-30",
        "period": "2026-10",
        "replaces": None,
        "account": {"id": node_id("ManagedAccount", n % 10), "name": f"Customer {n % 10}"},
    }
    payment = {"id": node_id("Payment", n), "amount": "100.00", "paidOn": "2026-11-20", "method": "BANK_TRANSFER"}
    return {"payment": payment, "invoice": invoice}


def _cpu(pid: int) -> float:
    """CPU seconds the process has used (user and system)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _at(values: list[float], share: float) -> str:
    return f"{values[min(len(values) - 1, int(len(values) * share))]:.0f}" if values else "n/a"


async def _arrivals(http, port: int, count: int) -> list:
    """What the receiver has noted, once it holds `count` (an hour at most)."""
    deadline = time.time() + 3600
    while True:
        arrivals = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
        if len(arrivals) >= count or time.time() > deadline:
            return arrivals
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--steady", type=int, default=200)
    parser.add_argument("--other", type=int, default=24, help="invoices generated as the other work, each time")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to DROP and recreate (default: $BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--lane", type=int, help="only the CPU of one lane in this process: this many deliveries, queued at once")
    parser.add_argument("--keep-database", action="store_true", help="with --lane: empty the database of an earlier run")
    parser.add_argument("--worker-log", type=Path, help="write the worker's log there (discarded by default)")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secrets", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.receiver:
        serve_receiver(arguments.receiver, arguments.secrets)
    elif arguments.lane:
        asyncio.run(lane(arguments.lane, arguments.endpoints, arguments.database_url, arguments.keep_database))
    else:
        asyncio.run(
            main(
                arguments.events,
                arguments.endpoints,
                arguments.steady,
                arguments.other,
                arguments.database_url,
                arguments.redis_url,
                arguments.worker_log,
            )
        )
