"""The engine over the compressed KV cache with the real model (slow): bytes buy tokens, the
prefix cache and its metering stay exact, preemption completes, every decode attention path
answers alike, and the dense cache is what it was."""

import asyncio

import pytest

from inference import Engine, EngineConfig
from inference.errors import EngineConfigError
from inference.hca import HCAConfig
from inference.model import KVCache

from .helpers import collect, wait_for

pytestmark = pytest.mark.slow

# small codebooks fit in seconds (the served default, 256 centroids, takes minutes once per
# artifact and is measured by bench/efficiency.py); the engine's code paths are the same
TEST_HCA = HCAConfig(n_sub=32, n_centroids=16, calib_tokens=1024, chunk=512, kmeans_iters=4)


@pytest.fixture(scope="module")
def hca_model(model, tmp_path_factory):
    if model.kv_codec is None:
        model.enable_kv_codec(tmp_path_factory.mktemp("hca"), cfg=TEST_HCA)
    return model


def chat(model, q: str) -> list[int]:
    return model.encode_chat([{"role": "user", "content": q}])


def test_the_same_bytes_hold_four_times_the_tokens(hca_model):
    model = hca_model
    budget = 23040 * 1000  # 1,000 tokens of the bf16 cache
    dense = Engine(model, EngineConfig(kv_cache_tokens=None, kv_cache_bytes=budget))
    pq = Engine(model, EngineConfig(kv_cache_tokens=None, kv_cache_bytes=budget, kv_compression="pq"))
    assert dense.kv_bytes_per_token == KVCache.bytes_per_token(model.config, model.kv_dtype) == 23040
    assert pq.kv_bytes_per_token == 2 * 30 * 3 * 32 == 5760  # one byte per 2 dims
    assert pq.kv_bytes_per_token / KVCache.bytes_per_token(model.config, __import__("torch").float16) == 0.25
    assert dense.capacity_tokens == 1000 // 16 * 16
    assert pq.capacity_tokens == 4000
    assert pq.kv_cache_bytes <= budget and dense.kv_cache_bytes <= budget


def test_bad_compression_settings_are_refused(hca_model):
    with pytest.raises(EngineConfigError, match="kv_compression"):
        Engine(hca_model, EngineConfig(kv_compression="zip"))
    with pytest.raises(EngineConfigError, match="pq_attention"):
        Engine(hca_model, EngineConfig(kv_compression="pq", pq_attention="magic"))


async def test_prefix_cache_hit_is_metered_and_answers_as_cold(hca_model):
    model = hca_model
    eng = Engine(model, EngineConfig(kv_cache_tokens=4096, max_num_batched_tokens=64, kv_compression="pq"))
    await eng.start()
    try:
        bs = eng.config.block_size
        p = chat(model, "Explain in two sentences why the sea is salty.")
        while len(p) % bs != 8:  # 8 tokens computed on the warm run: above the int4 rows
            p = p[:-5] + model.encode(" ok") + p[-5:]
        kw = {"cache_salt": b"t", "temperature": 0, "max_tokens": 12, "logprobs": True, "top_logprobs": 3}
        cold = await collect(eng, p, "cold", **kw)
        warm = await collect(eng, p, "warm", **kw)
        other = await collect(eng, p, "other", **{**kw, "cache_salt": b"u"})
    finally:
        await eng.stop()
    n = len(p)
    assert (cold[3].usage.prompt_cache_hit_tokens, cold[3].usage.prompt_cache_miss_tokens) == (0, n)
    assert (warm[3].usage.prompt_cache_hit_tokens, warm[3].usage.prompt_cache_miss_tokens) == (n - 8, 8)
    assert other[3].usage.prompt_cache_hit_tokens == 0
    assert [d.token_ids for d in warm[2]] == [d.token_ids for d in cold[2]]
    assert [d.logprobs for d in warm[2]] == [d.logprobs for d in cold[2]]


async def test_preemption_with_a_tiny_compressed_cache_completes_everything(hca_model):
    model = hca_model
    cfg = EngineConfig(kv_cache_tokens=160, block_size=16, max_num_batched_tokens=256, kv_compression="pq")
    eng = Engine(model, cfg)
    await eng.start()
    try:
        prompts = [chat(model, q) for q in ("What is 2 + 2?", "Name a colour.", "Say hello.")]
        results = await asyncio.gather(
            *[
                collect(eng, p, f"r{i}", cache_salt=b"%d" % i, temperature=0, max_tokens=60, ignore_eos=True)
                for i, p in enumerate(prompts)
            ]
        )
        for (text, _, _, fin), p in zip(results, prompts, strict=True):
            assert fin.finish_reason == "length"
            assert fin.usage.completion_tokens == 60
            assert fin.usage.prompt_tokens == len(p)
            assert text
        assert eng.stats()["preemptions"] > 0
        await wait_for(lambda: eng.stats().get("free_blocks") == eng.stats().get("num_blocks"))
    finally:
        await eng.stop()


async def test_every_decode_attention_path_answers_alike(hca_model):
    """Decoded rows in the buffer, lookup tables over the codes, codes decoded per step: one
    answer (greedy). The paths round differently, and with the test's coarse codebooks (16
    centroids) their logprobs drift apart within a few tokens (by up to ~0.9 nats at the fifth
    on this prompt, with either linear-layer kernel), so greedy continuations past the first
    near-tie say nothing. What must hold: the first decode step (the prefill's token is the
    same code) gives the same token within 0.15 nats and the same runner-up within 0.5 (a
    broken path is off by whole nats)."""
    model = hca_model
    p = chat(model, "What is the capital of France?")
    steps = {}
    for path in ("buffer", "codes", "decompress"):
        eng = Engine(model, EngineConfig(kv_cache_tokens=2048, kv_compression="pq", pq_attention=path))
        await eng.start()
        try:
            deltas = (
                await collect(eng, p, path, temperature=0, max_tokens=2, logprobs=True, top_logprobs=2)
            )[2]
        finally:
            await eng.stop()
        steps[path] = [lp for d in deltas for lp in d.logprobs or []]
    ref = steps["buffer"]
    for path in ("codes", "decompress"):
        got = steps[path]
        assert [s["token"] for s in got] == [s["token"] for s in ref], path
        top = {t["token"]: t["logprob"] for t in got[1]["top_logprobs"]}
        want = {t["token"]: t["logprob"] for t in ref[1]["top_logprobs"]}
        assert top.keys() == want.keys(), path
        assert abs(got[1]["logprob"] - ref[1]["logprob"]) < 0.15, path
        for token, lp in want.items():
            assert abs(top[token] - lp) < 0.5, (path, token, top[token], lp)


async def test_without_compression_the_dense_cache_serves_as_before(hca_model):
    model = hca_model
    eng = Engine(model, EngineConfig(kv_cache_tokens=2048))
    assert eng.codec is None and eng.config.kv_compression is None
    await eng.start()
    try:
        assert eng.runner is not None and eng.runner.kv.data.dtype == model.kv_dtype
        text = (
            await collect(
                eng, chat(model, "What is the capital of France?"), "d", temperature=0, max_tokens=12
            )
        )[0]
    finally:
        await eng.stop()
    assert "Paris" in text


async def test_the_embedded_backend_serves_each_variant_with_its_configuration(hca_model):
    """Flash and Pro over one loaded model: Flash's engine holds codes (four times the tokens
    in the same bytes), Pro's the dense cache; the dispatch request's variant picks the
    engine; answers carry the compute each engine measured (Think Max, reasoning first,
    computes more than Non-think on the same prompt)."""
    from inference.dispatch import DispatchRequest, EmbeddedBackend
    from inference.types import Finished, GenerationRequest, SamplingParams
    from inference.variants import VariantEngines

    model = hca_model
    engines = VariantEngines.build(model, EngineConfig(kv_cache_tokens=None, kv_cache_bytes=23040 * 512))
    flash, pro = engines.for_variant("flash"), engines.for_variant("pro")
    assert flash is not pro and flash.codec is model.kv_codec and pro.codec is None
    assert flash.capacity_tokens == 4 * pro.capacity_tokens == 2048
    assert engines.for_variant(None) is pro  # no variant: the default
    backend = EmbeddedBackend(engines)
    p = chat(model, "What is the capital of France?")
    await engines.start()
    try:
        got: dict[tuple[str, str], Finished] = {}
        for variant in ("flash", "pro"):
            for mode, budget in (("non-think", None), ("think-max", 24)):
                gen = GenerationRequest(
                    f"{variant}-{mode}",
                    p,
                    SamplingParams(temperature=0, max_tokens=40),
                    cache_salt=mode.encode(),
                    reasoning_budget=budget,
                )
                req = DispatchRequest(gen, [], variant=variant, mode=mode, model=f"deepseek-v4-{variant}")
                async for ev in backend.generate(req):
                    if isinstance(ev, Finished):
                        got[variant, mode] = ev
        stats = engines.stats()
    finally:
        await engines.stop()
    assert set(stats["variants"]) == {"flash", "pro"}
    for variant, per_tok in (("flash", 5760), ("pro", 23040)):
        nt, tm = got[variant, "non-think"], got[variant, "think-max"]
        assert nt.compute is not None and tm.compute is not None
        for fin in (nt, tm):
            assert fin.compute is not None
            u = fin.usage
            # every prompt miss (the think tag included) and the answer's tokens went through
            # the model (the last one only when the sequence ran another step after it)
            run = u.prompt_cache_miss_tokens + u.completion_tokens
            assert run - 1 <= fin.compute.tokens <= run
            assert fin.compute.kv_bytes == (u.prompt_tokens + u.completion_tokens) * per_tok
        assert tm.usage.reasoning_tokens > 0
        assert tm.compute.flops > nt.compute.flops  # the reasoning tokens were computed too
