import asyncio

from inference import Finished, GenerationRequest, SamplingParams, TokenDelta


async def collect(engine, ids, rid="r", *, cache_salt=b"", reasoning_budget=None, **sampling):
    """Run one request; returns (content text, reasoning text, deltas, finished)."""
    req = GenerationRequest(
        rid,
        list(ids),
        SamplingParams(**sampling),
        cache_salt=cache_salt,
        reasoning_budget=reasoning_budget,
    )
    text, reasoning, deltas, fin = "", "", [], None
    async for ev in engine.generate(req):
        if isinstance(ev, TokenDelta):
            deltas.append(ev)
            if ev.reasoning:
                reasoning += ev.text
            else:
                text += ev.text
        else:
            assert isinstance(ev, Finished)
            fin = ev
    assert fin is not None
    return text, reasoning, deltas, fin


async def wait_for(pred, limit_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
