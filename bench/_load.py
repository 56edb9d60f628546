"""Load for the dispatch benchmarks: `wrk` for throughput, an alternating keep-alive client for
latency (each round sends one request to every target in turn, so a noisy neighbour on the
shared machine hits all targets alike and the differences of medians are fair)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the full chat-completions URL
    headers: Mapping[str, str] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def alternating_latency(
    targets: Sequence[Target],
    body: Mapping[str, Any],
    rounds: int,
    *,
    warmup: int = 20,
    bodies: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per request for each target, one connection each, requests interleaved.
    `bodies`: a target's own body by name (e.g. the upstream's model name when called directly)."""
    payloads = {t.name: json.dumps((bodies or {}).get(t.name, body)).encode() for t in targets}
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    clients = {
        t.name: httpx.AsyncClient(
            headers={"content-type": "application/json", **t.headers},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30.0,
        )
        for t in targets
    }
    try:
        for i in range(warmup + rounds):
            for t in targets:
                start = time.perf_counter()
                response = await clients[t.name].post(t.url, content=payloads[t.name])
                await response.aread()
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"{t.name} answered {response.status_code}: {response.text[:300]}")
                if i >= warmup:
                    out[t.name].append(elapsed)
    finally:
        for c in clients.values():
            await c.aclose()
    return out


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1e3, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1e3, 3),
        "n": len(samples),
    }


_LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(target: Target, body: Mapping[str, Any], directory: Path) -> Path:
    headers = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items()
    )
    path = directory / f"{target.name}.lua"
    path.write_text(_LUA.format(body=_lua_string(json.dumps(body)), headers=headers))
    return path


def throughput(
    targets: Sequence[Target], body: Mapping[str, Any], connections: int, duration_s: float
) -> dict[str, Any]:
    """Requests/s over all `targets` together (the connections split evenly between them),
    with wrk when installed, else with an asyncio client (which itself costs CPU)."""
    if has_wrk():
        return _wrk(targets, body, connections, duration_s)
    return asyncio.run(_python_load(targets, body, connections, duration_s))


def _wrk(
    targets: Sequence[Target], body: Mapping[str, Any], connections: int, duration_s: float
) -> dict[str, Any]:
    per = max(1, connections // len(targets))
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        procs = []
        for t in targets:
            script = wrk_script(t, body, Path(tmp))
            argv = [
                "wrk",
                "-t1",
                f"-c{per}",
                f"-d{duration_s:g}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(script),
                t.url,
            ]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        try:
            outputs = [p.communicate(timeout=duration_s + 60)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    parsed = [_parse_wrk(o) for o in outputs]
    total = sum(p["requests"] for p in parsed)
    bad = sum(p["non_2xx"] + p["socket_errors"] for p in parsed)
    ok_share = (total - bad) / total if total else 0.0
    return {
        "tool": "wrk",
        "rps": round(sum(p["rps"] for p in parsed) * ok_share, 1),  # answered 200 only
        "requests": total,
        "errors": bad,
        "p50_ms": max(p["p50_ms"] for p in parsed),
        "p99_ms": max(p["p99_ms"] for p in parsed),
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{output}")
    requests = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)

    def pct(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else float("nan")

    return {
        "rps": float(rps.group(1)),
        "requests": int(requests.group(1)) if requests else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
    }


async def _python_load(
    targets: Sequence[Target], body: Mapping[str, Any], connections: int, duration_s: float
) -> dict[str, Any]:
    payload = json.dumps(body).encode()
    per = max(1, connections // len(targets))
    done = {"ok": 0, "bad": 0}
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def loop(client: httpx.AsyncClient, url: str) -> None:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                response = await client.post(url, content=payload)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            done["ok" if ok else "bad"] += 1

    clients = [
        httpx.AsyncClient(
            headers={"content-type": "application/json", **t.headers},
            limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
            timeout=10.0,
        )
        for t in targets
    ]
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(loop(c, t.url) for c, t in zip(clients, targets, strict=True) for _ in range(per))
        )
    finally:
        for c in clients:
            await c.aclose()
    elapsed = time.perf_counter() - started
    return {
        "tool": "httpx",
        "rps": round(done["ok"] / elapsed, 1),
        "requests": done["ok"] + done["bad"],
        "errors": done["bad"],
        "p50_ms": round(statistics.median(latencies) * 1e3, 3) if latencies else float("nan"),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3) if latencies else float("nan"),
    }
