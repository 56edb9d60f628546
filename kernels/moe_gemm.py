"""Triton kernels: fused MoE grouped GEMM for a SwiGLU FFN partitioned into experts.

After `align_by_expert` every block of BLOCK_M rows (assignments sorted by expert, padded)
belongs to one expert, so a program multiplies one weight slice by a tile of rows gathered
from x by index (no gathered copy of x, no copy of the weights):

1. gate/up: `h[row] = silu(x[tok] @ w_gate[e].T) * (x[tok] @ w_up[e].T)`, both GEMMs in one
   pass over x's tile, the SwiGLU applied in registers; h is stored per padded row.
2. down: `out_k[t*K + k] = weight * h[row] @ w_down[e].T`, scattered to the assignment's
   own row; the K slots of a token are summed afterwards (deterministic, no atomics).

Padding rows (sentinel T*K) are masked on load and never stored. The contract and the
twin are in `kernels.moe_gemm_ref`.
"""

from __future__ import annotations

import torch

from kernels.moe_gemm_ref import MoeAlignment, align_by_expert, check_moe_shapes
from kernels.triton_support import available, require_triton, tl, triton

__all__ = ["available", "moe_swiglu"]

if triton is not None:

    @triton.jit
    def _moe_gate_up_kernel(
        x_ptr,
        wg_ptr,
        wu_ptr,
        h_ptr,
        sorted_ptr,
        block_expert_ptr,
        num_assign,
        D,
        FE,
        stride_xt,
        stride_we,
        stride_wf,
        stride_wd,
        stride_ue,
        stride_uf,
        stride_ud,
        stride_hr,
        K: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_F: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_f = tl.program_id(1)
        e = tl.load(block_expert_ptr + pid_m).to(tl.int64)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        ids = tl.load(sorted_ptr + rows)
        valid = ids < num_assign
        tok = (ids // K).to(tl.int64)
        offs_f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
        mask_f = offs_f < FE
        acc_g = tl.zeros([BLOCK_M, BLOCK_F], tl.float32)
        acc_u = tl.zeros([BLOCK_M, BLOCK_F], tl.float32)
        for k0 in range(0, D, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < D
            xt = tl.load(
                x_ptr + tok[:, None] * stride_xt + offs_k[None, :],
                mask=valid[:, None] & mask_k[None, :],
                other=0.0,
            )
            wmask = mask_k[:, None] & mask_f[None, :]
            wg = tl.load(
                wg_ptr + e * stride_we + offs_f[None, :] * stride_wf + offs_k[:, None] * stride_wd,
                mask=wmask,
                other=0.0,
            )
            wu = tl.load(
                wu_ptr + e * stride_ue + offs_f[None, :] * stride_uf + offs_k[:, None] * stride_ud,
                mask=wmask,
                other=0.0,
            )
            acc_g = tl.dot(xt.to(wg.dtype), wg, acc_g, input_precision=PRECISION)
            acc_u = tl.dot(xt.to(wu.dtype), wu, acc_u, input_precision=PRECISION)
        h = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
        tl.store(
            h_ptr + rows[:, None].to(tl.int64) * stride_hr + offs_f[None, :],
            h.to(h_ptr.dtype.element_ty),
            mask=valid[:, None] & mask_f[None, :],
        )

    @triton.jit
    def _moe_down_kernel(
        h_ptr,
        wd_ptr,
        out_ptr,
        sorted_ptr,
        block_expert_ptr,
        weights_ptr,
        num_assign,
        D,
        FE,
        stride_hr,
        stride_de,
        stride_dn,
        stride_df,
        stride_or,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        e = tl.load(block_expert_ptr + pid_m).to(tl.int64)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        ids = tl.load(sorted_ptr + rows)
        valid = ids < num_assign
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < D
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for f0 in range(0, FE, BLOCK_K):
            offs_f = f0 + tl.arange(0, BLOCK_K)
            mask_f = offs_f < FE
            h = tl.load(
                h_ptr + rows[:, None].to(tl.int64) * stride_hr + offs_f[None, :],
                mask=valid[:, None] & mask_f[None, :],
                other=0.0,
            )
            wd = tl.load(
                wd_ptr + e * stride_de + offs_n[None, :] * stride_dn + offs_f[:, None] * stride_df,
                mask=mask_f[:, None] & mask_n[None, :],
                other=0.0,
            )
            acc = tl.dot(h.to(wd.dtype), wd, acc, input_precision=PRECISION)
        w = tl.load(weights_ptr + ids, mask=valid, other=0.0).to(tl.float32)
        acc = acc * w[:, None]
        tl.store(
            out_ptr + ids[:, None].to(tl.int64) * stride_or + offs_n[None, :],
            acc.to(out_ptr.dtype.element_ty),
            mask=valid[:, None] & mask_n[None, :],
        )


def moe_swiglu(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    expert_ids: torch.Tensor,
    expert_weights: torch.Tensor,
    block_m: int = 16,
    block_f: int = 32,
    block_k: int = 32,
    alignment: MoeAlignment | None = None,
) -> torch.Tensor:
    """Same contract as `kernels.moe_gemm_ref.moe_swiglu_ref`. Blocks must be >= 16 (the
    tensor-core tile); `alignment` may be passed in when several layers share one routing."""
    require_triton()
    check_moe_shapes(x, w_gate, w_up, w_down, expert_ids, expert_weights)
    if min(block_m, block_f, block_k) < 16:
        raise ValueError("tl.dot needs blocks of at least 16")
    t, k = expert_ids.shape
    e, fe, d = w_gate.shape
    al = alignment or align_by_expert(expert_ids, e, block_m)
    if al.block_m != block_m:
        raise ValueError("the alignment was made for another block size")
    x = x.contiguous()
    weights = expert_weights.reshape(-1).contiguous()
    out_k = torch.zeros((t * k, d), dtype=torch.float32, device=x.device)
    if al.num_blocks:
        # fp32 inputs: exact products (parity with the twin); bf16/fp16: the backend default
        precision = "ieee" if w_gate.dtype == torch.float32 else None
        h = torch.empty((al.sorted_ids.shape[0], fe), dtype=torch.float32, device=x.device)
        _moe_gate_up_kernel[(al.num_blocks, triton.cdiv(fe, block_f))](
            x,
            w_gate,
            w_up,
            h,
            al.sorted_ids,
            al.block_expert,
            t * k,
            d,
            fe,
            x.stride(0),
            *w_gate.stride(),
            *w_up.stride(),
            h.stride(0),
            K=k,
            BLOCK_M=block_m,
            BLOCK_F=block_f,
            BLOCK_K=block_k,
            PRECISION=precision,
        )
        _moe_down_kernel[(al.num_blocks, triton.cdiv(d, block_f))](
            h,
            w_down,
            out_k,
            al.sorted_ids,
            al.block_expert,
            weights,
            t * k,
            d,
            fe,
            h.stride(0),
            *w_down.stride(),
            out_k.stride(0),
            BLOCK_M=block_m,
            BLOCK_N=block_f,
            BLOCK_K=block_k,
            PRECISION=precision,
        )
    return out_k.view(t, k, d).sum(dim=1).to(x.dtype)
