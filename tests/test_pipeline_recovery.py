"""Recovery with real processes: a worker killed with forty generations in flight, a Redis
stopped mid-flight (its queue lost with it), work committed but never queued, and `serve`'s
worker restarted. Each worker is `invoicing worker` itself, with its timings shortened through
settings: its claim on a job, its sweeper's period and how long a state waits before the
sweeper queues its job again."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from tortoise import connections

from infra import broker
from invoicing.cli.servers import WorkerSupervisor
from jobs import dispatch
from jobs.generate import requeue_stuck
from models import Invoice, InvoiceEvent, InvoiceNumberCounter, InvoiceRevision
from models.base import Scope
from tests import factories as f
from tests.conftest import free_port
from tests.test_pipeline_resilience import BULK, CLOSE, _costs, _eventually, _family, _gid, _kill, _stop

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 3
QUICK = {
    "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "SWEEP_EVERY_SECONDS": "2",
    "STUCK_AFTER_SECONDS": "2",
    "WORKER_RETRY_MAX_SECONDS": "2",
}


def _start_worker(settings, log: Path, *, redis_url: str, smtp_url: str | None = None) -> subprocess.Popen:
    """`invoicing worker` on the test's database and data folder, the given Redis, quick timings."""
    env = {
        **os.environ, **QUICK,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "DATA_DIR": str(settings.data_dir),
        "STORAGE_DIR": str(settings.storage_path),
        "XDG_CONFIG_HOME": str(settings.data_dir / "xdg-config"),
    }
    env.pop("SMTP_URL", None)
    if smtp_url:
        env["SMTP_URL"] = smtp_url
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "invoicing", "worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _forty(client):
    """An organization with forty accounts, its September closed: (its id, the owner's token,
    the forty invoices' global ids). (A worker's start-up may close a later month too.)"""
    org = await f.organization(name="Acme MSP", invoice_prefix="ACME")
    profile = await f.billing_profile(org)
    for n in range(40):
        account = await f.managed_account(org, name=f"Customer {n:02d}", billing_profile=profile)
        await _costs(org, account, services=3)
    owner = await f.token(await f.user(org, Scope.OWNER))
    closed = await gql_ok(client, CLOSE, {"m": "2024-09"}, owner)
    assert closed["closeBillingPeriod"]["invoicesCreated"] == 40
    ids = [_gid(i) for i in await Invoice.filter(organization_id=org.id).order_by("managed_account__name")]
    return org.id, owner, ids


def _september(org_id):
    return Invoice.filter(organization_id=org_id, billing_period__start_date="2024-09-01")


async def gql_ok(client, query, variables, token) -> dict:
    response = await client.post("/graphql", json={"query": query, "variables": variables},
                                 headers={"Authorization": f"Bearer {token}"})
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


async def _generate(client, owner, ids) -> None:
    results = (await gql_ok(client, BULK % "generateInvoices", {"ids": ids}, owner))["generateInvoices"]["results"]
    assert [r["invoice"]["status"] for r in results] == ["GENERATING"] * len(ids), results


async def _all_generated(org_id) -> None:
    """Every invoice ended AWAITING_APPROVAL, once: numbers gapless, one revision and one
    GENERATED event each."""
    invoices = await _september(org_id)
    assert len(invoices) == 40
    assert {i.status for i in invoices} == {"AWAITING_APPROVAL"}, [(i.status, i.error_message) for i in invoices]
    (year,) = {i.issue_date.year for i in invoices}
    assert sorted(i.number for i in invoices) == [f"ACME-{year}-{n:04d}" for n in range(1, 41)]
    assert (await InvoiceNumberCounter.get(organization_id=invoices[0].organization_id)).last_value == 40
    ids = [i.id for i in invoices]
    assert await InvoiceRevision.filter(invoice_id__in=ids).count() == 40
    assert await InvoiceEvent.filter(invoice_id__in=ids, kind="GENERATED").count() == 40


async def _none_generating(org_id) -> bool:
    return not await _september(org_id).filter(status="GENERATING").exists()


async def test_forty_generations_survive_a_worker_killed_mid_render(client, redis, settings, tmp_path):
    org_id, owner, ids = await _forty(client)
    await _generate(client, owner, ids)
    log = tmp_path / "workers.log"
    doomed = _start_worker(settings, log, redis_url=settings.redis_url)
    survivor = None
    try:
        # Killed as soon as the first job numbered its invoice: others are mid-render.
        await _eventually(
            lambda: _september(org_id).filter(number__isnull=False).exists(),
            timeout=30, interval=0.02, what="the first job to number its invoice",
        )
        _kill(doomed)
        claimed = [k.decode() for k in await redis.keys(in_progress_key_prefix + dispatch.GENERATE + ":*")]
        assert claimed, "jobs were running when the worker died"
        for key in claimed:
            # arq alone would hold them for four hours (the longest job timeout plus 10 s).
            assert 0 < await redis.pttl(key) <= LEASE_SECONDS * 1000
        assert not await _none_generating(org_id)

        survivor = _start_worker(settings, log, redis_url=settings.redis_url)
        await _eventually(lambda: _none_generating(org_id), timeout=45, interval=0.2, what="all 40 to leave GENERATING")
    finally:
        _kill(doomed)
        if survivor is not None:
            _stop(survivor)
    await _all_generated(org_id)


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: stopping it
    loses its queue, as a crashed Redis would."""

    def __init__(self, log: Path) -> None:
        self.port, self.log, self.process = free_port(), log, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self._spawn()
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_a_redis_outage_mid_flight_loses_no_change_and_no_work(settings, tmp_path):
    from invoicing.app import create_app

    private = PrivateRedis(tmp_path / "redis.log")
    await private.start()
    ours = settings.model_copy(update={"redis_url": private.url})
    app = create_app(ours)
    app.state.redis = await broker.connect(ours)
    log = tmp_path / "worker.log"
    worker = None
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            org_id, owner, ids = await _forty(client)
            worker = _start_worker(settings, log, redis_url=private.url)
            await _generate(client, owner, ids[:20])
            await _eventually(
                lambda: _september(org_id).filter(number__isnull=False).exists(),
                timeout=30, interval=0.02, what="the first job to number its invoice",
            )
            private.stop()

            # Changes made while Redis is down are committed and answered; their jobs wait.
            await _generate(client, owner, ids[20:])
            health = (await client.get("/healthz")).json()
            assert health["status"] == "unavailable" and health["redis"]["ok"] is False
            assert any("Redis" in reason for reason in health["reasons"])
            # Its own word that it lost Redis, then that a start on the Redis still down failed
            # too: it lived through both and waits on.
            await _eventually(
                lambda: asyncio.sleep(0, log.read_text().count("starting again") >= 2),
                timeout=60, interval=0.2, what="the worker to fail to start on the Redis still down",
            )
            assert worker.poll() is None, "the worker waits for Redis instead of exiting"

            await private.start()
            await _eventually(lambda: _none_generating(org_id), timeout=45, interval=0.2, what="all 40 to leave GENERATING")
            assert worker.poll() is None
    finally:
        if worker is not None:
            _stop(worker)
        await app.state.redis.aclose()
        await app.state.events.close()
        private.stop()
    await _all_generated(org_id)
    assert "starting again" in log.read_text()


async def test_a_running_job_keeps_a_short_claim_while_its_worker_lives(redis, settings):
    from jobs.worker import claim_job, release_job

    # Renewed every third of the lease: a machine would have to stall two seconds to lose it.
    lease_ms = 6000
    key = in_progress_key_prefix + "generate_invoice:x"
    await redis.psetex(key, 4 * 3600 * 1000, b"1")
    ctx = {"redis": redis, "settings": settings.model_copy(update={"job_lease_seconds": lease_ms / 1000}),
           "job_id": "generate_invoice:x"}
    await claim_job(ctx)
    await _eventually(lambda: _shortened(redis, key, lease_ms), interval=0.05, what="the claim shortened to the lease")
    # A claim's life only shrinks unless renewed: each time it grows, the job renewed it.
    lives = [await redis.pttl(key)]

    async def renewed_again() -> bool:
        lives.append(await redis.pttl(key))
        return sum(later > earlier for earlier, later in zip(lives, lives[1:])) >= 2

    await _eventually(renewed_again, timeout=60, interval=0.1, what="two renewals of the claim")
    assert all(0 < life <= lease_ms for life in lives), "never lapses while the job runs, never longer than the lease"
    await release_job(ctx)
    assert "lease" not in ctx
    await _eventually(
        lambda: _gone(redis, key), timeout=60, interval=0.2,
        what="the claim, no longer renewed, to lapse",
    )


async def _shortened(redis, key: str, lease_ms: int) -> bool:
    return 0 < await redis.pttl(key) <= lease_ms


async def _gone(redis, key: str) -> bool:
    return not await redis.exists(key)


async def _backdate(table: str, column: str, row_id, seconds: float = 120) -> None:
    await connections.get("default").execute_query(
        f"UPDATE {table} SET {column} = now() - $2::interval WHERE id = $1", [str(row_id), timedelta(seconds=seconds)]
    )


async def test_the_sweeper_queues_deliveries_and_imports_whose_job_never_reached_redis(world, redis, settings):
    from datetime import date

    period = await f.billing_period(world.org, date(2024, 10, 1))
    approved = await f.generated_invoice(world.account, period, number="INV-2024-0001", status="APPROVED")
    await Invoice.filter(id=approved.id).update(delivery_status="QUEUED")
    await _backdate("invoices", "updated_at", approved.id)
    from models import CostImport

    pending = await CostImport.create(
        organization=world.org, file_sha256="1" * 64, row_count=0, inserted_count=0, duplicate_count=0, state="QUEUED"
    )
    await _backdate("cost_imports", "created_at", pending.id)

    ctx = {"redis": redis, "settings": settings}
    for _ in range(2):  # a second sweep finds them queued and queues nothing more
        await requeue_stuck(ctx)
        queued = sorted(job.job_id for job in await redis.queued_jobs(queue_name=broker.QUEUE_NAME))
        updated_at = (await Invoice.get(id=approved.id)).updated_at
        assert queued == sorted([
            dispatch.cost_import_job_id(pending.id), dispatch.send_job_id(approved.id, str(updated_at.timestamp())),
        ])


async def test_serve_starts_a_worker_that_died_again(tmp_path):
    marker = tmp_path / "starts"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    supervisor = WorkerSupervisor(command, dict(os.environ), max_delay=0.2)
    supervisor.start()
    try:
        await _eventually(
            lambda: asyncio.sleep(0, marker.exists() and len(marker.read_text()) >= 3),
            timeout=20, what="three starts",
        )
    finally:
        await asyncio.to_thread(supervisor.stop)
    starts = supervisor.starts
    # Only its thread starts workers: once that has ended, none can start again.
    supervisor._thread.join(30)
    assert not supervisor._thread.is_alive()
    assert supervisor.starts == starts >= 3, "stopped for good"


async def test_stopping_serve_stops_its_worker(tmp_path):
    supervisor = WorkerSupervisor([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), 1)
    supervisor.start()
    await _eventually(lambda: asyncio.sleep(0, supervisor.process is not None), what="the worker")
    process = supervisor.process
    assert process is not None and _family(process)
    await asyncio.to_thread(supervisor.stop)
    assert process.poll() in (-signal.SIGTERM, 0)
    assert supervisor.starts == 1
