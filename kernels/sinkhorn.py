"""Triton kernel: batched Sinkhorn-Knopp of small square matrices (mHC's H_res).

One program holds BLOCK_B whole matrices in registers (n <= 16, padded to a power of two)
and runs every round there, so each matrix is read and
written once instead of 2 x iters times as the eager twin does. The contract and the twin
are in `kernels.sinkhorn_ref`.
"""

from __future__ import annotations

import torch

from kernels.sinkhorn_ref import DEFAULT_ITERS, TINY
from kernels.triton_support import available, next_pow2, require_triton, tl, triton

__all__ = ["available", "sinkhorn_knopp"]

if triton is not None:

    @triton.jit
    def _sinkhorn_kernel(
        x_ptr,
        out_ptr,
        batch,
        iters,
        N: tl.constexpr,
        N_PAD: tl.constexpr,
        BLOCK_B: tl.constexpr,
        TINY: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs_b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
        offs_i = tl.arange(0, N_PAD)
        offs_j = tl.arange(0, N_PAD)
        mask = (offs_b[:, None, None] < batch) & (offs_i[None, :, None] < N) & (offs_j[None, None, :] < N)
        ptrs = offs_b[:, None, None] * (N * N) + offs_i[None, :, None] * N + offs_j[None, None, :]
        x = tl.load(x_ptr + ptrs, mask=mask, other=float("-inf")).to(tl.float32)
        rmax = tl.max(x, axis=2)
        rmax = tl.where(rmax == float("-inf"), 0.0, rmax)  # padding rows are all -inf
        m = tl.where(mask, tl.exp(x - rmax[:, :, None]), 0.0)
        for _ in range(iters):
            m = m / tl.maximum(tl.sum(m, axis=2), TINY)[:, :, None]
            m = m / tl.maximum(tl.sum(m, axis=1), TINY)[:, None, :]
        tl.store(out_ptr + ptrs, m, mask=mask)


def sinkhorn_knopp(logits: torch.Tensor, iters: int = DEFAULT_ITERS, block_b: int = 16) -> torch.Tensor:
    """Same contract as `kernels.sinkhorn_ref.sinkhorn_knopp_ref`."""
    require_triton()
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"need square matrices in the last two dims, got {tuple(logits.shape)}")
    n = logits.shape[-1]
    if n > 16:
        raise ValueError("the register-resident kernel is for small matrices (n <= 16)")
    lead = logits.shape[:-2]
    x = logits.reshape(-1, n, n).contiguous()
    batch = x.shape[0]
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    if batch:
        grid = (triton.cdiv(batch, block_b),)
        _sinkhorn_kernel[grid](x, out, batch, iters, N=n, N_PAD=next_pow2(n), BLOCK_B=block_b, TINY=TINY)
    return out.reshape(*lead, n, n)
