"""What the gateway adds in front of an instant OpenAI-compatible upstream.

An instant upstream (bench/instant_upstream.py, its own process) answers a fixed completion
with usage. In front of it, `gateway serve` processes with the whole request path on: key
auth, the policy decision, rate limits (rpm + tpm), a hard budget's reservation, the ledger
write and the audit event, configured by a pools file with one `backend: vllm` pool and
GATEWAY_EMBEDDED_ENGINE=false (no weights loaded). Optionally the LiteLLM proxy (one worker,
no database) in front of the same upstream.

Measured in one run:
- latency at one connection: requests alternate direct / gateway / LiteLLM (keep-alive), so
  the added p50/p99 is the gateway's median minus the upstream's, side by side;
- requests/s at 32 connections (wrk): direct, one gateway process, two gateway processes
  (two `gateway serve` on two ports, the connections split between them), LiteLLM;
- with `--ab DIR`, a gateway B whose packages come first from DIR (another checkout, or a
  folder of extra packages), side by side with A in the same run.

    .venv/bin/python bench/gateway_overhead.py [--quick] [--store sqlite|postgres] [--profile DIR]

The last line is one JSON object (added_p50_ms, added_p99_ms, rps_1proc, rps_2proc,
direct_rps, litellm_added_p50_ms, litellm_rps, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# The checkout first and bench/ last on the path, not first (where Python puts a script's
# folder): a bench module named like one of the project's packages would shadow it (the
# editable install's finder is only reached after the path).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from _gateway_proc import (  # noqa: E402
    GATEWAY,
    GatewaySetup,
    Proc,
    Processes,
    free_port,
    group_cpu_seconds,
    instant_pools_yaml,
    sigterm_as_interrupt,
    wait_http,
)
from _load import Target, alternating_latency, has_wrk, summary_ms, throughput  # noqa: E402
from _stages import backend_roundtrip, parse_spans, profile_shares, stage_medians  # noqa: E402

LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/tmp/litellm-venv"))
PYSPY = os.environ.get("BENCH_PYSPY", shutil.which("py-spy") or "/tmp/pyspy-venv/bin/py-spy")
# The reference for LiteLLM on this kind of machine, used when it cannot be installed.
LITELLM_REFERENCE = {"added_p50_ms": 8.0, "rps": 146.0}
LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def body(model: str, *, stream: bool = False) -> dict[str, Any]:
    b: dict[str, Any] = {"model": model, "max_tokens": 16, "temperature": 0, "messages": QUESTION}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


def litellm_config(upstream_port: int) -> str:
    return f"""model_list:
  - model_name: deepseek-v4-flash
    litellm_params:
      model: openai/instant-flash
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-none
litellm_settings:
  telemetry: false
"""


def start_gateway(
    procs: Processes, setup: GatewaySetup, name: str, port: int, extra_env: dict[str, str] | None = None
) -> Proc:
    argv = [GATEWAY, "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = procs.start(name, argv, {**setup.env, **(extra_env or {})})
    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    return proc


def start_litellm(procs: Processes, workdir: Path, upstream_port: int) -> tuple[Proc, int] | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        return None
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(upstream_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    # A master key (LiteLLM refuses to start without one); without a database it is the only key.
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "NO_DOCKER": "1",
            "LITELLM_MASTER_KEY": LITELLM_KEY,
        }
    )
    argv = [
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = procs.start("litellm", argv, env)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=240)
    return proc, port


def start_variant(
    procs: Processes, setup: GatewaySetup, source: Path, auth: dict[str, str]
) -> tuple[Proc, Target]:
    """Gateway B for an A/B run: the same configuration, its packages taken first from
    `source` (another checkout, or a folder of extra packages such as uvloop)."""
    paths = [str(source.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])]
    port = free_port()
    proc = start_gateway(procs, setup, "gateway-b", port, {"PYTHONPATH": os.pathsep.join(paths)})
    target = Target("gateway-b", f"http://127.0.0.1:{port}/v1/chat/completions", auth)
    sanity(target)
    return proc, target


def one_process(
    proc: Proc, target: Target, up_port: int, connections: int, duration: float
) -> dict[str, Any]:
    """wrk on one gateway process, with its CPU time and the upstream connections it opened."""
    before, cpu0 = upstream_stats(up_port), group_cpu_seconds(proc.pid)
    out = throughput([target], body("deepseek-v4-flash"), connections, duration)
    after, cpu1 = upstream_stats(up_port), group_cpu_seconds(proc.pid)
    out["cpu_ms"] = round(1e3 * (cpu1 - cpu0) / max(1, out["requests"]), 3)
    sent = max(1, after["completions"] - before["completions"])
    out["upstream_connections_per_request"] = round((after["connections"] - before["connections"]) / sent, 3)
    return out


def upstream_stats(port: int) -> dict[str, int]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json())


def _lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def sanity(gateway: Target) -> None:
    """One request: 200, usage mapped from the upstream, rate-limit headers (limits applied)."""
    response = httpx.post(
        gateway.url, json=body("deepseek-v4-flash"), headers=dict(gateway.headers), timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"gateway answered {response.status_code}: {response.text[:500]}")
    usage = response.json()["usage"]
    if usage.get("prompt_cache_hit_tokens") != 16 or "cost_usd" not in usage:
        raise RuntimeError(f"unexpected usage from the gateway: {usage}")
    if "x-ratelimit-remaining-requests" not in response.headers:
        raise RuntimeError("no rate-limit headers: the tenant's limits were not applied")


def run(args: argparse.Namespace, setup: GatewaySetup, procs: Processes) -> dict[str, Any]:
    up_port = free_port()
    upstream = procs.start(
        "upstream",
        [sys.executable, str(Path(__file__).with_name("instant_upstream.py")), "--port", str(up_port)],
    )
    wait_http(f"http://127.0.0.1:{up_port}/v1/models", upstream)
    setup.prepare(instant_pools_yaml(up_port))
    # Limits far above the load (so nothing is refused) but checked on every request.
    key = setup.tenant("bench", budget_usd="1000", rpm=50_000_000, tpm=2_000_000_000)
    auth = {"authorization": f"Bearer {key}"}
    ports = [free_port(), free_port()]
    gw = [start_gateway(procs, setup, f"gateway-{i}", p) for i, p in enumerate(ports)]
    direct = Target("direct", f"http://127.0.0.1:{up_port}/v1/chat/completions")
    gw_targets = [
        Target(f"gateway-{i}", f"http://127.0.0.1:{p}/v1/chat/completions", auth) for i, p in enumerate(ports)
    ]
    sanity(gw_targets[0])
    sanity(gw_targets[1])
    gw_b, b_target = (None, None) if not args.ab else start_variant(procs, setup, Path(args.ab), auth)
    litellm = None if args.no_litellm else start_litellm(procs, setup.dir, up_port)
    lite_target = (
        Target(
            "litellm",
            f"http://127.0.0.1:{litellm[1]}/v1/chat/completions",
            {"authorization": f"Bearer {LITELLM_KEY}"},
        )
        if litellm
        else None
    )
    audit_before = setup.count_rows("audit_events")["audit_events"]
    usage_before = setup.count_rows("usage_records")["usage_records"]

    # Latency at one connection, interleaved. The direct target gets the upstream's model name.
    lat_targets = [
        direct,
        gw_targets[0],
        *([b_target] if b_target else []),
        *([lite_target] if lite_target else []),
    ]
    bodies = {"direct": body("instant-flash")}
    lat = asyncio.run(_alternate(lat_targets, bodies, args.rounds, stream=False))
    lat_stream = asyncio.run(
        _alternate(lat_targets, {"direct": body("instant-flash", stream=True)}, args.rounds // 2, stream=True)
    )
    answered = (args.rounds + 20) + (args.rounds // 2 + 20)

    # Throughput at 32 connections.
    c, d = args.connections, args.duration
    rps_direct = throughput([direct], body("instant-flash"), c, d)
    rps_1 = one_process(gw[0], gw_targets[0], up_port, c, d)
    rps_b = one_process(gw_b, b_target, up_port, c, d) if gw_b is not None and b_target is not None else None
    rps_2 = throughput(gw_targets, body("deepseek-v4-flash"), c, d)
    rps_lite = lite_cpu_ms = None
    if litellm is not None and lite_target is not None:
        cpu0 = group_cpu_seconds(litellm[0].pid)
        rps_lite = throughput([lite_target], body("deepseek-v4-flash"), c, d)
        lite_cpu_ms = 1e3 * (group_cpu_seconds(litellm[0].pid) - cpu0) / max(1, rps_lite["requests"])
    answered += rps_1["requests"] - rps_1["errors"] + rps_2["requests"] - rps_2["errors"]
    if rps_b is not None:
        answered += rps_b["requests"] - rps_b["errors"] + args.rounds + args.rounds // 2 + 40
    profile = None
    if args.profile:  # after the measurements, so sampling does not slow them
        profile = record_profile(procs, gw[0], gw_targets[0], Path(args.profile), c, d)
        answered += profile["load"]["requests"] - profile["load"]["errors"]

    for proc in [
        *gw,
        *([gw_b] if gw_b else []),
    ]:  # graceful stop flushes the batched ledger writer (and writes the profile)
        procs.stop(proc)
    rows = setup.count_rows("usage_records", "audit_events")
    # A gateway killed after the stop's grace period leaves its accepted records in the journal
    # or spool of its data directory (replayed at its next start): count them, so that a
    # shortfall of ledger rows is told apart from a loss.
    spool = setup.data_dir / "spool"
    usage_waiting = sum(_lines(f) for f in spool.glob("usage*")) if spool.exists() else 0
    audit_waiting = sum(_lines(f) for f in (spool / "audit").glob("*")) if (spool / "audit").exists() else 0
    g, dl = lat["gateway-0"], lat["direct"]
    gs, ds = lat_stream["gateway-0"], lat_stream["direct"]
    result: dict[str, Any] = {
        "bench": "gateway_overhead",
        "store": setup.store,
        "load_tool": "wrk" if has_wrk() else "httpx",
        "connections": c,
        "duration_s": d,
        "latency_rounds": args.rounds,
        "direct_p50_ms": dl["p50_ms"],
        "gateway_p50_ms": g["p50_ms"],
        "added_p50_ms": round(g["p50_ms"] - dl["p50_ms"], 3),
        "added_p99_ms": round(g["p99_ms"] - dl["p99_ms"], 3),
        "added_p50_stream_ms": round(gs["p50_ms"] - ds["p50_ms"], 3),
        "added_p99_stream_ms": round(gs["p99_ms"] - ds["p99_ms"], 3),
        "direct_rps": rps_direct["rps"],
        "rps_1proc": rps_1["rps"],
        "rps_2proc": rps_2["rps"],
        "scaling_2proc": round(rps_2["rps"] / rps_1["rps"], 2) if rps_1["rps"] else None,
        # CPU time of the gateway process per request at 32 connections: independent of the
        # other programs on the machine; 1000 / it is what one free core would serve.
        "cpu_ms_per_request_1proc": rps_1["cpu_ms"],
        "rps_per_free_core_estimate": round(1e3 / rps_1["cpu_ms"], 1) if rps_1["cpu_ms"] else None,
        "errors_1proc": rps_1["errors"],
        "errors_2proc": rps_2["errors"],
        "p50_ms_at_32_1proc": rps_1["p50_ms"],
        "p99_ms_at_32_1proc": rps_1["p99_ms"],
        # New TCP connections the gateway opened to the upstream per request it sent there
        # during the 1-process run: ~0 when it keeps connections alive, 1 when it does not.
        "upstream_connections_per_request": rps_1["upstream_connections_per_request"],
        "ledger_rows": rows["usage_records"] - usage_before,
        "audit_events": rows["audit_events"] - audit_before,
        "gateway_requests_ok": answered,
        "usage_records_waiting_in_spool": usage_waiting,
        "audit_events_waiting_in_spool": audit_waiting,
    }
    if b_target is not None and rps_b is not None:
        gb, gbs = lat["gateway-b"], lat_stream["gateway-b"]
        result["b"] = {
            "source": str(Path(args.ab).resolve()),
            "added_p50_ms": round(gb["p50_ms"] - dl["p50_ms"], 3),
            "added_p99_ms": round(gb["p99_ms"] - dl["p99_ms"], 3),
            "added_p50_stream_ms": round(gbs["p50_ms"] - ds["p50_ms"], 3),
            **{k: rps_b[k] for k in ("rps", "errors", "cpu_ms", "upstream_connections_per_request")},
        }
    if lite_target is not None and rps_lite is not None:
        lt, lts = lat["litellm"], lat_stream["litellm"]
        result.update(
            {
                "litellm": "measured",
                "litellm_added_p50_ms": round(lt["p50_ms"] - dl["p50_ms"], 3),
                "litellm_added_p99_ms": round(lt["p99_ms"] - dl["p99_ms"], 3),
                "litellm_added_p50_stream_ms": round(lts["p50_ms"] - ds["p50_ms"], 3),
                "litellm_rps": rps_lite["rps"],
                "litellm_cpu_ms_per_request": round(lite_cpu_ms or 0.0, 3),
                "litellm_errors": rps_lite["errors"],
            }
        )
    else:
        result.update(
            {
                "litellm": "reference (issue 15; not measured in this run)",
                "litellm_added_p50_ms": LITELLM_REFERENCE["added_p50_ms"],
                "litellm_rps": LITELLM_REFERENCE["rps"],
            }
        )
    if args.stages:  # a gateway that prints its spans: the time per stage, one connection
        result["stages_ms"] = stage_breakdown(procs, setup, auth, args.stages)
        result["dispatch_hop_ms"] = asyncio.run(
            backend_roundtrip(f"http://127.0.0.1:{up_port}/v1", args.stages)
        )
    if profile is not None:
        result["profile"] = profile["files"]
        result["profile_shares_pct"] = profile_shares(Path(profile["files"][0]).read_text())
        result["profile_rps"] = profile["load"]["rps"]
    return result


def stage_breakdown(procs: Processes, setup: GatewaySetup, auth: dict[str, str], n: int) -> dict[str, Any]:
    port = free_port()
    proc = start_gateway(procs, setup, "gateway-spans", port, {"GATEWAY_OTEL_EXPORTER": "console"})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    with httpx.Client(headers=auth, timeout=30) as client:
        for _ in range(n + 20):
            response = client.post(url, json=body("deepseek-v4-flash"))
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {response.text[:300]}")
    time.sleep(6)  # the batch span processor exports every 5 s
    procs.stop(proc)
    return stage_medians(parse_spans(proc.log_path.read_text(errors="replace")), skip=20)


def record_profile(
    procs: Processes, gateway: Proc, target: Target, directory: Path, connections: int, duration: float
) -> dict[str, Any]:
    """py-spy samples the gateway process (wall-clock, idle included, so waiting on the
    database or the upstream shows) while wrk loads it at `connections`. The output is
    collapsed stacks (one `frame;frame;... count` a line), for flamegraph tools or a grep."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "gateway.pyspy.txt"
    secs = max(2, int(duration))
    argv = [PYSPY, "record", "--pid", str(gateway.pid), "--rate", "200", "--duration", str(secs + 1)]
    spy = procs.start("py-spy", [*argv, "--format", "raw", "-o", str(out), "--nonblocking"])
    time.sleep(1.0)  # py-spy attaches
    load = throughput([target], body("deepseek-v4-flash"), connections, secs)
    spy.popen.wait(60)
    procs.stop(spy)
    return {"files": [str(out)], "load": load}


async def _alternate(
    targets: list[Target], bodies: dict[str, dict[str, Any]], rounds: int, *, stream: bool
) -> dict[str, dict[str, float]]:
    default = body("deepseek-v4-flash", stream=stream)
    samples = await alternating_latency(targets, default, rounds, bodies=bodies)
    return {name: summary_ms(s) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="gateway overhead against an instant upstream")
    parser.add_argument("--quick", action="store_true", help="smoke run: short measurements")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=None, help="seconds per throughput run (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 400)")
    parser.add_argument("--no-litellm", action="store_true", help="do not start the LiteLLM proxy")
    parser.add_argument(
        "--stages", type=int, default=None, help="requests for the per-stage breakdown (0: none)"
    )
    parser.add_argument(
        "--ab", default=None, help="also run gateway B with this folder first on PYTHONPATH, side by side"
    )
    parser.add_argument("--profile", default=None, help="record the first gateway with py-spy into DIR")
    args = parser.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.rounds = args.rounds or (60 if args.quick else 400)
    if args.stages is None:
        args.stages = 40 if args.quick else 200
    started = time.perf_counter()
    with sigterm_as_interrupt():
        setup = GatewaySetup(args.store)
        try:
            with Processes(setup.dir) as procs:
                result = run(args, setup, procs)
        finally:
            setup.cleanup()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
