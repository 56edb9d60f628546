"""Processes for the dispatch benchmarks: start them, wait until they answer, stop them all.

Every process runs in its own session (process group), so stopping it stops its children too;
`Processes` stops everything it started when its block ends, also on Ctrl-C or SIGTERM.
`GatewaySetup` prepares a gateway's environment (a temp data dir with SQLite, or a fresh
PostgreSQL database and a Redis db of its own), migrates it and provisions a tenant and key
with the CLI, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GATEWAY = str(BIN / "gateway")
BENCH_REDIS_DB = 12  # tests use 15, bench/billing_budgets.py 13


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # the group may hold children that outlived their parent
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()


class Processes:
    """Starts processes and stops all of them (last started first) when the block ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env if env is not None else os.environ, self.log_dir / f"{name}.log")
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self._procs.remove(proc)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop the processes."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system, all threads) used so far by the processes of a process group:
    what a request costs, independent of how many other programs share the cores."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / tick


def wait_http(url: str, proc: Proc, timeout: float = 180.0, headers: Mapping[str, str] | None = None) -> None:
    """Poll `url` until it answers 200; fail with the log's tail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail(80)}")
        try:
            request = urllib.request.Request(url, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f}s:\n{proc.log_tail()}")


def run_cli(args: Sequence[str], env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [GATEWAY, *args], env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


class GatewaySetup:
    """A gateway's environment: data dir, pools file, database (and Redis), tenant and key.

    store="sqlite": an SQLite file in a temp data dir, in-process limits and reservations.
    store="postgres": a fresh database on the local PostgreSQL (dropped at the end) and a Redis
    db of its own (flushed at the start and the end), so several gateway processes share the
    rate limits and budget reservations.
    """

    def __init__(self, store: str = "sqlite", *, tmp: Path | None = None) -> None:
        if store not in ("sqlite", "postgres"):
            raise ValueError("store is sqlite or postgres")
        self.store = store
        self._tmp = tempfile.TemporaryDirectory(prefix="gw-bench-") if tmp is None else None
        self.dir: Path = Path(self._tmp.name) if self._tmp is not None else Path(str(tmp))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pools_file = self.dir / "pools.yaml"
        self.pg_db = f"gwbench_{os.getpid()}_{int(time.time())}" if store == "postgres" else ""
        self.redis_url = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}" if store == "postgres" else ""
        self.env: dict[str, str] = {}

    def prepare(self, pools_yaml: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.pools_file.write_text(pools_yaml)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_DATA_DIR": str(self.data_dir),
                "GATEWAY_POOLS_FILE": str(self.pools_file),
                "GATEWAY_EMBEDDED_ENGINE": "false",
                "GATEWAY_ACCESS_LOG": "false",
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_CONSOLE": "false",
                "GATEWAY_KEY_PEPPER": "bench-pepper-" + os.urandom(8).hex(),
                "GATEWAY_AUDIT_KEY": "bench-audit-" + os.urandom(8).hex(),
            }
        )
        if self.store == "postgres":
            _pg_execute(f'CREATE DATABASE "{self.pg_db}"')
            env["GATEWAY_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.pg_db}"
            env["GATEWAY_REDIS_URL"] = self.redis_url
            env["GATEWAY_JOBS"] = "inprocess"  # no Celery worker in the benchmark
            _redis_flush(self.redis_url)
        env.update(extra_env or {})
        self.env = env
        run_cli(["db", "upgrade"], env)

    def tenant(self, name: str, *, budget_usd: str | None = None, rpm: int = 0, tpm: int = 0) -> str:
        """Create a tenant (with a hard monthly budget and rate limits when given); return a
        new key's secret."""
        args = ["tenant", "create", name, "--rpm", str(rpm), "--tpm", str(tpm), "--json"]
        if budget_usd is not None:
            args += ["--budget-usd", budget_usd, "--budget-period", "month", "--budget-mode", "hard"]
        run_cli(args, self.env)
        created = json.loads(run_cli(["key", "create", "--tenant", name, "--json"], self.env))
        return str(created["key"])

    def count_rows(self, *tables: str) -> dict[str, int]:
        """Row counts (to check every answered request reached the ledger and the audit log)."""
        if self.store == "sqlite":
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.data_dir / "gateway.db")) as conn:
                return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}
        out = {}
        for t in tables:
            out[t] = int(_pg_scalar(self.pg_db, f"SELECT count(*) FROM {t}"))
        return out

    def cleanup(self) -> None:
        if self.store == "postgres":
            with contextlib.suppress(Exception):
                _pg_execute(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
            with contextlib.suppress(Exception):
                _redis_flush(self.redis_url)
        if self._tmp is not None:
            self._tmp.cleanup()


def _psql(db: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql: {done.stderr.strip()}")
    return done.stdout.strip()


def _pg_execute(sql: str) -> None:
    _psql("test", sql)


def _pg_scalar(db: str, sql: str) -> Any:
    return _psql(db, sql)


def _redis_flush(url: str) -> None:
    db = url.rsplit("/", 1)[1]
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", db, "FLUSHDB"], capture_output=True, check=True
    )


def instant_pools_yaml(upstream_port: int) -> str:
    """A pools file with one `backend: vllm` pool serving both variants from
    bench/instant_upstream.py on `upstream_port`."""
    return f"""pools:
  - name: instant
    device_kind: cuda
    vendor: nvidia
    software_stack: CUDA
    region: local
    variants: [flash, pro]
    backend: vllm
    models: {{flash: instant-flash, pro: instant-pro}}
    replicas:
      - url: http://127.0.0.1:{upstream_port}/v1
        capacity: 512
"""
