"""Request bodies bounded per route, uploads authenticated before their body is read, and
spooled files closed: against a real uvicorn process, its memory (psutil), its temporary folder
and the files it holds open (/proc/<pid>/fd)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from strawberry.relay import to_base64

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024**2
SMALL_UPLOAD_CAP = 8 * MiB
LOGO = """mutation($id: ID!, $file: Upload!) { setBillingProfileLogo(id: $id, file: $file) { __typename
  ... on UserError { code } } }"""


class Server:
    """A web process as `invoicing serve` runs it, with a temporary folder of its own."""

    def __init__(self, settings, log_level: str = "warning", **env: str):
        self.tmp = Path(tempfile.mkdtemp(prefix="invoicing-bodies-"))
        self.port = free_port()
        environment = settings.child_environment() | {"TMPDIR": str(self.tmp), **env}
        # Its output in a file of its own: inherited, pytest's capture files would count as
        # deleted files it holds.
        self.log = self.tmp.parent / f"{self.tmp.name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", log_level],
                cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._answers():
            assert self.process.poll() is None and time.monotonic() < deadline, "the web process did not start"
            time.sleep(0.1)
        self.ps = psutil.Process(self.process.pid)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code in (200, 503)
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def deleted_files(self) -> list[str]:
        """The deleted files the process still holds open (spooled uploads not closed)."""
        held = []
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{self.process.pid}/fd/{fd}")
                if target.endswith("(deleted)"):
                    held.append(target)
        return held

    def temporary_bytes(self) -> int:
        """Bytes in its temporary folder, counting the files it holds open there once deleted."""
        total = sum(p.stat().st_size for p in self.tmp.rglob("*") if p.is_file())
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            with contextlib.suppress(OSError):
                path = f"/proc/{self.process.pid}/fd/{fd}"
                if os.readlink(path).startswith(str(self.tmp)) and os.readlink(path).endswith("(deleted)"):
                    total += os.stat(path).st_size
        return total


@contextlib.contextmanager
def watching(server: Server) -> Iterator[dict[str, int]]:
    """The peak RSS and temporary bytes of `server` while the block runs (sampled)."""
    peaks = {"rss": server.ps.memory_info().rss, "rss_before": server.ps.memory_info().rss, "tmp": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error, OSError):
                peaks["rss"] = max(peaks["rss"], server.ps.memory_info().rss)
                peaks["tmp"] = max(peaks["tmp"], server.temporary_bytes())
            stop.wait(0.02)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def send(port: int, head: bytes, body: Iterator[bytes]) -> tuple[int, dict, int]:
    """Sends `head` then the chunks of `body` over a raw socket, stopping as soon as the server
    answers (a client that refuses to stop would only be cut off): (status, JSON answer, body
    bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        for chunk in body:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        sock.settimeout(120)
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    head_part, _, content = answer.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), json.loads(content[:_length(answer)]), sent


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def _request(port: int, content_type: str, length: int | None, token: str | None = None) -> bytes:
    lines = [b"POST /graphql HTTP/1.1", f"host: 127.0.0.1:{port}".encode(), f"content-type: {content_type}".encode()]
    lines.append(f"content-length: {length}".encode() if length is not None else b"transfer-encoding: chunked")
    if token:
        lines.append(f"authorization: Bearer {token}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


BOUNDARY = "bodiesboundary"


def multipart_head(document: str, variables: dict) -> bytes:
    operations = json.dumps({"query": document, "variables": {**variables, "file": None}})
    return (
        f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n"
        f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"map\"\r\n\r\n{{\"0\": [\"variables.file\"]}}\r\n"
        f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"0\"; filename=\"logo.png\"\r\n"
        "content-type: image/png\r\n\r\n"
    ).encode()


MULTIPART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    block = b"x" * size
    while total > 0:
        yield block[:min(size, total)]
        total -= size


def chunked(parts: Iterator[bytes]) -> Iterator[bytes]:
    """`parts` in HTTP/1.1 chunked encoding."""
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.fixture(scope="module")
def server(settings):
    started = Server(settings)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def small_cap_server(settings):
    started = Server(settings, MAX_UPLOAD_BYTES=str(SMALL_UPLOAD_CAP))
    yield started
    started.stop()


def test_an_upload_without_a_token_is_refused_before_a_byte_of_it_is_spooled(server):
    """400 MiB of multipart with no token (and with a wrong one): UNAUTHENTICATED, nothing
    written to the temporary folder, no file held afterwards."""
    size = 400 * MiB
    prefix = multipart_head(LOGO, {"id": "x"})
    for token in (None, "inv_not-a-token"):
        with watching(server) as peaks:
            status, answer, sent = send(
                server.port, _request(server.port, f"multipart/form-data; boundary={BOUNDARY}",
                                      len(prefix) + size + len(MULTIPART_TAIL), token),
                iter([prefix, *chunks(size), MULTIPART_TAIL]),
            )
        assert status == 200
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["UNAUTHENTICATED"]
        assert peaks["tmp"] == 0
        assert sent < 64 * MiB  # the server answered at once, without reading the body
        assert server.deleted_files() == []


def test_a_json_body_past_its_limit_is_refused_as_it_arrives(server, settings):
    """300 MiB of JSON: refused on its Content-Length before a byte is read, and, sent without
    one (chunked), cut off at the limit; the process's memory stays where it was."""
    size = 300 * MiB
    declared = _request(server.port, "application/json", size)
    with watching(server) as peaks:
        status, answer, sent = send(server.port, declared, chunks(size))
    assert status == 413
    assert answer["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE", "limit": settings.max_request_bytes}
    assert sent < 64 * MiB
    with watching(server) as streamed_peaks:
        status, answer, sent = send(server.port, _request(server.port, "application/json", None), chunked(chunks(size)))
    assert status == 413
    assert answer["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert sent < 64 * MiB
    for measured in (peaks, streamed_peaks):
        assert measured["rss"] - measured["rss_before"] < 48 * MiB
    # A body within the limit is still served.
    assert httpx.post(f"http://127.0.0.1:{server.port}/graphql", json={"query": "{ __typename }"}).json() == {
        "data": {"__typename": "Query"}
    }


async def test_an_uploads_spooled_files_are_closed_once_answered_for_every_scope(server, world):
    """A 3 MiB upload (past the 1 MiB Starlette keeps in memory, so spooled to disk) by each
    scope and by another organization: answered as the mutation's scope says, and afterwards the
    process holds no deleted file."""
    profile = to_base64("BillingProfile", str(world.profile.id))
    prefix = multipart_head(LOGO, {"id": profile})
    size = 3 * MiB
    # An owner's file is judged (too large for a logo) before the profile is looked up, so
    # another organization's owner learns nothing of the profile either.
    expected = {
        "owner": ("data", "ValidationError"), "viewer": ("errors", "FORBIDDEN"), "customer": ("errors", "FORBIDDEN"),
        "foreign_owner": ("data", "ValidationError"),
    }
    for role, (where, outcome) in expected.items():
        status, answer, _ = send(
            server.port,
            _request(server.port, f"multipart/form-data; boundary={BOUNDARY}", len(prefix) + size + len(MULTIPART_TAIL),
                     world.tokens[role]),
            iter([prefix, *chunks(size), MULTIPART_TAIL]),
        )
        assert status == 200, role
        if where == "data":
            assert answer["data"]["setBillingProfileLogo"]["__typename"] == outcome, (role, answer)
        else:
            assert [e["extensions"]["code"] for e in answer["errors"]] == [outcome], (role, answer)
        assert server.deleted_files() == [], role
        assert server.temporary_bytes() == 0, role


async def test_an_upload_past_the_cap_is_cut_off_and_its_spooled_files_removed(small_cap_server, world):
    """Signed in, an upload past MAX_UPLOAD_BYTES: 413 on its Content-Length, and 413 when it
    arrives chunked past the cap, its spooled part closed and deleted."""
    server = small_cap_server
    prefix = multipart_head(LOGO, {"id": to_base64("BillingProfile", str(world.profile.id))})
    size = 4 * SMALL_UPLOAD_CAP
    token = world.tokens["owner"]
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    status, answer, _ = send(server.port, _request(server.port, content_type, len(prefix) + size + len(MULTIPART_TAIL), token),
                             iter([prefix, *chunks(size), MULTIPART_TAIL]))
    assert (status, answer["errors"][0]["extensions"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    with watching(server) as peaks:
        status, answer, sent = send(server.port, _request(server.port, content_type, None, token),
                                    chunked(iter([prefix, *chunks(size), MULTIPART_TAIL])))
    assert (status, answer["errors"][0]["extensions"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert peaks["tmp"] <= SMALL_UPLOAD_CAP + 2 * MiB
    assert server.deleted_files() == []
    assert server.temporary_bytes() == 0


async def test_a_webhook_body_is_bounded_and_any_signature_is_checked_without_failing(settings, redis):
    """`/xero/webhook`: a body past MAX_WEBHOOK_BYTES is 413 before its signature is computed;
    a signature header of non-ASCII characters is a wrong signature (401), not a failure (500)."""
    from invoicing.app import create_app

    application = create_app(settings.model_copy(update={"xero_webhook_key": "webhook-key-for-tests"}))
    application.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        big = await http.post("/xero/webhook", content=b"{" + b" " * settings.max_webhook_bytes + b"}")
        assert big.status_code == 413
        assert big.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        strange = await http.post("/xero/webhook", content=b"{}", headers={"x-xero-signature": "é".encode()})
        assert strange.status_code == 401
    await application.state.events.close()
