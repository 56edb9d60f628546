"""Real `gateway worker` processes for dispatch tests (each loads the embedded model)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.server import GATEWAY, free_port


@dataclass
class RunningWorker:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, connections drop mid-answer."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_workers(
    tmp: Path, pool: str, count: int, token: str, timeout_s: float = 240
) -> list[RunningWorker]:
    """Start `count` workers together (model loads overlap) and wait until each answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_WORKER_TOKEN": token, "PYTHONUNBUFFERED": "1", "GATEWAY_THREADS": "1"})
    workers = []
    for i in range(count):
        port = free_port()
        log_path = tmp / f"worker{i}.log"
        process = subprocess.Popen(
            [*GATEWAY, "worker", "--pool", pool, "--port", str(port)],
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        workers.append(RunningWorker(process, f"http://127.0.0.1:{port}", log_path))
    deadline = time.monotonic() + timeout_s
    try:
        for w in workers:
            while True:
                if w.process.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{w.log_path.read_text()}")
                try:
                    if httpx.get(f"{w.url}/livez", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{w.log_path.read_text()}")
                time.sleep(0.25)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers


def worker_pools_file(path: Path, pool: str, workers: list[RunningWorker], region: str = "local") -> Path:
    replicas = "\n".join(f"      - url: {w.url}\n        capacity: 32" for w in workers)
    path.write_text(
        f"""pools:
  - name: {pool}
    backend: worker
    device_kind: cpu
    vendor: amd
    region: {region}
    variants: [flash, pro]
    replicas:
{replicas}
"""
    )
    return path
