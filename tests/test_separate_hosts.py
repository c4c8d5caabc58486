"""The product across machines, as an operator runs it: a web process (`invoicing serve
--no-worker`) and two worker processes (`invoicing worker`), each with a data folder of its own
and no disk in common, sharing only PostgreSQL, Redis and an S3 bucket (moto's server). A cost
delivery uploaded to the web process is imported by a worker; the invoices the workers generate
and print are downloaded through the web process; the second worker takes its share of the jobs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from infra import storage
from models import CostImport, Invoice, InvoiceRevision
from models.base import Scope
from models.managed_accounts import set_sub_accounts
from tests import factories as f
from tests.conftest import free_port
from tests.test_cost_delivery_layout import period_rows
from tests.test_costs_import import sample_rows, to_csv
from tests.test_pipeline_recovery import QUICK, gql_ok
from tests.test_pipeline_resilience import BULK, CLOSE, _eventually, _gid, _stop
from tests.test_storage import s3_settings

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 12
UPLOAD = """mutation($file: Upload!) { importCosts(file: $file) {
  __typename ... on CostImportQueued { costImport { id state } } ... on UserError { code message } } }"""
APPROVE = """mutation($ids: [ID!]!, $ack: [InvoiceCheckCode!]) { approveInvoices(ids: $ids, acknowledge: $ack) {
  __typename ... on InvoiceActionResults { results { id invoice { status } error { code message } } } } }"""
PDF_URL = """query($id: ID!) { node(id: $id) { ... on Invoice { number status pdfUrl } } }"""


def _process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "invoicing", *command], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _environment(settings, bucket_settings: dict, data_dir: Path) -> dict[str, str]:
    """A machine's environment: its own DATA_DIR (no STORAGE_DIR), the shared servers and bucket."""
    env = {name: value for name, value in os.environ.items() if name not in ("STORAGE_DIR", "SMTP_URL")}
    env.update(
        QUICK,
        ENVIRONMENT="test",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DATA_DIR=str(data_dir),
        SECRET_KEY="test-secret-key",
        WORKER_MAX_JOBS="3",
        XDG_CONFIG_HOME=str(data_dir / "xdg-config"),
    )
    env.update(
        {name.upper(): value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in bucket_settings.items()}
    )
    return env


def _stored_locally(data_dir: Path) -> list[Path]:
    """Files of the product's storage on a machine's disk (its outbox of e-mails aside)."""
    folder = data_dir / "storage"
    return [path for path in folder.rglob("*") if path.is_file() and "outbox" not in path.parts] if folder.exists() else []


async def _world(count: int):
    """An MSP with `count` customers, each claiming one sub-account of the delivery."""
    org = await f.organization(name="Spread MSP", invoice_prefix="SPRD")
    profile = await f.billing_profile(org)
    for n in range(count):
        account = await f.managed_account(
            org, name=f"Customer {n:02d}", billing_profile=profile, billing_emails=[f"ap{n}@customer.example"]
        )
        await set_sub_accounts(account, [f"90000000{n:04d}"])
    return org, await f.token(await f.user(org, Scope.OWNER))


def _delivery(count: int) -> bytes:
    header, _ = sample_rows()
    rows = period_rows("2024-09")
    for number, row in enumerate(rows):
        row["SubAccountId"] = f"90000000{number % count:04d}"
    return to_csv(header, rows)


async def test_web_and_two_workers_share_only_the_databases_and_a_bucket(settings, moto_s3, redis, tmp_path):
    bucket = s3_settings(moto_s3, f"hosts-{uuid.uuid4().hex[:8]}", prefix="invoicing")
    shared = settings.model_copy(update=bucket)
    machines = {name: tmp_path / name for name in ("web", "worker-1", "worker-2")}
    port = free_port()
    web_env = {**_environment(settings, bucket, machines["web"]), "HOST": "127.0.0.1", "PORT": str(port)}
    processes = {"web": _process(["serve", "--no-worker"], web_env, tmp_path / "web.log")}
    org, owner = await _world(ACCOUNTS)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
            await _eventually(lambda: _answers(web), timeout=60, what="the web process to answer")
            response = await web.post(
                "/graphql",
                headers={"Authorization": f"Bearer {owner}"},
                files={"0": ("sept.csv", _delivery(ACCOUNTS))},
                data={
                    "operations": json.dumps({"query": UPLOAD, "variables": {"file": None}}),
                    "map": json.dumps({"0": ["variables.file"]}),
                },
            )
            queued = response.json()["data"]["importCosts"]
            assert queued["__typename"] == "CostImportQueued", queued
            (part,) = (await CostImport.get()).parts
            assert storage.load(shared, part[0]) == _delivery(ACCOUNTS), "the upload went to the bucket"

            for name in ("worker-1", "worker-2"):
                env = _environment(settings, bucket, machines[name])
                processes[name] = _process(["worker"], env, tmp_path / f"{name}.log")
            await _eventually(_imported, timeout=90, what="a worker to import the delivery")

            closed = await gql_ok(web, CLOSE, {"m": "2024-09"}, owner)
            assert closed["closeBillingPeriod"]["invoicesCreated"] == ACCOUNTS
            invoices = await Invoice.filter(organization_id=org.id)
            ids = [_gid(invoice) for invoice in invoices]
            generated = (await gql_ok(web, BULK % "generateInvoices", {"ids": ids}, owner))["generateInvoices"]
            assert {r["invoice"]["status"] for r in generated["results"]} == {"GENERATING"}
            await _eventually(lambda: _all_awaiting(org.id), timeout=240, interval=0.5, what="every invoice printed")

            for gid in ids:
                invoice = (await gql_ok(web, PDF_URL, {"id": gid}, owner))["node"]
                download = await web.get(httpx.URL(invoice["pdfUrl"]).raw_path.decode())
                assert download.status_code == 200 and download.content.startswith(b"%PDF-")
                printed = await Invoice.get(number=invoice["number"])
                revision = await InvoiceRevision.get(id=printed.current_revision_id)
                assert download.content == storage.load(shared, revision.pdf_path)

            # What the checks warn of (a first invoice, a month with a zero total) is not this test's matter.
            ack = ["NO_DATA", "ZERO_TOTAL", "NEGATIVE_TOTAL", "INCOMPLETE_DATA", "NEW_SERVICE", "TOTAL_CHANGED"]
            approved = (await gql_ok(web, APPROVE, {"ids": ids, "ack": ack}, owner))["approveInvoices"]
            assert [r["error"] for r in approved["results"]] == [None] * len(ids), approved
            await _eventually(
                lambda: _all_sent([invoice.id for invoice in invoices]), timeout=120, interval=0.5, what="every invoice e-mailed"
            )
    finally:
        for process in processes.values():
            _stop(process)

    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("worker-1", "worker-2")}
    sent = {name: len(re.findall(r"→ send_invoice:", text)) for name, text in logs.items()}
    assert sum(sent.values()) == len(ids) and min(sent.values()) >= len(ids) // 4, sent
    assert sum(len(re.findall(r"→ generate_invoices:", text)) for text in logs.values()) >= 1
    assert sum(len(re.findall(r"→ run_cost_import:", text)) for text in logs.values()) == 1
    for name, folder in machines.items():
        assert _stored_locally(folder) == [], f"{name} kept a stored file on its own disk"
    assert moto_s3["secret"] not in "".join(logs.values()) + (tmp_path / "web.log").read_text()


async def _all_sent(invoice_ids: list) -> bool:
    statuses = await Invoice.filter(id__in=invoice_ids).values_list("delivery_status", flat=True)
    assert "FAILED" not in statuses, statuses
    return set(statuses) == {"SENT"}


async def _answers(web: httpx.AsyncClient) -> bool:
    try:
        return (await web.get("/healthz")).status_code in (200, 503)
    except httpx.TransportError:
        return False


async def _imported() -> bool:
    done = await CostImport.get()
    assert done.state != "FAILED", done.error_message
    return done.state == "DONE"


async def _all_awaiting(org_id) -> bool:
    statuses = await Invoice.filter(organization_id=org_id).values_list("status", "error_message")
    assert not [status for status in statuses if status[0] == "ERROR"], statuses
    return {status for status, _ in statuses} == {"AWAITING_APPROVAL"}
