"""The engine's paged decode path through each kernel (the C++ one, and Triton's in its
interpreter) gives the same greedy answers as its PyTorch path, with the fp32 model."""

from __future__ import annotations

import asyncio

import pytest

from inference import EmbeddedModel, Engine, EngineConfig
from kernels import cpu_ops
from tests.inference.helpers import collect

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Name three primary colors."]


async def _answers(model: EmbeddedModel, salt: bytes) -> list[str]:
    engine = Engine(model, EngineConfig(kv_cache_tokens=2048))
    await engine.start()
    try:
        outs = await asyncio.gather(
            *[
                collect(
                    engine,
                    model.encode_chat([{"role": "user", "content": q}]),
                    f"{salt!r}{i}",
                    cache_salt=salt,
                    temperature=0,
                    max_tokens=8,
                )
                for i, q in enumerate(QUESTIONS)
            ]
        )
    finally:
        await engine.stop()
    return [o[0] for o in outs]


@pytest.fixture(scope="module")
def fp32_model() -> EmbeddedModel:
    return EmbeddedModel.load(dtype="float32", threads=2)  # the interpreter has no bfloat16


@pytest.fixture(scope="module")
def reference(fp32_model) -> list[str]:
    kernel = fp32_model.model.decode_attention
    fp32_model.model.decode_attention = None  # PyTorch ops over the decode buffer
    try:
        return asyncio.run(_answers(fp32_model, b"torch"))
    finally:
        fp32_model.model.decode_attention = kernel


async def test_cpu_kernel_is_the_default_and_answers_alike(fp32_model, reference):
    assert fp32_model.model.decode_attention is cpu_ops.paged_decode_attention
    assert await _answers(fp32_model, b"cpu") == reference
    assert "Paris" in reference[0]


async def test_triton_kernel_answers_alike(fp32_model, reference, monkeypatch):
    pytest.importorskip("triton")
    from kernels import decode_attention

    monkeypatch.setattr(fp32_model.model, "decode_attention", decode_attention.paged_decode_attention)
    assert await _answers(fp32_model, b"triton") == reference
