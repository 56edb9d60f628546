"""Triton kernel: decode attention straight from a product-quantized paged KV cache.

The wrapper builds the per-step score tables (`lut[b, h, m, c] = q_m . centroid`, M x C per
query head, one small einsum). One program per (sequence, key/value head) then walks that
sequence's slots: for each tile it reads M code bytes per key and sums M table entries per
query head (no key is ever decoded), decodes values by gathering centroids from the small
value codebooks (cache-resident), and keeps an online softmax in fp32. Per key it reads
M + Mv bytes instead of 2 x D x 2 bytes of an fp16 cache. The contract and the twin are in
`kernels.pq_attention_ref`.
"""

from __future__ import annotations

import torch

from kernels.pq_attention_ref import check_books, score_tables
from kernels.triton_support import available, next_pow2, require_triton, tl, triton

__all__ = ["available", "pq_decode_attention"]

if triton is not None:

    @triton.jit
    def _pq_decode_kernel(
        lut_ptr,
        kc_ptr,
        vc_ptr,
        vb_ptr,
        slots_ptr,
        lens_ptr,
        out_ptr,
        scale,
        stride_lb,
        stride_lh,
        stride_lm,
        stride_kch,
        stride_kcs,
        stride_vch,
        stride_vcs,
        stride_vbh,
        stride_vbm,
        stride_vbc,
        stride_sb,
        stride_ob,
        stride_oh,
        G: tl.constexpr,
        G_PAD: tl.constexpr,
        M: tl.constexpr,
        M_PAD: tl.constexpr,
        D: tl.constexpr,
        D_PAD: tl.constexpr,
        DSUB_V: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        offs_g = tl.arange(0, G_PAD)
        offs_m = tl.arange(0, M_PAD)
        offs_d = tl.arange(0, D_PAD)
        mask_g = offs_g < G
        mask_m = offs_m < M
        mask_d = offs_d < D
        heads = kvh * G + offs_g
        sub_v = offs_d // DSUB_V  # the value subspace of each output dim
        in_sub = offs_d % DSUB_V
        lut_base = (
            lut_ptr + b * stride_lb + heads[:, None, None] * stride_lh + offs_m[None, None, :] * stride_lm
        )
        n = tl.load(lens_ptr + b)
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D_PAD], tl.float32)
        for start in range(0, n, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            mask_n = offs_n < n
            slot = tl.load(slots_ptr + b * stride_sb + offs_n, mask=mask_n, other=0).to(tl.int64)
            codes = tl.load(
                kc_ptr + kvh * stride_kch + slot[:, None] * stride_kcs + offs_m[None, :],
                mask=mask_n[:, None] & mask_m[None, :],
                other=0,
            ).to(tl.int32)  # [BLOCK_N, M_PAD]
            table = tl.load(
                lut_base + codes[None, :, :],
                mask=mask_g[:, None, None] & mask_n[None, :, None] & mask_m[None, None, :],
                other=0.0,
            )  # [G_PAD, BLOCK_N, M_PAD]
            s = tl.sum(table, axis=2) * scale
            s = tl.where(mask_n[None, :], s, float("-inf"))
            vmask = mask_n[:, None] & mask_d[None, :]
            vcode = tl.load(
                vc_ptr + kvh * stride_vch + slot[:, None] * stride_vcs + sub_v[None, :], mask=vmask, other=0
            ).to(tl.int32)  # [BLOCK_N, D_PAD]: the code of each dim's subspace
            v = tl.load(
                vb_ptr
                + kvh * stride_vbh
                + sub_v[None, :] * stride_vbm
                + vcode * stride_vbc
                + in_sub[None, :],
                mask=vmask,
                other=0.0,
            ).to(tl.float32)
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
            mask=mask_g[:, None] & mask_d[None, :],
        )


def pq_decode_attention(
    q: torch.Tensor,
    k_codes: torch.Tensor,
    k_books: torch.Tensor,
    v_codes: torch.Tensor,
    v_books: torch.Tensor,
    slots: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    block_n: int = 16,
) -> torch.Tensor:
    """Same contract as `kernels.pq_attention_ref.pq_decode_attention_ref`."""
    require_triton()
    check_books(k_codes, k_books)
    check_books(v_codes, v_books)
    b, h, d = q.shape
    kvh, _, m = k_codes.shape
    mv, dsub_v = v_books.shape[1], v_books.shape[3]
    if h % kvh or mv * dsub_v != d or k_codes.stride(-1) != 1 or v_codes.stride(-1) != 1:
        raise ValueError("need H divisible by the kv heads, value codebooks that split D, dense code rows")
    g = h // kvh
    lut = score_tables(q, k_books).contiguous()  # [B, H, M, C]
    v_books = v_books.contiguous()
    slots = slots.contiguous()
    seq_lens = seq_lens.to(torch.int32).contiguous()
    out = torch.empty_like(q)
    if b:
        _pq_decode_kernel[(b, kvh)](
            lut,
            k_codes,
            v_codes,
            v_books,
            slots,
            seq_lens,
            out,
            scale,
            *lut.stride()[:3],
            k_codes.stride(0),
            k_codes.stride(1),
            v_codes.stride(0),
            v_codes.stride(1),
            *v_books.stride()[:3],
            slots.stride(0),
            out.stride(0),
            out.stride(1),
            G=g,
            G_PAD=next_pow2(g),
            M=m,
            M_PAD=next_pow2(m),
            D=d,
            D_PAD=next_pow2(d),
            DSUB_V=dsub_v,
            BLOCK_N=block_n,
        )
    return out
