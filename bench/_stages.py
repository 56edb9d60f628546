"""Where a gateway request's time goes, from the gateway's own OpenTelemetry spans.

A gateway started with GATEWAY_OTEL_EXPORTER=console prints every finished span to stdout as
a JSON object. Each request's trace has a server span (the whole request, as the telemetry
middleware sees it) and child spans for the stages that have one (gateway.auth,
policy.decide, billing.rate_limit, billing.reserve, billing.record, audit.append,
billing.settle). What no child covers (`other`) is the dispatch to the upstream and
the gateway's own request/response handling in between (Litestar routing, msgspec, the
tokenizer, the response body). Medians per stage over the requests, in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections import defaultdict
from typing import Any

STAGES = (
    "gateway.auth",
    "policy.decide",
    "billing.rate_limit",
    "billing.reserve",
    "billing.record",
    "audit.append",
    "billing.settle",
)


def parse_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects in a console exporter's output (other lines are skipped)."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    i = 0
    while True:
        i = text.find("{\n", i)
        if i < 0:
            return spans
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 2
            continue
        if isinstance(obj, dict) and "context" in obj and "start_time" in obj:
            spans.append(obj)
        i = end


def _ms(span: dict[str, Any]) -> float:
    start = dt.datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(span["end_time"].replace("Z", "+00:00"))
    return (end - start).total_seconds() * 1e3


def stage_medians(spans: list[dict[str, Any]], *, skip: int = 0) -> dict[str, Any]:
    """Median ms per stage over the traces that have a root chat-completions span; the first
    `skip` traces (by start) are left out as warm-up."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        by_trace[s["context"]["trace_id"]].append(s)
    rows = []
    for trace_spans in by_trace.values():
        roots = [s for s in trace_spans if s.get("parent_id") is None]
        if len(roots) != 1 or "chat/completions" not in roots[0]["name"]:
            continue
        root = roots[0]
        stages: dict[str, float] = defaultdict(float)
        for s in trace_spans:
            if s is not root and s["name"] in STAGES:
                stages[s["name"]] += _ms(s)
        total = _ms(root)
        stages["other"] = total - sum(stages.values())
        stages["total"] = total
        rows.append((root["start_time"], stages))
    rows.sort(key=lambda r: r[0])
    rows = rows[skip:]
    if not rows:
        return {"requests": 0}
    names = [*STAGES, "other", "total"]
    out: dict[str, Any] = {
        name: round(statistics.median(r[1].get(name, 0.0) for r in rows), 3) for name in names
    }
    out["requests"] = len(rows)
    return out


async def backend_roundtrip(upstream_base: str, rounds: int) -> dict[str, float]:
    """The dispatch hop alone, in this process: the gateway's UpstreamBackend (httpx, the vLLM
    dialect, usage mapping, our tokenizer on the answer) against a bare httpx POST of the same
    body, alternating, one connection each. Median ms."""
    import httpx

    from inference.dispatch import UpstreamBackend
    from inference.dispatch.types import DispatchRequest
    from inference.tokenizer_model import TokenizerModel
    from inference.types import GenerationRequest, SamplingParams

    tokenizer = TokenizerModel(None)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.encode_chat(messages, add_generation_prompt=True)
    request = DispatchRequest(
        generation=GenerationRequest("bench", ids, SamplingParams(temperature=0, max_tokens=16)),
        messages=messages,
        variant="flash",
        mode="non-think",
        model="deepseek-v4-flash",
        salt_text="bench-salt",
        stream=False,
    )
    backend = UpstreamBackend(
        "vllm", upstream_base, encode=tokenizer.encode, models={"flash": "instant-flash"}
    )
    body = {"model": "instant-flash", "messages": messages, "max_tokens": 16, "temperature": 0}
    via_backend, bare = [], []
    async with httpx.AsyncClient(base_url=upstream_base) as client:
        try:
            for i in range(rounds + 20):
                t0 = time.perf_counter()
                async for _ in backend.generate(request):
                    pass
                t1 = time.perf_counter()
                response = await client.post("/chat/completions", json=body)
                response.json()
                t2 = time.perf_counter()
                if i >= 20:
                    via_backend.append(t1 - t0)
                    bare.append(t2 - t1)
        finally:
            await backend.close()
    return {
        "upstream_backend_ms": round(statistics.median(via_backend) * 1e3, 3),
        "bare_httpx_ms": round(statistics.median(bare) * 1e3, 3),
    }


# py-spy's collapsed stacks, bucketed: the most specific frame (from the leaf up) that names a
# stage of the request path decides; a stack without one goes to the first layer (from the
# leaf up) that it passes through (our handler code, Litestar, uvicorn), else the event loop.
STAGE_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "database threads (aiosqlite: batched ledger/audit writes, cache reloads)",
        ("_connection_worker_thread (aiosqlite",),
    ),
    ("dispatch: the upstream client, SSE parsing, usage mapping", ("UpstreamBackend.",)),
    ("auth (key lookup, cache)", ("Authenticator.", "authenticate (gateway/api/auth.py")),
    ("prompt tokenization (chat template + BPE)", ("encode_chat (inference/",)),
    ("policy decision (decide)", ("decide (policy/decide.py",)),
    ("policy/compliance/price caches", ("PolicyCache.get", "ComplianceCache.get", "Metering.quotes_at")),
    ("rate limit", ("Metering.admit", "Metering.correct_tokens", "RateLimiter.")),
    ("budget reservation + settle", ("Metering.reserve", "Metering.settle", "Budgets.")),
    (
        "ledger + audit (submit, batched writers)",
        ("_record (gateway/service", "audit_attempt", "AuditWriter.", "UsageWriter."),
    ),
    ("telemetry (spans, metrics)", ("Telemetry.",)),
)
LAYER_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "our handler, service and dispatcher code (the rest)",
        ("(gateway/", "(inference/", "(billing/", "(policy/"),
    ),
    ("Litestar (routing, msgspec, responses)", ("(litestar/", "(msgspec")),
    ("uvicorn (HTTP server, h11 or httptools)", ("(uvicorn/", "(h11/", "(httptools")),
)


def _bucket(frames: list[str]) -> str:
    for buckets in (STAGE_BUCKETS, LAYER_BUCKETS):
        for frame in reversed(frames):
            hit = next((name for name, pats in buckets if any(p in frame for p in pats)), None)
            if hit is not None:
                return hit
    return "asyncio event loop, sockets, other"


def _aiosqlite_wait_frame() -> str | None:
    """The frame of aiosqlite's worker thread waiting for its next call: py-spy counts that
    blocking queue read as active, so it is left out (the thread is idle there)."""
    try:
        import inspect

        import aiosqlite.core
    except ImportError:
        return None
    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    for i, text in enumerate(lines):
        if "tx.get()" in text:
            return f"_connection_worker_thread (aiosqlite/core.py:{first + i})"
    return None


def profile_shares(collapsed: str) -> dict[str, float]:
    """Share of the busy samples (percent) per bucket."""
    counts: dict[str, int] = defaultdict(int)
    total = 0
    idle = _aiosqlite_wait_frame()
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1] == idle:
            continue
        total += int(n)
        counts[_bucket(frames)] += int(n)
    return (
        {k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
        if total
        else {}
    )
