"""Gateways for the load and fault tests, each a real `gateway serve` subprocess on SQLite in its
data directory, with a tenant that has a budget (so every request reserves and settles) and
an admin key (to read the budget's counters):

- `engine_gateway`: the embedded SmolLM2 engine, Prometheus metrics on (the KV-block gauges);
- `start_instant_gateway`: no embedded engine, one `backend: vllm` pool pointing at
  bench/instant_upstream.py (its own process), so that the load is on the gateway itself
  (auth, policy, rate limits, budgets, the usage and audit writers) at hundreds of requests
  a second instead of the few the 135M model manages on two shared cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import GATEWAY, RunningGateway, free_port, start_gateway
from tests.e2e.workers import RunningWorker

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"GATEWAY_ACCESS_LOG": "false", "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_CONSOLE": "false"}

BUDGET_USD = "1000"


@dataclass
class LoadGateway:
    server: RunningGateway
    tenant: str
    key: str
    admin_key: str


def provision(server: RunningGateway, tenant: str, *, rpm: int = 0, tpm: int = 0) -> tuple[str, str]:
    """An admin key (the CLI: the one secret an operator starts from), then through the admin
    API a tenant with a hard monthly budget and rate limits, and its key.
    Returns (key, admin key)."""
    admin = str(json.loads(server.cli("admin", "key", "create", f"{tenant}-ops", "--json").stdout)["key"])
    with httpx.Client(base_url=f"{server.base_url}/admin", headers=bearer(admin), timeout=60) as api:
        api.post("/tenants", json={"name": tenant}).raise_for_status()
        api.put(f"/tenants/{tenant}/budget", json={"limit_usd": BUDGET_USD}).raise_for_status()
        if rpm or tpm:
            api.put(f"/tenants/{tenant}/limits", json={"rpm": rpm, "tpm": tpm}).raise_for_status()
        created = api.post(f"/tenants/{tenant}/keys", json={})
        created.raise_for_status()
    return str(created.json()["key"]), admin


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def engine_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadGateway]:
    server = start_gateway(tmp_path_factory.mktemp("engine"), {"GATEWAY_METRICS": "prometheus", **QUIET})
    try:
        key, admin = provision(server, "engine")
        yield LoadGateway(server, "engine", key, admin)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def instant_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """bench/instant_upstream.py on a free port; yields the port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("upstream") / "upstream.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "instant_upstream.py"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


WORKER_TOKEN = "worker-token-for-load-tests-0123456789"


def fleet_env(data_dir: Path, upstream_port: int, worker_url: str) -> dict[str, str]:
    """Two pools: Flash on the instant upstream (load on the gateway itself), Pro on a real
    `gateway worker` (the engine in its own process, which a test may kill)."""
    pools = data_dir.parent / f"{data_dir.name}-pools.yaml"
    pools.write_text(
        f"""pools:
  - name: instant
    device_kind: cuda
    vendor: nvidia
    software_stack: CUDA
    region: local
    variants: [flash]
    backend: vllm
    models: {{flash: instant-flash}}
    replicas:
      - url: http://127.0.0.1:{upstream_port}/v1
        capacity: 512
  - name: cpu-worker
    backend: worker
    device_kind: cpu
    vendor: amd
    region: local
    variants: [pro]
    replicas:
      - url: {worker_url}
        capacity: 32
"""
    )
    return {
        "GATEWAY_POOLS_FILE": str(pools),
        "GATEWAY_EMBEDDED_ENGINE": "false",
        "GATEWAY_WORKER_TOKEN": WORKER_TOKEN,
        "GATEWAY_DISPATCH_HEALTH_INTERVAL_S": "1",
        **QUIET,
    }


def launch_worker(log_path: Path) -> RunningWorker:
    """A `gateway worker` process on a free port, not waited for (its model loads meanwhile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_WORKER_TOKEN": WORKER_TOKEN, "PYTHONUNBUFFERED": "1", "GATEWAY_THREADS": "1"})
    port = free_port()
    process = subprocess.Popen(
        [*GATEWAY, "worker", "--pool", "cpu-worker", "--port", str(port)],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return RunningWorker(process, f"http://127.0.0.1:{port}", log_path)


def wait_live(worker: RunningWorker, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{worker.log_path.read_text()}")
        try:
            if httpx.get(f"{worker.url}/livez", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{worker.log_path.read_text()}")
        time.sleep(0.25)


@dataclass
class Fleet:
    gateway: LoadGateway
    worker: RunningWorker
    upstream_port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, instant_upstream: int) -> Iterator[Fleet]:
    """The instant upstream, one worker and a gateway in front of both; the worker's model
    loads while the gateway starts."""
    tmp = tmp_path_factory.mktemp("fleet")
    worker = launch_worker(tmp / "worker.log")
    try:
        data_dir = tmp / "gw"
        data_dir.mkdir()
        env = fleet_env(data_dir, instant_upstream, worker.url)
        server = start_gateway(data_dir, env)
        try:
            wait_live(worker)
            key, admin = provision(server, "load", rpm=50_000_000, tpm=2_000_000_000)
            yield Fleet(LoadGateway(server, "load", key, admin), worker, instant_upstream, env)
        finally:
            server.stop()
    finally:
        worker.stop()
