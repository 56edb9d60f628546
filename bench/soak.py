"""Soak: a real `gateway serve` with the embedded SmolLM2 engine under steady load for
SOAK_SECONDS (default 600), then the process's memory and the KV cache compared with where
they started.

Clients (16 by default) loop without pause; of every 8 requests 4 are plain, 3 stream with
`include_usage`, and 1 streams a long answer and hangs up after 2 chunks (a client gone
mid-stream: its sequence must be cancelled and its KV blocks freed). The tenant has a budget,
so every request reserves and settles. Measured:

- rss_start_mb: the gateway's resident memory after a warm-up (the first 20 s of load, once
  the kernels, the caches and the allocator have settled), rss_end_mb at the end of the load,
  rss_max_mb in between (sampled every 5 s);
- kv_blocks_idle: the engine's KV blocks in use before any request; kv_blocks_end: after the
  load, once no sequence runs (waited for up to 60 s): equal unless blocks leaked;
- requests, errors_5xx, errors_other (connection errors, non-200 without 5xx), hangups;
- ledger_records and ledger_exact: every answer received in full has its usage record with
  the cost it was given (1e-12 USD), every hang-up is billed at least the tokens it read;
  reserved_units_end: budget held after the load (0 unless a reservation leaked).

    SOAK_SECONDS=600 .venv/bin/python bench/soak.py        # or: make soak

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

# The repo root first (the gateway and tests packages); bench/ last (its helper modules).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import httpx  # noqa: E402
from _gateway_proc import Processes, free_port, run_cli, sigterm_as_interrupt, wait_http  # noqa: E402

from tests.load.harness import (  # noqa: E402
    UNITS_PER_USD,
    Answer,
    chat_body,
    ledger,
    one_request,
    prometheus_gauge,
)

TENANT = "soak"
WARMUP_S = 20.0
KV_USED = "gateway_engine_kv_blocks_used"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def body_for(n: int) -> tuple[dict[str, Any], int]:
    """The request for the client's n-th turn and after how many chunks it hangs up (0: never)."""
    kind = n % 8
    if kind == 7:
        return chat_body(n, stream=True, max_tokens=96, logprobs=True), 2
    return chat_body(n, stream=kind in (4, 5, 6), max_tokens=8, logprobs=True), 0


async def soak(base: str, key: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    answers: list[tuple[Answer, int]] = []
    rss: dict[str, float] = {}
    samples: list[float] = []
    started = time.monotonic()
    stop_at = started + seconds

    async def loop(c: int, client: httpx.AsyncClient) -> None:
        turn = 0
        while time.monotonic() < stop_at:
            body, hang_up = body_for(c + turn)  # each client goes through every kind in turn
            body["messages"][0]["content"] += f" [{c}.{turn}]"  # distinct prompts
            answers.append((await one_request(client, body, stop_after=hang_up), hang_up))
            turn += 1

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(5.0, max(0.1, stop_at - time.monotonic())))
            samples.append(rss_mb(pid))
            if "start" not in rss and time.monotonic() - started >= min(WARMUP_S, seconds / 3):
                rss["start"] = samples[-1]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {key}"}, limits=limits, timeout=300
    ) as client:
        await asyncio.gather(sampler(), *(loop(c, client) for c in range(clients)))
    rss["end"] = rss_mb(pid)
    return {
        "answers": answers,
        "rss": rss,
        "rss_max": max(samples, default=rss["end"]),
        "elapsed": time.monotonic() - started,
    }


def reconcile(db: Path, answers: list[tuple[Answer, int]]) -> tuple[int, bool, list[str]]:
    """(records, exact, problems): each full answer's record carries its cost; each hang-up is
    billed at least the tokens it read and is marked cancelled."""
    deadline = time.monotonic() + 60
    ids = {a.request_id for a, _ in answers if a.request_id}
    rows = ledger(db, TENANT)
    while not ids <= set(rows) and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = ledger(db, TENANT)
    problems = []
    for a, hang_up in answers:
        if a.request_id is None:
            continue
        row = rows.get(a.request_id)
        if row is None:
            problems.append(f"{a.request_id}: no record")
            continue
        tokens, cost_units, status = row
        if hang_up:
            if status != "cancelled" and not a.complete or tokens < a.tokens_received:
                problems.append(
                    f"{a.request_id}: hang-up billed {tokens} < {a.tokens_received} read ({status})"
                )
        elif a.complete and (
            a.usage is None
            or Decimal(cost_units) / UNITS_PER_USD != Decimal(a.usage["cost_usd"])
            or tokens != a.usage["completion_tokens"]
        ):
            problems.append(f"{a.request_id}: record differs from the answer's usage")
    return len(rows), not problems, problems[:5]


def settled(base: str, kv_idle: float) -> bool:
    return (
        prometheus_gauge(base, "gateway_engine_running") == 0 and prometheus_gauge(base, KV_USED) <= kv_idle
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="soak the gateway with the embedded engine")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="gw-soak-") as tmp,
        Processes(Path(tmp)) as procs,
        sigterm_as_interrupt(),
    ):
        data = Path(tmp) / "data"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_DATA_DIR": str(data),
                "GATEWAY_PORT": str(port),
                "GATEWAY_METRICS": "prometheus",
                "GATEWAY_ACCESS_LOG": "false",
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_CONSOLE": "false",
            }
        )
        run_cli(["db", "upgrade"], env)
        run_cli(["tenant", "create", TENANT, "--budget-usd", "1000", "--json"], env)
        key = json.loads(run_cli(["key", "create", "--tenant", TENANT, "--json"], env))["key"]
        admin = json.loads(run_cli(["admin", "key", "create", "soak-ops", "--json"], env))["key"]
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "serve"], env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", gateway, timeout=300)
        kv_idle = prometheus_gauge(base, KV_USED)
        load_avg_start = os.getloadavg()[0]
        run = asyncio.run(soak(base, key, gateway.pid, args.clients, args.seconds))
        # Settled: nothing runs, then the KV level once no sequence holds blocks.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            prometheus_gauge(base, "gateway_engine_running") > 0 or prometheus_gauge(base, KV_USED) > kv_idle
        ):
            time.sleep(0.5)
        kv_end = prometheus_gauge(base, KV_USED)
        answers: list[tuple[Answer, int]] = run["answers"]
        records, exact, problems = reconcile(data / "gateway.db", answers)
        held = httpx.get(
            f"{base}/admin/tenants/{TENANT}/budget",
            headers={"authorization": f"Bearer {admin}"},
            timeout=60,
        ).json()["budget"]
        statuses = [a.status for a, _ in answers]
        out = {
            "duration_s": round(run["elapsed"], 1),
            "clients": args.clients,
            "requests": len(answers),
            "complete": sum(a.complete for a, _ in answers),
            "hangups": sum(1 for _, h in answers if h),
            "errors_5xx": sum(1 for s in statuses if s is not None and s >= 500),
            "errors_other": sum(1 for s in statuses if s is None or (s != 200 and s < 500)),
            "rss_start_mb": run["rss"].get("start", run["rss"]["end"]),
            "rss_end_mb": run["rss"]["end"],
            "rss_max_mb": run["rss_max"],
            "kv_blocks_idle": int(kv_idle),
            "kv_blocks_end": int(kv_end),
            "ledger_records": records,
            "ledger_exact": exact,
            "ledger_problems": problems,
            "reserved_units_end": held["reserved_units"],
            "load_avg_start": round(load_avg_start, 1),
            "load_avg_end": round(os.getloadavg()[0], 1),
        }
        if not gateway.alive():
            out["gateway_exited"] = gateway.popen.returncode
    print(json.dumps(out))


if __name__ == "__main__":
    main()
