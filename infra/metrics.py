"""The figures an operator watches, in Prometheus' text format (`prometheus-client`).

Each process counts what it does in its own registry (prometheus-client's default, which also
has the process's CPU, memory and open files): a web process its GraphQL operations and open
subscriptions, a worker its jobs, cost imports, PDFs, e-mails and syncs. Prometheus scrapes each
process (`/metrics` of a web process, and of a worker on WORKER_METRICS_PORT) and sums them:
counters that live per process are what it expects, and nothing needs a disk shared by
processes that may run on different hosts. The queue is one for all: its depth and its oldest
job's age are read from arq's queue in Redis when a web process is scraped.

Labels are bounded: operation types, function names, outcomes and kinds, never an id or a
name a customer chose. GraphQL operation names are the client's own: the first
`OPERATION_NAMES` well-formed ones a process sees are kept, any other counts as `other`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from arq.constants import in_progress_key_prefix
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from infra.broker import QUEUE_NAME
from infra.settings import Settings

JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
PRINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

GRAPHQL_OPERATIONS = Histogram(
    "invoicing_graphql_operation_seconds",
    "GraphQL operations by type, name and outcome (ok or error), and how long each took (a subscription: as long as it stayed open).",
    ["type", "operation", "outcome"],
)
SUBSCRIPTIONS = Gauge("invoicing_subscriptions_active", "Invoice subscriptions open on this web process.")
JOBS = Histogram(
    "invoicing_job_seconds",
    "Background jobs and scheduled runs by function and outcome (ok, failed, retried, cancelled), and how long each ran.",
    ["function", "outcome"],
    buckets=JOB_BUCKETS,
)
QUEUE_WAITING = Gauge("invoicing_queue_jobs_waiting", "Jobs due in the queue that no worker has taken yet.")
QUEUE_RUNNING = Gauge("invoicing_queue_jobs_running", "Jobs a worker holds.")
QUEUE_DEFERRED = Gauge("invoicing_queue_jobs_deferred", "Jobs queued for later (a retry's wait).")
QUEUE_OLDEST = Gauge(
    "invoicing_queue_oldest_job_age_seconds",
    "How long the oldest job due and not taken has waited (0: none).",
)
COST_IMPORT_ROWS = Counter("invoicing_cost_import_rows_total", "Cost rows imported.")
COST_IMPORTS = Histogram(
    "invoicing_cost_import_seconds",
    "Cost imports by outcome (done, failed, skipped), and how long each took.",
    ["outcome"],
    buckets=JOB_BUCKETS,
)
PDFS_PRINTED = Counter("invoicing_pdfs_printed_total", "Documents Chromium printed to PDF.")
PDF_PRINTS = Histogram(
    "invoicing_pdf_print_seconds",
    "Chromium's print jobs (one document, or a batch printed together) by outcome, and how long each took.",
    ["outcome"],
    buckets=PRINT_BUCKETS,
)
EMAILS = Counter("invoicing_emails_total", "E-mails by recipient and outcome (sent, failed).", ["outcome"])
XERO_SYNCS = Counter(
    "invoicing_xero_syncs_total",
    "Exchanges with Xero by kind (push, payments, revoke) and outcome.",
    ["kind", "outcome"],
)
COST_SOURCE_SYNCS = Counter(
    "invoicing_cost_source_syncs_total",
    "Cost source syncs by kind of bucket and state reached (ok, waiting, failing).",
    ["kind", "state"],
)

OPERATION_NAMES = 100
OTHER = "other"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_names: set[str] = set()


def operation_label(name: str | None) -> str:
    """The label of an operation's name: the name itself while few are seen, else `other`."""
    if not name:
        return "anonymous"
    if name in _names:
        return name
    if len(_names) < OPERATION_NAMES and _NAME.match(name):
        _names.add(name)
        return name
    return OTHER


class Timer:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


async def read_queue(redis: Any) -> None:
    """The queue's figures, from arq's sorted set: a job stays in it while it runs, with its
    claim beside it; its score is when it is due (milliseconds)."""
    now_ms = time.time() * 1000
    due = await redis.zrangebyscore(QUEUE_NAME, "-inf", now_ms, withscores=True)
    deferred = await redis.zcount(QUEUE_NAME, f"({now_ms}", "+inf")
    if due:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in due:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            held = await pipe.execute()
    else:
        held = []
    waiting = [score for (_, score), taken in zip(due, held) if not taken]
    QUEUE_WAITING.set(len(waiting))
    QUEUE_RUNNING.set(len(due) - len(waiting))
    QUEUE_DEFERRED.set(deferred)
    QUEUE_OLDEST.set(max(now_ms - min(waiting), 0) / 1000 if waiting else 0)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed(request: Request, token: str | None) -> bool:
    """A scrape is answered when it presents the metrics token, or, with none set, when it
    comes from this host. Behind a proxy on the same host every client looks local: set the
    token there."""
    if token:
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    return _loopback(request)


async def endpoint(request: Request) -> Response:
    """`GET /metrics`: this process's figures (and the queue's, where Redis is at hand)."""
    state = request.app.state
    if not allowed(request, state.settings.metrics_token):
        return PlainTextResponse("Not found.", status_code=404)
    if (events := getattr(state, "events", None)) is not None:
        SUBSCRIPTIONS.set(events.subscription_count())
    if (redis := getattr(state, "redis", None)) is not None:
        try:
            await read_queue(redis)
        except Exception:  # Redis down: the figures from the last scrape stay; /healthz says why
            pass
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _Server(uvicorn.Server):
    """uvicorn serving inside a process that handles its own signals (the worker's arq)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """A worker's `/metrics` on HOST:WORKER_METRICS_PORT, inside its event loop, refused as a web
    process's is (the metrics token, or loopback)."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        app = Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
        app.state.settings, app.state.redis = settings, redis
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.worker_metrics_port or 0,
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        self._server = _Server(config)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # the port is taken: say so at start-up
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
