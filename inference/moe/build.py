"""Build the runtime experts: per-neuron routing (no fit) or the grouped experts (the plan from
the cache or fit on calibration text)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..model import LlamaModel
from .cache import load_plan, save_plan
from .calibration import calibration_tokens, tokens_digest
from .experts import ExpertFFN
from .fit import FitConfig, fit_plan
from .neurons import NeuronFFN

log = logging.getLogger(__name__)

EXPERT_KINDS = ("neurons", "groups")


def build_routed_ffn(
    kind: str,
    model: LlamaModel,
    tensors: dict,
    sha256: str,
    encode: Callable[[str], list[int]],
    cache_dir: str | Path | None = None,
) -> NeuronFFN | ExpertFFN:
    """`neurons`: every FFN neuron an expert, gate-first (inference.moe.neurons; weights
    repacked in seconds); `groups`: 48 experts of 32 neurons and a fitted low-rank router
    (inference.moe.experts; minutes to fit once per artifact, then cached)."""
    if kind == "neurons":
        return NeuronFFN(model, tensors)
    if kind == "groups":
        return build_expert_ffn(model, tensors, sha256, encode, cache_dir)
    raise ValueError(f"expert kind must be one of {', '.join(EXPERT_KINDS)}, got {kind!r}")


def build_expert_ffn(
    model: LlamaModel,
    tensors: dict,
    sha256: str,
    encode: Callable[[str], list[int]],
    cache_dir: str | Path | None = None,
    cfg: FitConfig | None = None,
) -> ExpertFFN:
    """`tensors`: the loader's weights (the FFN's Q4_1 blocks are repacked expert-major)."""
    cfg = cfg or FitConfig()
    chunks = calibration_tokens(encode, cfg.calib_tokens, cfg.chunk)
    # the calibration tokens are part of the key: another Python's docstrings, another fit
    key = f"{cfg.key()}-{tokens_digest(chunks)}"
    plan = load_plan(sha256, key, cache_dir)
    if plan is None:
        t0 = time.perf_counter()
        plan = fit_plan(model, tensors, chunks, cfg)
        where = save_plan(plan, sha256, key, cache_dir)
        log.info("expert plan fit in %.1fs (cached at %s)", time.perf_counter() - t0, where)
    return ExpertFFN(model, plan, tensors)
