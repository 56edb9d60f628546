"""One-off torch work runs in a thread that ends with it (inference/fresh_thread.py): a
thread that lives on keeps its OpenMP team, which slowed the engine's decode 2.3x."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

import inference.hca
from inference.embedded import EmbeddedModel
from inference.fresh_thread import run_in_fresh_thread


def test_result_comes_back_from_a_thread_that_has_ended() -> None:
    seen: list[threading.Thread] = []

    def work(a: int, b: int = 0) -> int:
        seen.append(threading.current_thread())
        return a + b

    assert run_in_fresh_thread(work, 2, b=3) == 5
    assert seen[0] is not threading.current_thread()
    assert not seen[0].is_alive()


def test_an_exception_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad codebook file")

    with pytest.raises(ValueError, match="bad codebook file"):
        run_in_fresh_thread(fail)


def test_the_kv_codebooks_are_built_off_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[threading.Thread] = []

    def fake_build(model, sha256, encode, cache_dir, cfg):  # the real one fits for minutes
        built.append(threading.current_thread())
        return "codec"

    monkeypatch.setattr(inference.hca, "build_kv_codec", fake_build)
    lm = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32, weight_dtype=torch.float32)
    lm.kv_dtype = torch.float32
    em = EmbeddedModel(
        lm,  # type: ignore[arg-type]
        SimpleNamespace(encode_text=lambda s: []),  # type: ignore[arg-type]
        SimpleNamespace(sha256="0" * 64),  # type: ignore[arg-type]
        SimpleNamespace(context_length=8),  # type: ignore[arg-type]
        threads=None,
    )
    assert em.enable_kv_codec() == "codec" and em.enable_kv_codec() == "codec"
    assert len(built) == 1 and built[0] is not threading.current_thread() and not built[0].is_alive()
