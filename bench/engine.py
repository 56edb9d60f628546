"""Engine benchmark: prints JSON figures (medians over repeats).

    .venv/bin/python bench/engine.py [--repeats 3] [--threads 2] [--dtype auto] [--quick]

Keys: single_stream_decode_tps, aggregate_decode_tps_32, prefill_tps_1k, warm_ttft_ratio_2k
(goals >= 80, >= 800, >= 1000, <= 0.10), plus the raw timings behind them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import (  # noqa: E402
    EmbeddedModel,
    Engine,
    EngineConfig,
    Finished,
    GenerationRequest,
    SamplingParams,
    TokenDelta,
)

NEW_TOKENS = 256
TOPICS = [
    "the sea",
    "mountains",
    "a city at night",
    "autumn leaves",
    "a robot",
    "the moon",
    "coffee",
    "a library",
    "winter",
    "trains",
    "a garden",
    "the desert",
    "rain",
    "music",
    "a lighthouse",
    "bees",
    "clocks",
    "a bridge",
    "snow",
    "a market",
    "rivers",
    "the stars",
    "a forest",
    "bread",
    "the wind",
    "a cat",
    "islands",
    "candles",
    "a violin",
    "glaciers",
    "a kite",
    "thunder",
]


async def run_one(engine: Engine, ids: list[int], rid: str, max_tokens: int, salt: bytes = b""):
    """Returns (ttft_s, total_s, completion_tokens, first_token_time, end_time)."""
    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    t0 = time.perf_counter()
    first = None
    async for ev in engine.generate(GenerationRequest(rid, ids, sp, cache_salt=salt)):
        if first is None and isinstance(ev, TokenDelta | Finished):
            first = time.perf_counter()
        if isinstance(ev, Finished):
            end = time.perf_counter()
            return first - t0, end - t0, ev.usage.completion_tokens, first, end
    raise RuntimeError("no Finished event")


def _cpu_features() -> list[str]:
    """The CPU features that pick the engine's numerics and kernels (docs/engine.md): figures
    from machines of different kinds are not comparable."""
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return []
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return [f for f in wanted if f in flags]


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return -1.0


def long_prompt(model: EmbeddedModel, n: int, tag: str) -> list[int]:
    words = [
        "In",
        "the",
        "study",
        "of",
        "distributed",
        "systems",
        "engineers",
        "weigh",
        "consistency",
        "availability",
        "and",
        "partition",
        "tolerance",
        "while",
        "operators",
        "measure",
        "latency",
        "throughput",
        "and",
        "cost",
    ]
    text, ids = tag + ": ", []
    i = 0
    while len(ids) < n:
        text += " ".join(words[(i * 7) % len(words) :] + words[: (i * 7) % len(words)]) + f" {i}. "
        ids = model.encode(text)
        i += 1
    return ids[:n]


async def bench(args: argparse.Namespace) -> dict:
    model = EmbeddedModel.load(args.model, device=args.device, dtype=args.dtype, threads=args.threads)
    engine = Engine(model, EngineConfig(kv_cache_tokens=args.kv_tokens))
    await engine.start()
    res: dict = {
        "model": model.artifact.name,
        "dtype": str(model.dtype).removeprefix("torch."),
        "weights": str(model.weight_dtype).removeprefix("torch."),
        "kv_cache": str(model.kv_dtype).removeprefix("torch."),
        "cpu_features": _cpu_features(),
        "device": str(model.device),
        "threads": args.threads,
        "new_tokens": NEW_TOKENS,
    }
    # warm-up (allocator, kernels)
    await run_one(engine, model.encode_chat([{"role": "user", "content": "Hi"}]), "warm", 16)

    res["loadavg_start"] = _loadavg()
    cpu = {}

    # single stream decode
    c0 = time.process_time()
    w0 = time.perf_counter()
    single = []
    for r in range(args.repeats):
        ids = model.encode_chat([{"role": "user", "content": f"Write a poem about {TOPICS[r]}."}])
        ttft, total, n, first, end = await run_one(engine, ids, f"s{r}", NEW_TOKENS, b"s%d" % r)
        single.append((n - 1) / (end - first))
    cpu["single"] = (time.process_time() - c0, time.perf_counter() - w0)
    res["single_stream_decode_tps"] = round(statistics.median(single), 1)
    res["single_stream_runs"] = [round(x, 1) for x in single]

    # 32 concurrent streams
    agg, agg_e2e = [], []
    c0 = time.process_time()
    w0 = time.perf_counter()
    for r in range(max(1, args.repeats)):
        prompts = [
            model.encode_chat([{"role": "user", "content": f"Write a poem about {t}."}]) for t in TOPICS
        ]
        t0 = time.perf_counter()
        outs = await asyncio.gather(
            *[run_one(engine, p, f"a{r}-{i}", NEW_TOKENS, b"a%d" % r) for i, p in enumerate(prompts)]
        )
        wall = time.perf_counter() - t0
        total = sum(o[2] for o in outs)
        agg_e2e.append(total / wall)
        # decode phase: the tokens after each stream's first one, over the window from the
        # earliest first token to the last end (so no decode token falls outside it)
        window = max(o[4] for o in outs) - min(o[3] for o in outs)
        agg.append(sum(o[2] - 1 for o in outs) / window)
    cpu["aggregate"] = (time.process_time() - c0, time.perf_counter() - w0)
    res["aggregate_decode_tps_32"] = round(statistics.median(agg), 1)
    res["aggregate_runs"] = [round(x, 1) for x in agg]
    res["aggregate_e2e_tps_32"] = round(statistics.median(agg_e2e), 1)

    # prefill of a 1,000-token prompt (cold: fresh salt each time)
    pre = []
    c0 = time.process_time()
    w0 = time.perf_counter()
    for r in range(args.repeats):
        ids = long_prompt(model, 1000, f"p{r}")
        ttft, *_ = await run_one(engine, ids, f"p{r}", 1, b"p%d" % r)
        pre.append(len(ids) / ttft)
    cpu["prefill"] = (time.process_time() - c0, time.perf_counter() - w0)
    res["prefill_tps_1k"] = round(statistics.median(pre), 1)
    res["prefill_runs"] = [round(x, 1) for x in pre]

    # time to first token with a cached 2,000-token prefix vs cold
    ratios, colds, warms = [], [], []
    for r in range(args.repeats):
        ids = long_prompt(model, 2000, f"w{r}")
        salt = b"w%d" % r
        cold, *_ = await run_one(engine, ids, f"c{r}", 1, salt)
        warm, *_ = await run_one(engine, ids, f"h{r}", 1, salt)
        colds.append(cold)
        warms.append(warm)
        ratios.append(warm / cold)
    res["warm_ttft_ratio_2k"] = round(statistics.median(ratios), 4)
    res["cold_ttft_2k_s"] = round(statistics.median(colds), 4)
    res["warm_ttft_2k_s"] = round(statistics.median(warms), 4)
    res["preemptions"] = engine.stats().get("preemptions")
    res["loadavg_end"] = _loadavg()
    # Share of the machine this process got: CPU seconds / (wall seconds * threads); well
    # below 1 means other jobs shared the cores and the figures above are depressed.
    for k, (c, w) in cpu.items():
        res[f"cpu_share_{k}"] = round(c / (w * args.threads), 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kv-tokens", type=int, default=32768)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
