"""The pieces of what an operator sees, one by one: who may scrape `/metrics`, how an operation's
name becomes a bounded label, the queue's figures as arq's Redis holds them, request ids, and a
JSON log line with its fields and without a secret. (tests/test_observability.py runs them all
together in real processes.)"""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from infra import broker, log_context, metrics
from invoicing.logs import json_handler
from tests.graphql import gql

TOKEN = "scrape-token-of-the-test"


def _request(host: str, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers, "client": (host, 40000)})


@pytest.mark.parametrize(
    ("host", "authorization", "token", "allowed"),
    [
        ("127.0.0.1", None, None, True),
        ("::1", None, None, True),
        ("10.0.0.7", None, None, False),
        ("testclient", None, None, False),
        ("127.0.0.1", None, TOKEN, False),
        ("10.0.0.7", f"Bearer {TOKEN}", TOKEN, True),
        ("10.0.0.7", "Bearer another-token", TOKEN, False),
        ("10.0.0.7", TOKEN, TOKEN, False),
    ],
)
def test_a_scrape_needs_the_token_or_else_this_host(host, authorization, token, allowed):
    assert metrics.allowed(_request(host, authorization), token) is allowed


def test_operation_names_are_a_bounded_label(monkeypatch):
    monkeypatch.setattr(metrics, "_names", set())
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("Invoices") == "Invoices"
    assert metrics.operation_label("Invoices; DROP") == "other"
    assert metrics.operation_label("x" * 65) == "other"
    for number in range(metrics.OPERATION_NAMES - 1):
        assert metrics.operation_label(f"Operation{number}") == f"Operation{number}"
    assert metrics.operation_label("OneTooMany") == "other"
    assert metrics.operation_label("Invoices") == "Invoices"


async def test_the_queue_figures_tell_waiting_running_and_deferred_jobs(redis):
    await redis.enqueue_job("send_invoice", "a", _job_id="waiting-1")
    await redis.enqueue_job("send_invoice", "b", _job_id="running-1")
    await redis.set(in_progress_key_prefix + "running-1", b"1")
    await redis.enqueue_job("send_invoice", "c", _job_id="deferred-1", _defer_by=600)
    # The oldest waiting job, due 30 s ago.
    await redis.zadd(broker.QUEUE_NAME, {"waiting-1": time.time() * 1000 - 30_000})
    await metrics.read_queue(redis)
    assert [_value(name) for name in ("waiting", "running", "deferred")] == [1, 1, 1]
    assert 30 <= _value("oldest_job_age_seconds") < 40

    await redis.flushdb()
    await metrics.read_queue(redis)
    assert [_value(name) for name in ("waiting", "running", "deferred", "oldest_job_age_seconds")] == [0, 0, 0, 0]


def _value(name: str) -> float | None:
    full = f"invoicing_queue_{name}" if name.startswith("oldest") else f"invoicing_queue_jobs_{name}"
    return REGISTRY.get_sample_value(full)


def _families(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


async def test_an_operation_is_counted_by_name_and_outcome_and_answered_with_its_request_id(client, world):
    def count(outcome: str) -> float:
        return sum(
            sample.value
            for sample in _families(scraped)["invoicing_graphql_operation_seconds"]
            if sample.name.endswith("_count") and sample.labels == {"type": "query", "operation": "Me", "outcome": outcome}
        )

    scraped = (await client.get("/metrics")).text
    before_ok, before_error = count("ok"), count("error")
    answer = await client.post(
        "/graphql",
        json={"query": "query Me { viewer { scope } }"},
        headers={"Authorization": f"Bearer {world.tokens['owner']}", "X-Request-Id": "bad id\nforged"},
    )
    assert answer.json() == {"data": {"viewer": {"scope": "OWNER"}}}
    assert len(answer.headers["x-request-id"]) == 32 and "forged" not in answer.headers["x-request-id"]
    await gql(client, "query Me { viewer { nothingOfThatName } }")
    scraped = (await client.get("/metrics")).text
    assert (count("ok") - before_ok, count("error") - before_error) == (1, 1)
    assert (await client.get("/metrics", headers={"X-Request-Id": "scrape-0001-abc"})).headers["x-request-id"] == "scrape-0001-abc"


def test_request_ids_from_outside_are_kept_only_when_fit_to_log():
    assert log_context.request_id("a1b2c3d4-from-the-balancer") == "a1b2c3d4-from-the-balancer"
    for sent in (None, "", "short", "x" * 65, "two words here", "line\nbreak-injected"):
        made = log_context.request_id(sent)
        assert made != sent and len(made) == 32


def test_a_json_line_has_every_field_and_no_secret():
    out = io.StringIO()
    handler = json_handler()
    handler.setStream(out)
    logger = logging.getLogger("tests.observability")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with log_context.bound(request_id="req-12345678", organization_id="org-1"):
            logger.warning("calling %s with Bearer %s", "postgres://app:db-password@db:5432/app", "token-123.abc")
            try:
                raise RuntimeError("smtp://mailer:smtp-password@mail:587 refused")
            except RuntimeError:
                logger.exception("send failed")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["level"], line["request_id"], line["organization_id"], line["job_id"]) for line in lines] == [
        ("WARNING", "req-12345678", "org-1", None),
        ("ERROR", "req-12345678", "org-1", None),
        ("INFO", None, None, None),
    ]
    assert lines[0]["message"] == "calling postgres://app:[hidden]@db:5432/app with Bearer [hidden]"
    assert "RuntimeError" in lines[1]["exc_info"]
    assert all(secret not in out.getvalue() for secret in ("db-password", "token-123.abc", "smtp-password"))
    assert all(line["time"].endswith("+00:00") for line in lines)


async def test_a_worker_serves_its_metrics_on_its_own_port(settings, redis):
    from tests.conftest import free_port

    port = free_port()
    server = metrics.MetricsServer(settings.model_copy(update={"worker_metrics_port": port, "metrics_token": TOKEN}), redis)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/metrics")).status_code == 404
            answer = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        await server.stop()
    assert answer.status_code == 200
    assert {"invoicing_job_seconds", "invoicing_queue_jobs_waiting", "invoicing_pdfs_printed"} <= set(_families(answer.text))
