"""Latency of live invoice events, from the commit to the subscriber, on loopback.

Starts the web service as its own process (uvicorn, as `invoicing serve` runs it), opens 1,
100 and 1,000 WebSocket subscribers to

    subscription { invoiceStatusChanged { status at invoice { number } } }

then, round after round, commits a change to an invoice, publishes it as every writer does,
and records when each subscriber receives it. Then the same with 10,000 subscribers spread
over two web processes (`--large`, `--large-processes`). Prints p50/p99 per subscriber count,
and the CPU each web process spent per event (a figure that other load on the machine does
not inflate as much as the latencies); the last line is `p99_ms_at_1000 <value>`.

The subscribers live in one client process, as raw asyncio protocols for the handshakes; during
a round one epoll loop reads all their sockets (`Reader`), each subscriber time-stamping a
message when its last byte arrives, having only cut the bytes at frame boundaries, and decoding
the round's frames once the round is over, so that the client's own work does not delay the
later frames. Every subscriber's receipt is timed; the p99 is over all of them. An event is
published as writers publish one: the invoice they hold, right after their commit.

`--compare` runs every count four times, in a row: "before" (SUBSCRIPTION_FANOUT=false:
each subscriber's event executed and encoded on its own; WS_PER_MESSAGE_DEFLATE=true: each
frame compressed for each subscriber, uvicorn's default), "fan-out" (shared execution, still
compressed), "tasks" (shared execution, each frame sent through ASGI by its subscriber's task:
uvicorn's stock WebSocket protocol) and "now" (the defaults: frames written by the relay,
infra/live_sockets.py), and prints before/now from the same run. `--quick`: 1 and 100 and 1,000
subscribers only, 10 rounds.

The database named by --database-url is DROPPED and recreated.

    .venv/bin/python bench/subscriptions.py [--rounds 30] [--compare] [--quick] [--large 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

import psutil

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


class Round:
    """One event's receipt over all the subscribers: done once each has a whole message."""

    def __init__(self, expected: int):
        self.expected, self.received = expected, 0

    def count(self) -> None:
        self.received += 1


class Reader:
    """Every subscriber's socket read by one epoll loop, in this thread, for the length of a
    round: each message is stamped as soon as this process learns of it, rather than after the
    work asyncio's loop does per socket (its handles and transports cost more CPU per message
    than the reading itself, and at a thousand sockets would delay the later stamps by the
    client's own work). Before and after the rounds, asyncio drives the same sockets."""

    def __init__(self, subscribers: list[Subscriber]):
        self.poll = select.epoll()
        self.subscribers: dict[int, Subscriber] = {}
        for subscriber in subscribers:
            fd = subscriber.transport.get_extra_info("socket").fileno()
            self.poll.register(fd, select.EPOLLIN)
            self.subscribers[fd] = subscriber

    def read(self, round_: Round, seconds: float) -> None:
        """Read until every subscriber has its message, or for `seconds` at most."""
        poll, subscribers, read, clock = self.poll.poll, self.subscribers, os.read, time.monotonic
        deadline = clock() + seconds
        while round_.received < round_.expected and (left := deadline - clock()) > 0:
            for fd, _ in poll(left):
                data = read(fd, 65536)
                if data:
                    subscribers[fd].receive(data, clock())
                else:  # closed by the server: the round's count says so
                    self.poll.unregister(fd)

    def close(self) -> None:
        self.poll.close()


class Subscriber(asyncio.Protocol):
    """One subscriber on a socket of its own, as light as a client can be while honest: the
    sans-I/O client of `websockets` does the handshake and the graphql-transport-ws greeting;
    from the subscription on, each chunk received is only cut at frame boundaries (the headers
    read, nothing decoded) and each whole message time-stamped as it arrives. The same sans-I/O
    client decodes the round's bytes (decompressing them when the socket does) once the round
    is over, and answers the server's pings then."""

    def __init__(self, address: str, token: str, deflate: bool):
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
        from websockets.typing import Origin, Subprotocol
        from websockets.uri import parse_uri

        self.address, self.token = address, token
        # As `websockets.connect` offers it by default: a web process that compresses then does.
        extensions = enable_client_permessage_deflate(None) if deflate else None
        self.protocol = ClientProtocol(
            parse_uri(f"ws://{address}/graphql"), origin=Origin(ORIGIN), extensions=extensions,
            subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None,
        )
        self.ready = asyncio.get_running_loop().create_future()
        self.round: Round | None = None
        self.buffer = bytearray()  # this round's bytes
        self.cut = 0  # where the next frame starts in `buffer`
        self.stamps: list[float] = []  # each whole message's arrival, in order

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
            self.transport.write(b"".join(data))

    def send(self, message: dict) -> None:
        self.protocol.send_text(json.dumps(message).encode())

    def data_received(self, data: bytes) -> None:
        if self.round is not None:
            self.receive(data, time.monotonic())
            return
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if not hasattr(event, "opcode"):  # the handshake's response
                if self.protocol.handshake_exc is not None:
                    self.ready.set_exception(self.protocol.handshake_exc)
                    return
                self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}})
            elif event.opcode.name == "TEXT" and json.loads(event.data)["type"] == "connection_ack":
                self.send({"id": "1", "type": "subscribe", "payload": {"query": QUERY}})
                self.ready.set_result(None)
        self.flush()

    def receive(self, data: bytes, now: float) -> None:
        """Cut the frames; stamp each whole data message (FIN, opcode continuation, text or binary)."""
        buffer = self.buffer
        buffer += data
        cut, end = self.cut, len(buffer)
        while end - cut >= 2:
            length, head = buffer[cut + 1] & 0x7F, 2
            if length == 126:
                if end - cut < 4:
                    break
                length, head = int.from_bytes(buffer[cut + 2:cut + 4], "big"), 4
            elif length == 127:
                if end - cut < 10:
                    break
                length, head = int.from_bytes(buffer[cut + 2:cut + 10], "big"), 10
            if end - cut < head + length:
                break
            first = buffer[cut]
            cut += head + length
            if first & 0x80 and first & 0x0F <= 2:
                self.stamps.append(now)
                assert self.round is not None
                self.round.count()
        self.cut = cut

    def start(self, round_: Round) -> None:
        self.round = round_

    def collect(self) -> list[tuple[float, bytes]]:
        """The round's messages, decoded, with their arrival times; pings answered."""
        self.protocol.receive_data(bytes(self.buffer))
        messages = [event.data for event in self.protocol.events_received() if event.opcode.value <= 2]
        assert len(messages) == len(self.stamps), "every whole message was stamped"
        received = list(zip(self.stamps, messages))
        self.buffer.clear()
        self.cut = 0
        self.stamps = []
        self.round = None
        self.flush()
        return received

    async def open(self) -> None:
        host, port = self.address.rsplit(":", 1)
        await asyncio.get_running_loop().create_connection(lambda: self, host, int(port))
        await asyncio.wait_for(self.ready, 60)

    def close(self) -> None:
        self.protocol.send_close()
        self.flush()
        self.transport.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Servers:
    """`count` web processes (uvicorn, as `invoicing serve` runs one), each on its own port."""

    def __init__(self, count: int, port: int, mode: Mode):
        env = dict(os.environ, SUBSCRIPTION_FANOUT="true" if mode.fanout else "false")
        self.ports = [port + i for i in range(count)]
        # As `invoicing serve` runs uvicorn (WS_MAX_MESSAGE_BYTES, WS_PER_MESSAGE_DEFLATE).
        options = ["--ws", mode.ws, "--ws-max-size", "65536", "--ws-per-message-deflate", "true" if mode.deflate else "false"]
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(p), "--log-level", "warning", "--backlog", "4096", *options],
                cwd=ROOT, env=env,
            )
            for p in self.ports
        ]
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]

    async def ready(self) -> None:
        import httpx

        async with httpx.AsyncClient() as http:
            for address in self.addresses:
                for _ in range(300):
                    try:
                        if (await http.get(f"http://{address}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"the web process at {address} did not start")

    def cpu_seconds(self) -> float:
        return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(15)


async def measure(servers: Servers, mode: Mode, token: str, invoice, redis, count: int, rounds: int):
    """Every delivery's latency (ms) over the rounds, and the CPU ms per event of the web
    processes and of this client process (its subscribers receiving)."""
    from infra import events

    subscribers = [Subscriber(servers.addresses[i % len(servers.addresses)], token, mode.deflate) for i in range(count)]
    for batch in range(0, count, 100):
        await asyncio.gather(*(s.open() for s in subscribers[batch:batch + 100]))
    await asyncio.sleep(0.5 + count / 5000)  # every subscription registered on the server
    reader = Reader(subscribers)
    latencies: list[float] = []
    cpu = client_cpu = 0.0
    me = psutil.Process()
    for _ in range(rounds):
        round_ = Round(count)
        for subscriber in subscribers:
            subscriber.start(round_)
        cpu_before, client_before = servers.cpu_seconds(), sum(me.cpu_times()[:2])
        await invoice.save(update_fields=["updated_at"])  # the commit
        committed = time.monotonic()
        await events.publish(redis, [invoice])  # as writers publish what they hold
        reader.read(round_, 30)
        cpu += servers.cpu_seconds() - cpu_before
        client_cpu += sum(me.cpu_times()[:2]) - client_before
        key = invoice.updated_at.isoformat()
        received = [arrived for subscriber in subscribers for arrived, raw in subscriber.collect()
                    if json.loads(raw)["payload"]["data"]["invoiceStatusChanged"]["at"] == key]
        assert len(received) == count, f"{len(received)} of {count} subscribers received round {key}"
        latencies += [(arrived - committed) * 1000 for arrived in received]
        await asyncio.sleep(0.05)
    reader.close()
    for subscriber in subscribers:
        subscriber.close()
    return latencies, 1000 * cpu / rounds, 1000 * client_cpu / rounds


class Mode(NamedTuple):
    name: str
    fanout: bool  # SUBSCRIPTION_FANOUT
    deflate: bool  # WS_PER_MESSAGE_DEFLATE
    ws: str = "infra.live_sockets:LiveSocket"  # uvicorn's WebSocket protocol, as `invoicing serve` runs it


STOCK = "websockets-sansio"  # uvicorn's own: every frame through ASGI, sent by its subscriber's task
BEFORE = Mode("before", fanout=False, deflate=True, ws=STOCK)  # each subscriber's own execution, compressed frames
FANOUT = Mode("fan-out", fanout=True, deflate=True, ws=STOCK)
TASKS = Mode("tasks", fanout=True, deflate=False, ws=STOCK)  # shared execution, a task and an ASGI send per frame
NOW = Mode("now", fanout=True, deflate=False)  # the defaults


async def run(args, token, invoice, redis, mode: Mode, processes: int, count: int, rounds: int) -> dict:
    servers = Servers(processes, args.port, mode)
    try:
        await servers.ready()
        latencies, cpu_ms, client_ms = await measure(servers, mode, token, invoice, redis, count, rounds)
    finally:
        servers.stop()
    figures = {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99), "cpu": cpu_ms}
    print(f"{mode.name:>7}: subscribers {count:>5} on {processes} web process"
          f"{'es' if processes > 1 else ''}: p50 {figures['p50']:8.2f} ms  p99 {figures['p99']:8.2f} ms  "
          f"CPU per event: web {cpu_ms:6.1f} ms, clients {client_ms:6.1f} ms  ({len(latencies)} deliveries)", flush=True)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/invoicing_bench_subscriptions",
                        help="database to DROP, recreate and fill (default: %(default)s)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--rounds", type=int, default=30, help="events per subscriber count")
    parser.add_argument("--counts", default="1,100,1000", help="subscriber counts on one web process")
    parser.add_argument("--large", type=int, default=10_000, help="subscribers over several web processes (0: skip)")
    parser.add_argument("--large-processes", type=int, default=2, help="web processes for --large")
    parser.add_argument("--large-rounds", type=int, default=10, help="events at --large")
    parser.add_argument("--compare", action="store_true", help="also run as before (no fan-out, compressed frames)")
    parser.add_argument("--quick", action="store_true", help="no --large, 10 rounds")
    parser.add_argument("--port", type=int, default=8791, help="first port of the web processes")
    args = parser.parse_args()
    if args.quick:
        args.large, args.rounds = 0, 10
    os.environ.update(
        DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, ENVIRONMENT="production",
        ALLOWED_ORIGINS=json.dumps([ORIGIN]), SUBSCRIPTION_RECHECK_SECONDS="3600",
    )
    from infra import broker, db
    from infra.settings import get_settings

    settings = get_settings()
    await recreate(args.database_url)
    await db.migrate(settings)
    await db.close()
    await db.init(settings)
    invoice, token = await seed()
    redis = await broker.connect(settings)
    modes = (BEFORE, FANOUT, TASKS, NOW) if args.compare else (NOW,)
    plan = [(1, int(count), args.rounds) for count in args.counts.split(",")]
    if args.large:
        plan.append((args.large_processes, args.large, args.large_rounds))
    results: dict[tuple, dict] = {}
    try:
        for processes, count, rounds in plan:
            for mode in modes:
                results[mode, processes, count] = await run(args, token, invoice, redis, mode, processes, count, rounds)
    finally:
        await redis.aclose()
        await db.close()
    if args.compare:
        for processes, count, _ in plan:
            old, new = results[BEFORE, processes, count], results[NOW, processes, count]
            print(f"{count:>5} subscribers, {processes} process(es): before/now p99 {old['p99'] / new['p99']:.1f}x, "
                  f"p50 {old['p50'] / new['p50']:.1f}x, web CPU per event {old['cpu'] / new['cpu']:.1f}x")
    if args.large:
        print(f"p99_ms_at_{args.large}_over_{args.large_processes}_processes "
              f"{results[NOW, args.large_processes, args.large]['p99']:.1f}")
    if (NOW, 1, 1000) in results:
        print(f"p99_ms_at_1000 {results[NOW, 1, 1000]['p99']:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
