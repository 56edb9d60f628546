"""Decode runs for bench/efficiency.py and bench/variant_modes.py: one greedy stream timed
from its first token, and N streams at once timed over the window they share."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from inference import Finished, GenerationRequest, SamplingParams


async def run_stream(
    engine: Any, ids: list[int], rid: str, n: int, frac: float | None
) -> tuple[float, float, int]:
    """(first token time, end time, completion tokens) of one greedy stream of n tokens."""
    sp = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    first = None
    req = GenerationRequest(rid, ids, sp, cache_salt=rid.encode(), expert_fraction=frac)
    async for ev in engine.generate(req):
        if first is None:
            first = time.perf_counter()
        if isinstance(ev, Finished):
            assert first is not None
            return first, time.perf_counter(), ev.usage.completion_tokens
    raise RuntimeError("no Finished event")


async def single_tps(engine: Any, ids: list[int], rid: str, n: int, frac: float | None) -> float:
    """Decode tokens/s of one stream, prompt excluded: (n - 1) / (last - first token)."""
    first, end, got = await run_stream(engine, ids, rid, n, frac)
    return (got - 1) / (end - first)


async def many_tps(model: Any, engine: Any, tag: str, n: int, streams: int, frac: float | None) -> float:
    """Aggregate decode tokens/s of `streams` distinct prompts at once, over the window from
    the first stream's first token to the last stream's end."""
    outs = await asyncio.gather(
        *[
            run_stream(
                engine,
                model.encode_chat([{"role": "user", "content": f"Poem {i}."}]),
                f"{tag}-{i}",
                n,
                frac,
            )
            for i in range(streams)
        ]
    )
    window = max(o[1] for o in outs) - min(o[0] for o in outs)
    return sum(o[2] - 1 for o in outs) / window
