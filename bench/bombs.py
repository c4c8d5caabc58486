"""Hostile inputs against a running service: what each is answered, and what it costs.

Starts the web service (uvicorn, as `invoicing serve` runs it) and a worker (`invoicing worker`)
as processes of their own, on a fresh database, with DATA_DIR and TMPDIR in a new folder, and
sends each bomb:

- `zip_of_zips`: a zip holding ten zips, each holding 50 MiB of one repeated byte (500 MiB
  unpacked from about 0.5 MiB);
- `manifest_repeats`: a manifest naming one 51 KiB zip (50 MiB unpacked) 20 times, with the zip;
- `parquet_wide_strings`: a 19 KiB Parquet file whose rows share one 1 MiB string (3 GiB read);
- `gzip_one_line`: a 765 KiB gzip of one 768 MiB line;
- `multipart_400mb`: 400 MiB of multipart upload with no token;
- `json_300mb`: a 300 MiB JSON body with no token.

The four files are uploaded by the organization's owner (`importCosts`) and followed until their
import ends. For each bomb it prints the answer, the peak RSS of the web and the worker processes
(their children included, but the worker's warm Chromium), and the peak growth of what they keep on disk: DATA_DIR (storage,
temporary folder) and the deleted files they still hold open. The last line is
`worst_growth_mb <N>`, the most either process's resident memory or the disk grew over one
bomb (the manual's bound: 100, docs/benchmarks/index.md).

The database named by --database-url is DROPPED and recreated.

    .venv/bin/python bench/bombs.py [--only multipart_400mb,json_300mb]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bomb_files import gzip_one_line, parquet_wide_strings  # noqa: E402
from bench.graphql_list import recreate  # noqa: E402

MiB = 1024**2
IMPORT = """mutation($files: [Upload!]) { importCosts(files: $files) { __typename
  ... on CostImportQueued { costImport { id } } ... on UserError { code message } } }"""
IMPORT_STATE = """query($id: ID!) { node(id: $id) { ... on CostImport { state error { message } } } }"""
FOCUS_HEADER = "BilledCost,BillingAccountId,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,SubAccountId"


# --------------------------------------------------------------------------- the bombs' files


def _zip(entries: list[tuple[str, bytes | Callable[[zipfile.ZipFile, str], None]]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in entries:
            if callable(content):
                content(archive, name)
            else:
                archive.writestr(name, content)
    return buffer.getvalue()


def _repeated(size: int) -> Callable[[zipfile.ZipFile, str], None]:
    """An entry of `size` bytes of one character, written a MiB at a time."""

    def write(archive: zipfile.ZipFile, name: str) -> None:
        with archive.open(name, "w", force_zip64=True) as entry:
            entry.write(f"{FOCUS_HEADER}\n".encode())
            block = b"1" * MiB
            for _ in range(size // MiB):
                entry.write(block)

    return write


def zip_of_zips(folder: Path) -> list[Path]:
    inner = _zip([("costs.csv", _repeated(50 * MiB))])
    path = folder / "zip-of-zips.zip"
    path.write_bytes(_zip([(f"part-{i}.zip", inner) for i in range(10)]))
    return [path]


def manifest_repeats(folder: Path) -> list[Path]:
    part = folder / "part.zip"
    part.write_bytes(_zip([("costs.csv", _repeated(50 * MiB))]))
    manifest = folder / "focus-Manifest.json"
    manifest.write_text(json.dumps({"dataFiles": ["s3://bucket/export/part.zip"] * 20}))
    return [manifest, part]


def _one(builder: Callable[[Path], object], name: str) -> Callable[[Path], list[Path]]:
    def build(folder: Path) -> list[Path]:
        builder(folder / name)
        return [folder / name]

    return build


# --------------------------------------------------------------------------- the service


class Service:
    """The web process and the worker, with DATA_DIR and TMPDIR in `folder`."""

    def __init__(self, folder: Path, port: int, env: dict[str, str]):
        self.folder = folder
        self.port = port
        self.tmp = folder / "tmp"
        self.tmp.mkdir(parents=True)
        environment = dict(os.environ, **env, DATA_DIR=str(folder / "data"), TMPDIR=str(self.tmp))
        log = (folder / "service.log").open("wb")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "invoicing.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=environment, stdout=log, stderr=log,
        )
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "invoicing", "worker"], cwd=ROOT, env=environment, stdout=log, stderr=log,
        )

    def ready(self) -> None:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError, ValueError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").json()["status"] == "ok":
                    return
            time.sleep(0.1)
        raise SystemExit("the web process and the worker did not start")

    def rss(self, process: subprocess.Popen) -> int:
        """Resident bytes of `process` and its children but the worker's warm browser
        (Playwright's driver and Chromium, the same size whatever arrives)."""
        total = 0
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(process.pid)
            for member in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    if member is parent or not any(name in member.name() for name in ("chrom", "node")):
                        total += member.memory_info().rss
        return total

    def disk(self) -> int:
        """Bytes under the folder, and in the deleted files the two processes hold open."""
        total = 0
        for path in self.folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
        for process in (self.web, self.worker):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{process.pid}/fd"):
                    with contextlib.suppress(OSError):
                        link = f"/proc/{process.pid}/fd/{fd}"
                        if os.readlink(link).endswith("(deleted)"):
                            total += os.stat(link).st_size
        return total

    def stop(self) -> None:
        for process in (self.web, self.worker):
            process.terminate()
        for process in (self.web, self.worker):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


class Peaks:
    """Samples the service's RSS and disk while a bomb goes off."""

    def __init__(self, service: Service):
        self.service = service
        self.web = self.worker = 0
        self.web_before, self.worker_before = service.rss(service.web), service.rss(service.worker)
        self.disk_before = service.disk()
        self.disk = self.disk_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.web = max(self.web, self.service.rss(self.service.web))
            self.worker = max(self.worker, self.service.rss(self.service.worker))
            self.disk = max(self.disk, self.service.disk())
            self._stop.wait(0.05)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def disk_mb(self) -> float:
        return (self.disk - self.disk_before) / MiB

    @property
    def growth_mb(self) -> float:
        """The most any of the three grew: the web process's memory, the worker's, the disk."""
        return max(self.disk_mb, (self.web - self.web_before) / MiB, (self.worker - self.worker_before) / MiB)


# --------------------------------------------------------------------------- sending


def upload(service: Service, token: str, files: list[Path]) -> str:
    """`importCosts` with `files`, then the import's end state (or the refusal)."""
    operations = {"query": IMPORT, "variables": {"files": [None] * len(files)}}
    mapping = {str(i): [f"variables.files.{i}"] for i in range(len(files))}
    base = f"http://127.0.0.1:{service.port}/graphql"
    with contextlib.ExitStack() as stack:
        parts = {str(i): (path.name, stack.enter_context(path.open("rb")), "application/octet-stream")
                 for i, path in enumerate(files)}
        answer = httpx.post(base, data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
                            files=parts, headers={"Authorization": f"Bearer {token}"}, timeout=600).json()
    queued = (answer.get("data") or {}).get("importCosts")
    if not queued or queued["__typename"] != "CostImportQueued":
        return f"refused: {json.dumps(answer)[:200]}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        node = httpx.post(base, json={"query": IMPORT_STATE, "variables": {"id": queued["costImport"]["id"]}},
                          headers={"Authorization": f"Bearer {token}"}).json()["data"]["node"]
        if node["state"] in ("DONE", "FAILED"):
            return f"import {node['state']}" + (f": {node['error']['message'][:160]}" if node["error"] else "")
        time.sleep(0.5)
    return "import still running after 600 s"


def raw_post(service: Service, content_type: str, head: bytes, size: int, token: str | None = None) -> str:
    """A POST of `head` followed by `size` filler bytes, stopping once the server answers
    (a client that kept sending would only be cut off): the answer's status and start."""
    length = len(head) + size
    request = (f"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
               f"content-length: {length}\r\n" + (f"authorization: Bearer {token}\r\n" if token else "") + "\r\n")
    sent = 0
    block = b" " * MiB
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(request.encode() + head)
        while sent < size:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(block[:min(MiB, size - sent)])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += min(MiB, size - sent)
        sock.settimeout(300)
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    body = answer.partition(b"\r\n\r\n")[2].decode(errors="replace")
    return f"{status} after {sent / MiB:.0f} MiB sent: {body[:160]}"


def multipart_400mb(service: Service, token: str) -> str:
    boundary = "bomb"
    head = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"operations\"\r\n\r\n"
            f"{json.dumps({'query': IMPORT, 'variables': {'files': [None]}})}\r\n"
            f"--{boundary}\r\ncontent-disposition: form-data; name=\"map\"\r\n\r\n{{\"0\": [\"variables.files.0\"]}}\r\n"
            f"--{boundary}\r\ncontent-disposition: form-data; name=\"0\"; filename=\"costs.csv\"\r\n\r\n").encode()
    return raw_post(service, f"multipart/form-data; boundary={boundary}", head, 400 * MiB)


def json_300mb(service: Service, token: str) -> str:
    return raw_post(service, "application/json", b'{"query": "{ __typename }", "padding": "', 300 * MiB)


FILE_BOMBS: dict[str, Callable[[Path], list[Path]]] = {
    "zip_of_zips": zip_of_zips,
    "manifest_repeats": manifest_repeats,
    "parquet_wide_strings": _one(lambda path: parquet_wide_strings(path, rows=3000, value_bytes=MiB), "wide.parquet"),
    "gzip_one_line": _one(gzip_one_line, "one-line.csv.gz"),
}
REQUEST_BOMBS: dict[str, Callable[[Service, str], str]] = {"multipart_400mb": multipart_400mb, "json_300mb": json_300mb}


async def seed() -> str:
    from models import Organization
    from models.auth import TokenKind, create_user, issue_token
    from models.base import Scope

    org = await Organization.create(name="Bench MSP")
    owner = await create_user(org.id, "bombs@example.com", Scope.OWNER)
    raw, _ = await issue_token(owner, TokenKind.API, timedelta(days=1))
    return raw


async def prepare(args) -> str:
    from infra import db
    from infra.settings import get_settings

    settings = get_settings()
    await recreate(args.database_url)
    await db.migrate(settings)
    await db.close()
    await db.init(settings)
    try:
        return await seed()
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/invoicing_bench_bombs",
                        help="database to DROP, recreate and fill (default: %(default)s)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--only", default="", help="comma-separated bomb names (default: all)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or [*FILE_BOMBS, *REQUEST_BOMBS]
    env = {"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "ENVIRONMENT": "production"}
    os.environ.update(env)
    token = asyncio.run(prepare(args))
    folder = Path(tempfile.mkdtemp(prefix="invoicing-bombs-"))
    built = folder / "bombs"
    built.mkdir()
    service = Service(folder / "service", args.port, env)
    worst = 0.0
    try:
        service.ready()
        for name in names:
            files = FILE_BOMBS[name](built) if name in FILE_BOMBS else []
            sizes = ", ".join(f"{path.name} {path.stat().st_size / 1024:,.0f} KiB" for path in files)
            with Peaks(service) as peaks:
                answer = upload(service, token, files) if files else REQUEST_BOMBS[name](service, token)
                time.sleep(1)  # what the answer left behind, if anything, shows in the last samples
            worst = max(worst, peaks.growth_mb)
            print(f"{name}{f' ({sizes})' if sizes else ''}: {answer}", flush=True)
            print(f"  peak RSS web {peaks.web / MiB:,.0f} MiB (+{(peaks.web - peaks.web_before) / MiB:,.0f}), "
                  f"worker {peaks.worker / MiB:,.0f} MiB (+{(peaks.worker - peaks.worker_before) / MiB:,.0f}); "
                  f"disk growth {peaks.disk_mb:,.1f} MiB", flush=True)
            for path in files:
                path.unlink()
    finally:
        service.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"worst_growth_mb {worst:.0f}")


if __name__ == "__main__":
    main()
