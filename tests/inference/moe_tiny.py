"""A tiny random Llama with Q4_1 weights (2 layers, dim 64, 4 experts of 32 neurons): the
MoE tests run the engine's real code paths on it in milliseconds."""

from __future__ import annotations

import numpy as np
import torch

from inference.device import resolve_dtype, resolve_weight_dtype
from inference.gguf_loader import LlamaConfig
from inference.model import LlamaModel
from inference.quant import Q4_1Weight

CFG = LlamaConfig(
    n_layers=2,
    dim=64,
    n_heads=2,
    n_kv_heads=1,
    head_dim=32,
    ffn_dim=128,
    vocab_size=97,
    context_length=256,
    rope_base=10000.0,
    rms_eps=1e-5,
)


def _q41(rng: np.random.Generator, rows: int, cols: int, scale: float) -> Q4_1Weight:
    q = rng.integers(0, 16, size=(rows, cols)).astype(np.uint8)
    d = (rng.random((rows, cols // 32)) * scale + scale / 4).astype(np.float16).astype(np.float32)
    m = (-7.5 * d).astype(np.float16).astype(np.float32)  # a file's d and m are fp16
    return Q4_1Weight(q, d, m)


def tiny_tensors(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    c = CFG
    kv = c.n_kv_heads * c.head_dim
    t: dict = {
        "token_embd.weight": torch.from_numpy(rng.standard_normal((c.vocab_size, c.dim)).astype(np.float32)),
        "output_norm.weight": torch.ones(c.dim),
    }
    for i in range(c.n_layers):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = torch.ones(c.dim)
        t[p + "ffn_norm.weight"] = torch.ones(c.dim)
        t[p + "attn_q.weight"] = _q41(rng, c.dim, c.dim, 0.04)
        t[p + "attn_k.weight"] = _q41(rng, kv, c.dim, 0.04)
        t[p + "attn_v.weight"] = _q41(rng, kv, c.dim, 0.04)
        t[p + "attn_output.weight"] = _q41(rng, c.dim, c.dim, 0.04)
        t[p + "ffn_gate.weight"] = _q41(rng, c.ffn_dim, c.dim, 0.06)
        t[p + "ffn_up.weight"] = _q41(rng, c.ffn_dim, c.dim, 0.06)
        t[p + "ffn_down.weight"] = _q41(rng, c.dim, c.ffn_dim, 0.04)
    return t


def tiny_model(tensors: dict) -> LlamaModel:
    dev = torch.device("cpu")
    dt = resolve_dtype("auto", dev)
    return LlamaModel(CFG, tensors, dt, dev, weight_dtype=resolve_weight_dtype("auto", dev, dt))
