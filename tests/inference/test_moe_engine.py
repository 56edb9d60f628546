"""The engine with routed experts on the real model (slow: loads SmolLM2, fits or loads the
expert plan): fraction 1.0 is the dense model, and sequences of different fractions decoding
in one batch each produce what they produce alone."""

from __future__ import annotations

import asyncio

import pytest

from inference import Engine, EngineConfig, Finished, GenerationRequest, SamplingParams, TokenDelta
from inference.errors import InvalidRequestError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experts(model):
    return model.enable_experts()


async def _greedy(engine: Engine, ids: list[int], rid: str, frac: float | None, n: int = 12) -> list[int]:
    sp = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    out: list[int] = []
    async for ev in engine.generate(
        GenerationRequest(rid, ids, sp, cache_salt=rid.encode(), expert_fraction=frac)
    ):
        if isinstance(ev, TokenDelta):
            out += ev.token_ids
        elif isinstance(ev, Finished):
            break
    return out


async def test_fractions_in_one_batch_match_each_alone(model, experts):
    eng = Engine(model, EngineConfig(kv_cache_tokens=4096, max_num_batched_tokens=512))
    await eng.start()
    try:
        ids = model.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
        fracs = [None, 0.35, 0.92, 1.0]
        alone = [await _greedy(eng, ids, f"alone-{i}", f) for i, f in enumerate(fracs)]
        together = await asyncio.gather(*[_greedy(eng, ids, f"mix-{i}", f) for i, f in enumerate(fracs)])
        assert list(together) == alone
        assert alone[3] == alone[0]  # every expert = the dense model
        assert alone[2][:3] == alone[0][:3]  # Think Max keeps the dense answer's start
        with pytest.raises(InvalidRequestError, match="expert_fraction"):
            eng.validate(GenerationRequest("bad", ids, SamplingParams(), expert_fraction=0.0))
    finally:
        await eng.stop()
