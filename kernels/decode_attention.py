"""Triton kernel: decode attention straight from the paged KV cache.

One program per (sequence, key/value head) reads that head's keys and values slot by slot
from the cache pages (no gather, no padding copies), scores the group of query heads that
share it, and keeps an online softmax in fp32 (flash-decoding without the split), so each
byte of the cache is read once. The contract and its plain-PyTorch twin are in
`kernels.decode_attention_ref`; tests run both on the CPU under `TRITON_INTERPRET=1`.

`triton` is optional: `available()` says whether the kernel can run (a CUDA device, or the
interpreter); callers fall back to PyTorch otherwise.
"""

from __future__ import annotations

import os

import torch

try:  # optional: CUDA builds of torch bring triton; the CPU build does not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None


def available(device: torch.device) -> bool:
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _decode_attention_kernel(
        q_ptr,
        k_ptr,
        v_ptr,
        slots_ptr,
        lens_ptr,
        out_ptr,
        scale,
        stride_qb,
        stride_qh,
        stride_kh,
        stride_ks,
        stride_vh,
        stride_vs,
        stride_sb,
        stride_ob,
        stride_oh,
        G: tl.constexpr,
        G_PAD: tl.constexpr,
        D: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        offs_g = tl.arange(0, G_PAD)
        offs_d = tl.arange(0, D)
        mask_g = offs_g < G
        heads = kvh * G + offs_g
        q = tl.load(
            q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
            mask=mask_g[:, None],
            other=0.0,
        ).to(tl.float32)
        n = tl.load(lens_ptr + b)
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D], tl.float32)
        for start in range(0, n, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            mask_n = offs_n < n
            slot = tl.load(slots_ptr + b * stride_sb + offs_n, mask=mask_n, other=0)
            k = tl.load(
                k_ptr + kvh * stride_kh + slot[:, None] * stride_ks + offs_d[None, :],
                mask=mask_n[:, None],
                other=0.0,
            ).to(tl.float32)
            v = tl.load(
                v_ptr + kvh * stride_vh + slot[:, None] * stride_vs + offs_d[None, :],
                mask=mask_n[:, None],
                other=0.0,
            ).to(tl.float32)
            s = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [G_PAD, BLOCK_N]
            s = tl.where(mask_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
            m_i = m_new
        out = acc / l_i[:, None]
        tl.store(
            out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=mask_g[:, None],
        )


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slots: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    block_n: int = 32,
) -> torch.Tensor:
    """Same contract as `kernels.decode_attention_ref.paged_decode_attention_ref`."""
    if triton is None:
        raise RuntimeError("the Triton decode-attention kernel needs the triton package")
    B, H, D = q.shape
    kvh = k_cache.shape[0]
    if H % kvh or D & (D - 1) or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("need H divisible by the kv heads, a power-of-two head size, dense rows")
    g = H // kvh
    q = q.contiguous()
    slots = slots.contiguous()
    seq_lens = seq_lens.to(torch.int32).contiguous()
    out = torch.empty_like(q)
    _decode_attention_kernel[(B, kvh)](
        q,
        k_cache,
        v_cache,
        slots,
        seq_lens,
        out,
        scale,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        slots.stride(0),
        out.stride(0),
        out.stride(1),
        G=g,
        G_PAD=triton.next_power_of_2(g),
        D=D,
        BLOCK_N=block_n,
    )
    return out
