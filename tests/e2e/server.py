"""Run `gateway` CLI commands and a `gateway serve` subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

GATEWAY = [sys.executable, "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GATEWAY, *args], env=self.env, capture_output=True, text=True, check=check, timeout=120
        )

    def create_key(self, tenant: str) -> dict[str, str]:
        self.cli("tenant", "create", tenant, check=False)
        return dict(json.loads(self.cli("key", "create", "--tenant", tenant, "--json").stdout))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_gateway(
    data_dir: Path, extra_env: dict[str, str] | None = None, timeout_s: float = 180
) -> RunningGateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_PORT": str(port), "PYTHONUNBUFFERED": "1"})
    env.update(extra_env or {})
    subprocess.run([*GATEWAY, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    log_path = data_dir / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen([*GATEWAY, "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return RunningGateway(process, base_url, data_dir, env, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"gateway did not become ready:\n{log_path.read_text()}")


def wait_rows(
    server: RunningGateway, count: int, sql: str, *args: object, timeout_s: float = 30
) -> list[tuple]:
    """Poll the server's SQLite database until `sql` returns `count` rows: usage records and
    request audit events are written by batching writers a few ms after the answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(server.data_dir / "gateway.db") as conn:
            rows = conn.execute(sql, args).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
