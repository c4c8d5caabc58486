"""What a web process writes to its log: never a signed link's token, an OAuth code or state, or
the arguments of a failing GraphQL document (a password written inline), read from the real
output of a uvicorn process."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.test_request_bodies import Server

LINK_TOKEN = "eyJrIjoicGRmIn0.Z2xzZWNyZXRsaW5r.c2lnbmF0dXJlLW9mLXRoZS1saW5r"
CODE, STATE = "oauth-code-4f2a9c", "oauth-state-81be77"
PASSWORD = "inline-password-never-logged"


@pytest.fixture(scope="module")
def server(settings):
    started = Server(settings, log_level="info")
    yield started
    started.stop()


def _log_once(server: Server, expected: str) -> str:
    """The process's log, once it holds `expected` (its handlers write each record at once)."""
    for _ in range(100):
        text = server.log.read_text()
        if expected in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{expected!r} never reached the log:\n{text}")


def test_the_access_log_hides_link_tokens_and_oauth_parameters(server):
    base = f"http://127.0.0.1:{server.port}"
    assert httpx.get(f"{base}/files/{LINK_TOKEN}").status_code == 404
    httpx.get(f"{base}/xero/callback", params={"code": CODE, "state": STATE, "scope": "openid"})
    httpx.get(f"{base}/graphql", params={"query": "query($x: String) { __typename }", "variables": '{"x": "%s"}' % PASSWORD})
    text = _log_once(server, "/xero/callback")
    assert '"GET /files/[hidden] HTTP/1.1" 404' in text
    assert "code=[hidden]&state=[hidden]&scope=openid" in text
    for secret in (LINK_TOKEN, CODE, STATE, PASSWORD):
        assert secret not in text


def test_a_failing_document_is_logged_without_its_arguments(server):
    """A login written inline with an argument the field does not have: refused as
    BAD_USER_INPUT, and the log says so by its place, without the document's lines."""
    document = f'mutation {{ login(email: "owner@example.com", password: "{PASSWORD}", remember: true) {{ __typename }} }}'
    answer = httpx.post(f"http://127.0.0.1:{server.port}/graphql", json={"query": document}).json()
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"]
    # Its access line comes once the answer is sent, after anything the execution logged.
    text = _log_once(server, '"POST /graphql HTTP/1.1" 200')
    assert PASSWORD not in text
    assert "owner@example.com" not in text
    assert "GraphQL document refused (BAD_USER_INPUT) at ['1:88']" in text
