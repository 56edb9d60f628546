"""Triton kernel: top-k block-sparse attention (selected key blocks + a local window).

One program per (sequence, key/value head, query) scores the group of query heads that share
the key head, first over the local window (so the running max is finite), then over each
block the indexer picked, with an online softmax in fp32: it reads k*B + window keys per
query however long the context is. The contract, the indexer (`block_summaries`,
`select_blocks`) and the twin are in `kernels.block_sparse_attention_ref`.
"""

from __future__ import annotations

import torch

from kernels.block_sparse_attention_ref import check_attention_shapes
from kernels.triton_support import available, next_pow2, require_triton, tl, triton

__all__ = ["available", "block_sparse_attention"]

if triton is not None:

    @triton.jit
    def _attend_tile(
        q, k_base, v_base, offs_n, mask_n, offs_d, mask_d, stride_ks, stride_vs, scale, m_i, l_i, acc
    ):
        """One online-softmax step over a tile of keys."""
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_ks + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vs + offs_d[None, :], mask=kv_mask, other=0.0)
        s = tl.sum(q[:, None, :] * k.to(tl.float32)[None, :, :], axis=2) * scale  # [G_PAD, BS]
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing seen yet: no nan
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
        return m_new, l_i, acc

    @triton.jit
    def _block_sparse_kernel(
        q_ptr,
        k_ptr,
        v_ptr,
        lens_ptr,
        idx_ptr,
        out_ptr,
        scale,
        num_queries,
        window,
        stride_qb,
        stride_qh,
        stride_qt,
        stride_kb,
        stride_kh,
        stride_ks,
        stride_vb,
        stride_vh,
        stride_vs,
        stride_ib,
        stride_ih,
        stride_it,
        stride_ob,
        stride_oh,
        stride_ot,
        G: tl.constexpr,
        G_PAD: tl.constexpr,
        D: tl.constexpr,
        D_PAD: tl.constexpr,
        BS: tl.constexpr,
        TOP_K: tl.constexpr,
    ):
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        i = tl.program_id(2)
        offs_g = tl.arange(0, G_PAD)
        offs_d = tl.arange(0, D_PAD)
        mask_g = offs_g < G
        mask_d = offs_d < D
        heads = kvh * G + offs_g
        q = tl.load(
            q_ptr + b * stride_qb + heads[:, None] * stride_qh + i * stride_qt + offs_d[None, :],
            mask=mask_g[:, None] & mask_d[None, :],
            other=0.0,
        ).to(tl.float32)
        pos = tl.load(lens_ptr + b) - num_queries + i
        k_base = k_ptr + b * stride_kb + kvh * stride_kh
        v_base = v_ptr + b * stride_vb + kvh * stride_vh
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D_PAD], tl.float32)
        ls = tl.maximum(pos + 1 - window, 0) // BS * BS
        for start in range(ls, pos + 1, BS):  # the local window, up to the query itself
            offs_n = start + tl.arange(0, BS)
            m_i, l_i, acc = _attend_tile(
                q,
                k_base,
                v_base,
                offs_n,
                offs_n <= pos,
                offs_d,
                mask_d,
                stride_ks,
                stride_vs,
                scale,
                m_i,
                l_i,
                acc,
            )
        for t in range(TOP_K):  # the blocks the indexer picked (all complete, before the window)
            j = tl.load(idx_ptr + b * stride_ib + kvh * stride_ih + i * stride_it + t)
            offs_n = tl.maximum(j, 0) * BS + tl.arange(0, BS)
            picked = (tl.zeros([BS], tl.int32) + j) >= 0  # -1: a slot the indexer left empty
            m_i, l_i, acc = _attend_tile(
                q, k_base, v_base, offs_n, picked, offs_d, mask_d, stride_ks, stride_vs, scale, m_i, l_i, acc
            )
        out = tl.where(l_i[:, None] > 0, acc / tl.where(l_i > 0, l_i, 1.0)[:, None], 0.0)
        tl.store(
            out_ptr + b * stride_ob + heads[:, None] * stride_oh + i * stride_ot + offs_d[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=mask_g[:, None] & mask_d[None, :],
        )


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
    """Same contract as `kernels.block_sparse_attention_ref.block_sparse_attention_ref`."""
    require_triton()
    check_attention_shapes(q, k, v, seq_lens)
    if block_size & (block_size - 1):
        raise ValueError("the block size must be a power of two")
    b, h, tq, d = q.shape
    kvh = k.shape[1]
    g = h // kvh
    if k.stride(-1) != 1 or v.stride(-1) != 1 or q.stride(-1) != 1:
        raise ValueError("need dense rows (last-dim stride 1)")
    block_idx = block_idx.to(torch.int32).contiguous()
    seq_lens = seq_lens.to(torch.int32).contiguous()
    out = torch.empty_like(q)
    if b and tq:
        _block_sparse_kernel[(b, kvh, tq)](
            q,
            k,
            v,
            seq_lens,
            block_idx,
            out,
            scale,
            tq,
            window,
            *q.stride()[:3],
            *k.stride()[:3],
            *v.stride()[:3],
            *block_idx.stride()[:3],
            *out.stride()[:3],
            G=g,
            G_PAD=next_pow2(g),
            D=d,
            D_PAD=next_pow2(d),
            BS=block_size,
            TOP_K=block_idx.shape[-1],
        )
    return out
