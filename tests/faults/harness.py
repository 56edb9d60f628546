"""Fault harness: a private Redis the test stops and starts, a TCP proxy in front of a fresh
PostgreSQL database that the test cuts, an instant upstream, and `gateway serve` against them.

The Redis server keeps nothing on disk, so a restart loses every counter and reservation (a
Redis without persistence, the real case). The proxy runs in the test's event loop: `cut()`
closes every connection through it and refuses new ones until `restore()`, which is what the
gateway sees when its database goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench._gateway_proc import GATEWAY, Proc, Processes, free_port, instant_pools_yaml, wait_http
from tests.faults.provision import provision

ROOT = Path(__file__).resolve().parents[2]
# The PostgreSQL server of the test suite (GATEWAY_TEST_DATABASE_URL): each fault test makes
# a database of its own on it and drops it at the end.
_PG = make_url(
    os.environ.get("GATEWAY_TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
PG_HOST, PG_PORT, PG_USER = _PG.host or "127.0.0.1", _PG.port or 5432, _PG.username or "postgres"
PG_ADMIN_DB = _PG.database or "postgres"


def require_services() -> None:
    """Skip unless the suite's PostgreSQL is configured and the Redis server binary exists."""
    if not os.environ.get("GATEWAY_TEST_DATABASE_URL"):
        pytest.skip("GATEWAY_TEST_DATABASE_URL is not set")
    missing = [b for b in ("redis-server", "redis-cli", "psql") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _db_url(host: str, port: int, db: str) -> str:
    return str(_PG.set(host=host, port=port, database=db).render_as_string(hide_password=False))


class RedisServer:
    """redis-server on a free port, without persistence; stop() loses everything."""

    def __init__(self, procs: Processes) -> None:
        self._procs = procs
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self._procs.log_dir)]
        self.proc = self._procs.start(f"redis-{self.port}-{int(time.time() * 1000)}", argv)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self._procs.stop(self.proc)
            self.proc = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout


class PgProxy:
    """A TCP proxy to the shared PostgreSQL that can cut and refuse every connection."""

    def __init__(self, upstream: tuple[str, int] = (PG_HOST, PG_PORT)) -> None:
        self._upstream = upstream
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.cut_connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Close every open connection and stop listening (new ones are refused)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut_connections += len(self._open) // 2  # each connection: client and server side
        for w in list(self._open):
            w.transport.abort()
        self._open.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


def psql(db: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-tAc", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **({"PGPASSWORD": str(_PG.password)} if _PG.password else {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql: {done.stderr.strip()}")
    return done.stdout.strip()


class FaultStack:
    """The processes of one fault test: Redis, the upstream, a fresh database, the gateway.

    The CLI reaches the database directly; the gateway goes through `proxy` (started by the
    test in its event loop before `start_gateway`)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(workdir)
        self.redis = RedisServer(self.procs)
        self.proxy = PgProxy()
        self.db = f"gwfault_{os.getpid()}_{os.urandom(4).hex()}"
        self.env: dict[str, str] = {}
        self.tenants: dict[str, dict[str, str]] = {}
        self._started: list[tuple[Proc, str]] = []
        self.gateway: Proc | None = None
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, tenants: list[dict[str, object]], extra_env: dict[str, str] | None = None) -> None:
        """Start Redis and the upstream, create the database, migrate it and create `tenants`
        (tests/faults/provision.py: name, budget_usd, rpm); `self.tenants[name]` then holds
        the tenant id and a key."""
        self.redis.start()
        up_port = free_port()
        upstream = self.procs.start(
            "upstream", [sys.executable, str(ROOT / "bench" / "instant_upstream.py"), "--port", str(up_port)]
        )
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        (self.dir / "pools.yaml").write_text(instant_pools_yaml(up_port))
        (self.dir / "data").mkdir(exist_ok=True)
        psql(PG_ADMIN_DB, f'CREATE DATABASE "{self.db}"')
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_DATA_DIR": str(self.dir / "data"),
                "GATEWAY_POOLS_FILE": str(self.dir / "pools.yaml"),
                "GATEWAY_EMBEDDED_ENGINE": "false",
                "GATEWAY_ACCESS_LOG": "false",
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_CONSOLE": "false",
                "GATEWAY_KEY_PEPPER": "fault-pepper-" + os.urandom(8).hex(),
                "GATEWAY_AUDIT_KEY": "fault-audit-" + os.urandom(8).hex(),
                "GATEWAY_DATABASE_URL": _db_url(PG_HOST, PG_PORT, self.db),
                "GATEWAY_REDIS_URL": self.redis.url,
                "GATEWAY_JOBS": "inprocess",
                "GATEWAY_DISPATCH_HEALTH_INTERVAL_S": "1",
                **(extra_env or {}),
            }
        )
        self.env = env
        self.tenants = provision(env, tenants)

    def start_gateway(self, extra_env: dict[str, str] | None = None, name: str = "gateway") -> str:
        """`gateway serve` with its database through the proxy (which must be listening);
        returns its base URL. The first one started is `self.gateway` at `self.base_url`."""
        url = _db_url("127.0.0.1", self.proxy.port, self.db)
        env = {**self.env, "GATEWAY_DATABASE_URL": url, **(extra_env or {})}
        port = self.port if self.gateway is None else free_port()
        argv = [GATEWAY, "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.procs.start(name, argv, env)
        self.gateway = self.gateway or proc
        self._started.append((proc, f"http://127.0.0.1:{port}"))
        return f"http://127.0.0.1:{port}"

    def wait_ready(self) -> None:
        """Wait until every gateway started answers /readyz."""
        for proc, base in self._started:
            wait_http(f"{base}/readyz", proc, timeout=120)

    def sql(self, query: str) -> str:
        return psql(self.db, query)

    def close(self) -> None:
        self.procs.__exit__(None, None, None)
        with contextlib.suppress(Exception):
            psql(PG_ADMIN_DB, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
