"""The engine's paged decode path through the Triton kernel (interpreter, fp32 model) gives
the same greedy answers as its PyTorch path."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("triton")

from inference import EmbeddedModel, Engine, EngineConfig  # noqa: E402
from tests.inference.helpers import collect  # noqa: E402

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Name three primary colors."]


async def _answers(model: EmbeddedModel, salt: bytes) -> list[str]:
    # no decode buffer: decode attention reads the pages (the path the kernel replaces)
    engine = Engine(model, EngineConfig(kv_cache_tokens=2048, decode_buffer_bytes=0))
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


async def test_kernel_and_pytorch_paths_answer_alike():
    model = EmbeddedModel.load(dtype="float32", threads=2)  # the interpreter has no bfloat16
    assert model.model.decode_kernel is False  # CPU default: the PyTorch path
    reference = await _answers(model, b"torch")
    model.model.decode_kernel = True
    assert await _answers(model, b"triton") == reference
    assert "Paris" in reference[0]
