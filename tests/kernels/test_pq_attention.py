"""Attention over a product-quantized paged KV cache: lookup-table scores equal attention over
the decoded keys, and the Triton kernel (interpreter) matches the twin."""

from __future__ import annotations

import pytest
import torch

from kernels.decode_attention_ref import paged_decode_attention_ref
from kernels.pq_attention import pq_decode_attention
from kernels.pq_attention_ref import pq_decode, pq_decode_attention_ref, pq_encode, score_tables
from kernels.triton_support import triton
from tests.kernels.cases import paged_case

needs_triton = pytest.mark.skipif(triton is None, reason="needs the triton package")


def _pq_case(lens, heads, kvh, dim, m_k, m_v, centroids, block=4, seed=0):
    q, k, v, slots, n = paged_case(lens, heads, kvh, dim, block, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    kb = torch.randn(kvh, m_k, centroids, dim // m_k, generator=g)
    vb = torch.randn(kvh, m_v, centroids, dim // m_v, generator=g)
    return q, pq_encode(k, kb), kb, pq_encode(v, vb), vb, slots, n, (k, v)


def test_encode_picks_the_nearest_centroid_and_decode_inverts_it():
    books = torch.randn(2, 4, 16, 2, generator=torch.Generator().manual_seed(0))
    codes = torch.randint(0, 16, (2, 9, 4), dtype=torch.uint8)
    x = pq_decode(codes, books)
    assert x.shape == (2, 9, 8)
    assert torch.equal(pq_encode(x, books), codes)  # a centroid is its own nearest
    noisy = x + 1e-3 * torch.randn_like(x)
    assert torch.equal(pq_encode(noisy, books), codes)


def test_table_scores_equal_scores_over_decoded_keys():
    q, kc, kb, _, _, _, _, _ = _pq_case([6], 4, 2, 16, 4, 2, 8)
    lut = score_tables(q, kb)  # [B, H, M, C]
    keys = pq_decode(kc, kb)  # [KVH, S, D]
    h = torch.arange(4)
    direct = torch.einsum("hd,hsd->hs", q[0], keys[h // 2])
    via_table = lut[0][h[:, None, None], torch.arange(4)[None, None, :], kc.long()[h // 2]].sum(-1)
    torch.testing.assert_close(via_table, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lens", [[1], [5, 17, 9]])
def test_twin_is_decode_attention_over_the_decoded_cache(lens):
    q, kc, kb, vc, vb, slots, n, _ = _pq_case(lens, 6, 2, 16, 4, 2, 8)
    want = paged_decode_attention_ref(q, pq_decode(kc, kb), pq_decode(vc, vb), slots, n, 0.25)
    torch.testing.assert_close(pq_decode_attention_ref(q, kc, kb, vc, vb, slots, n, 0.25), want)


def test_codebook_shape_errors():
    q, kc, kb, vc, vb, slots, n, _ = _pq_case([3], 2, 1, 8, 2, 2, 4)
    with pytest.raises(ValueError, match="codebooks"):
        pq_decode_attention_ref(q, kc, kb[:, :1], vc, vb, slots, n, 1.0)
    with pytest.raises(ValueError, match="split"):
        pq_encode(torch.zeros(1, 2, 7), kb)


@needs_triton
@pytest.mark.parametrize(
    ("lens", "heads", "kvh", "dim", "m_k", "m_v", "c"),
    [
        ([5, 17, 9], 6, 2, 16, 4, 2, 8),  # lengths off the tile edge, groups of 3
        ([1], 2, 2, 12, 3, 2, 16),  # one token; head dim and subspaces off powers of two
        ([33], 4, 1, 8, 8, 4, 256),  # one dim per key subspace, a full byte of centroids
    ],
)
def test_kernel_matches_the_twin(lens, heads, kvh, dim, m_k, m_v, c):
    q, kc, kb, vc, vb, slots, n, _ = _pq_case(lens, heads, kvh, dim, m_k, m_v, c)
    want = pq_decode_attention_ref(q, kc, kb, vc, vb, slots, n, dim**-0.5)
    got = pq_decode_attention(q, kc, kb, vc, vb, slots, n, dim**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@needs_triton
def test_kernel_never_reads_past_a_length():
    q, kc, kb, vc, vb, slots, n, _ = _pq_case([10, 30], 4, 2, 16, 4, 4, 8)
    slots[0, 10:] = 10**9  # garbage past the length: a read would fault or poison the sums
    want = pq_decode_attention_ref(q, kc, kb, vc, vb, slots, n, 0.25)
    torch.testing.assert_close(
        pq_decode_attention(q, kc, kb, vc, vb, slots, n, 0.25), want, rtol=1e-4, atol=1e-5
    )
