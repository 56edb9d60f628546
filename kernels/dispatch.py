"""One place that picks, per device, the Triton kernel or its PyTorch twin for the
efficiency mechanisms (mHC's Sinkhorn, fused RMSNorm + residual, MoE grouped GEMM, top-k
block-sparse attention, attention over product-quantized KV).

Triton runs on CUDA and ROCm (torch calls both "cuda"); every other device (CPU, NPU, MPS)
gets the twin, which has the same signature. The interpreter (`TRITON_INTERPRET=1`) is for
parity tests only and is never chosen here: it is orders of magnitude slower than the twin.
"""

from __future__ import annotations

from typing import Literal

import torch

from kernels import block_sparse_attention_ref as _bsa_ref
from kernels import moe_gemm_ref as _moe_ref
from kernels import pq_attention_ref as _pq_ref
from kernels import rmsnorm_residual_ref as _rms_ref
from kernels import sinkhorn_ref as _sk_ref
from kernels.triton_support import on_gpu

Backend = Literal["triton", "torch"]


def backend(device: torch.device) -> Backend:
    return "triton" if on_gpu(device) else "torch"


def sinkhorn_knopp(logits: torch.Tensor, iters: int = _sk_ref.DEFAULT_ITERS) -> torch.Tensor:
    if backend(logits.device) == "triton" and logits.shape[-1] <= 16:
        from kernels.sinkhorn import sinkhorn_knopp as kernel

        return kernel(logits, iters)
    return _sk_ref.sinkhorn_knopp_ref(logits, iters)


def rmsnorm_residual(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    if backend(x.device) == "triton":
        from kernels.rmsnorm_residual import rmsnorm_residual as kernel

        return kernel(x, residual, weight, eps)
    return _rms_ref.rmsnorm_residual_ref(x, residual, weight, eps)


def moe_swiglu(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    expert_ids: torch.Tensor,
    expert_weights: torch.Tensor,
) -> torch.Tensor:
    if backend(x.device) == "triton":
        from kernels.moe_gemm import moe_swiglu as kernel

        return kernel(x, w_gate, w_up, w_down, expert_ids, expert_weights)
    return _moe_ref.moe_swiglu_ref(x, w_gate, w_up, w_down, expert_ids, expert_weights)


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    block_idx: torch.Tensor,
    block_size: int,
    window: int,
    scale: float,
) -> torch.Tensor:
    if backend(q.device) == "triton":
        from kernels.block_sparse_attention import block_sparse_attention as kernel

        return kernel(q, k, v, seq_lens, block_idx, block_size, window, scale)
    return _bsa_ref.block_sparse_attention_ref(q, k, v, seq_lens, block_idx, block_size, window, scale)


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    block_size: int,
    top_k: int,
    window: int,
    scale: float | None = None,
    sink_blocks: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole CSA step: block summaries, the indexer's top-k, the attention. Returns the
    output and the selected block ids (for counting attended tokens)."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    summaries = _bsa_ref.block_summaries(k, seq_lens, block_size)
    idx = _bsa_ref.select_blocks(q, summaries, seq_lens, top_k, block_size, window, sink_blocks)
    return block_sparse_attention(q, k, v, seq_lens, idx, block_size, window, scale), idx


def pq_decode_attention(
    q: torch.Tensor,
    k_codes: torch.Tensor,
    k_books: torch.Tensor,
    v_codes: torch.Tensor,
    v_books: torch.Tensor,
    slots: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    if backend(q.device) == "triton":
        from kernels.pq_attention import pq_decode_attention as kernel

        return kernel(q, k_codes, k_books, v_codes, v_books, slots, seq_lens, scale)
    return _pq_ref.pq_decode_attention_ref(q, k_codes, k_books, v_codes, v_books, slots, seq_lens, scale)
