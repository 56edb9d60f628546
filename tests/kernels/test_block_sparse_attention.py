"""Top-k block-sparse attention: the indexer's rules, dense equivalence when k covers every
block, and the Triton kernel (interpreter) against the twin on ragged, partial-block cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels.block_sparse_attention import block_sparse_attention
from kernels.block_sparse_attention_ref import (
    attended_tokens,
    block_sparse_attention_ref,
    block_summaries,
    local_start,
    query_positions,
    select_blocks,
)
from kernels.triton_support import triton

needs_triton = pytest.mark.skipif(triton is None, reason="needs the triton package")


def _case(b, h, kvh, s, d, tq, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, tq, d, generator=g)
    k = torch.randn(b, kvh, s, d, generator=g)
    v = torch.randn(b, kvh, s, d, generator=g)
    return q, k, v


def _dense_causal(q, k, v, lens, scale, band=None):
    """Per-row SDPA over the row's own keys (GQA by repetition); `band` keeps only keys with
    index >= band(pos)."""
    b, h, tq, d = q.shape
    g = h // k.shape[1]
    out = torch.zeros_like(q)
    for i in range(b):
        n = int(lens[i])
        pos = torch.arange(tq) + n - tq
        keys = torch.arange(n)[None, :]
        mask = keys <= pos[:, None]
        if band is not None:
            mask &= keys >= band(pos)[:, None]
        kk = k[i : i + 1, :, :n].repeat_interleave(g, 1)
        vv = v[i : i + 1, :, :n].repeat_interleave(g, 1)
        o = F.scaled_dot_product_attention(q[i : i + 1], kk, vv, attn_mask=mask, scale=scale)
        out[i] = torch.where((pos >= 0)[None, :, None], o[0], 0.0)
    return out


def test_indexer_offers_only_complete_blocks_before_the_window():
    q, k, _ = _case(1, 2, 1, 40, 8, 1)
    lens = torch.tensor([38])  # query at 37; window 6 starts at 32 (rounded to the block)
    idx = select_blocks(q, block_summaries(k, lens, 4), lens, top_k=20, block_size=4, window=6)
    assert int(local_start(torch.tensor(37), 6, 4)) == 32
    chosen = sorted(j for j in idx.flatten().tolist() if j >= 0)
    assert chosen == list(range(8))  # blocks 0..7 cover 0..31; the rest are window or future
    assert (idx >= 0).sum() == 8
    assert int(attended_tokens(idx, lens, 4, 6)) == 38


def test_indexer_picks_the_block_the_query_points_at():
    q, k, _ = _case(1, 2, 1, 64, 8, 1, seed=3)
    k[0, 0, 20:24] = q[0, 0, 0] * 5  # block 5's keys align with the query
    lens = torch.tensor([64])
    summ = block_summaries(k, lens, 4)
    idx = select_blocks(q, summ, lens, top_k=1, block_size=4, window=8, sink_blocks=0)
    assert idx.flatten().tolist() == [5]
    # the default keeps the first block (the attention sink) among the k
    assert select_blocks(q, summ, lens, top_k=1, block_size=4, window=8).flatten().tolist() == [0]


def test_prefill_and_decode_pick_the_same_blocks():
    q, k, _ = _case(2, 4, 2, 50, 8, 6, seed=1)
    lens = torch.tensor([50, 33])
    summ = block_summaries(k, lens, 4)
    prefill = select_blocks(q, summ, lens, 3, 4, 5)
    decode = select_blocks(q[:, :, -1:], summ, lens, 3, 4, 5)
    assert torch.equal(prefill[:, :, -1:], decode)


def test_summaries_ignore_tokens_past_the_length():
    _, k, _ = _case(1, 1, 1, 10, 4, 1)
    summ = block_summaries(k, torch.tensor([6]), 4)
    torch.testing.assert_close(summ[0, 0, 1], k[0, 0, 4:6].mean(0))
    assert (summ[0, 0, 2] == 0).all()


@pytest.mark.parametrize(("lens", "tq"), [([37, 20, 3], 5), ([64], 1), ([9, 16], 16)])
def test_twin_equals_dense_causal_attention_when_k_covers_all_blocks(lens, tq):
    q, k, v = _case(len(lens), 6, 2, max(lens), 16, tq)
    lens_t = torch.tensor(lens)
    idx = select_blocks(q, block_summaries(k, lens_t, 4), lens_t, top_k=100, block_size=4, window=3)
    got = block_sparse_attention_ref(q, k, v, lens_t, idx, 4, 3, 0.25)
    torch.testing.assert_close(got, _dense_causal(q, k, v, lens_t, 0.25), rtol=1e-5, atol=1e-5)


def test_twin_with_no_blocks_is_local_window_attention():
    q, k, v = _case(2, 4, 2, 30, 8, 4)
    lens = torch.tensor([30, 11])
    idx = torch.full((2, 2, 4, 2), -1, dtype=torch.int32)
    got = block_sparse_attention_ref(q, k, v, lens, idx, 4, 5, 0.3)
    want = _dense_causal(q, k, v, lens, 0.3, band=lambda pos: local_start(pos, 5, 4))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_attended_tokens_stay_bounded_as_context_grows():
    counts = []
    for n in (256, 1024):
        q, k, _ = _case(1, 2, 1, n, 8, 1)
        lens = torch.tensor([n])
        idx = select_blocks(q, block_summaries(k, lens, 16), lens, 4, 16, 32)
        counts.append(int(attended_tokens(idx, lens, 16, 32).max()))
    assert counts[0] == counts[1] <= 4 * 16 + 32 + 15


@needs_triton
@pytest.mark.parametrize(
    ("lens", "tq", "heads", "kvh", "dim", "bs", "top_k", "window"),
    [
        ([37, 20, 3], 3, 4, 2, 16, 4, 2, 6),  # ragged, a partial last block, a padding query
        ([29], 2, 3, 1, 12, 8, 1, 1),  # head dim off a power of two, window of one token
        ([21, 13], 2, 2, 2, 8, 4, 8, 4),  # k covers every block: dense
    ],
)
def test_kernel_matches_the_twin(lens, tq, heads, kvh, dim, bs, top_k, window):
    q, k, v = _case(len(lens), heads, kvh, max(lens), dim, tq)
    lens_t = torch.tensor(lens)
    idx = select_blocks(q, block_summaries(k, lens_t, bs), lens_t, top_k, bs, window)
    want = block_sparse_attention_ref(q, k, v, lens_t, idx, bs, window, dim**-0.5)
    got = block_sparse_attention(q, k, v, lens_t, idx, bs, window, dim**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if top_k * bs >= max(lens):
        torch.testing.assert_close(got, _dense_causal(q, k, v, lens_t, dim**-0.5), rtol=1e-4, atol=1e-5)


def test_query_positions_mark_padding():
    assert query_positions(torch.tensor([2]), 4).tolist() == [[-2, -1, 0, 1]]


def test_twin_chunks_long_prefills_without_changing_the_result(monkeypatch):
    from kernels import block_sparse_attention_ref as ref

    q, k, v = _case(2, 4, 2, 40, 8, 12, seed=6)
    lens = torch.tensor([40, 25])
    idx = select_blocks(q, block_summaries(k, lens, 4), lens, 2, 4, 4)
    whole = block_sparse_attention_ref(q, k, v, lens, idx, 4, 4, 0.3)
    monkeypatch.setattr(ref, "GATHER_BUDGET", 1)  # one query per chunk
    torch.testing.assert_close(block_sparse_attention_ref(q, k, v, lens, idx, 4, 4, 0.3), whole)


@pytest.mark.parametrize("top_k", [0, 2, 100])
def test_twin_masked_and_gathered_paths_agree(top_k, monkeypatch):
    from kernels import block_sparse_attention_ref as ref

    q, k, v = _case(2, 4, 2, 45, 8, 9, seed=7)
    lens = torch.tensor([45, 6])  # row 1 has padding queries
    idx = select_blocks(q, block_summaries(k, lens, 4), lens, max(top_k, 1), 4, 5)
    if top_k == 0:
        idx.fill_(-1)
    monkeypatch.setattr(ref, "MASKED_MIN_QUERIES", 10**6)
    gathered = block_sparse_attention_ref(q, k, v, lens, idx, 4, 5, 0.3)
    monkeypatch.setattr(ref, "MASKED_MIN_QUERIES", 0)
    torch.testing.assert_close(
        block_sparse_attention_ref(q, k, v, lens, idx, 4, 5, 0.3), gathered, rtol=1e-5, atol=1e-6
    )


def test_a_k_beyond_the_block_count_means_every_block():
    q, k, _ = _case(1, 2, 1, 40, 8, 3)
    lens = torch.tensor([40])
    idx = select_blocks(q, block_summaries(k, lens, 4), lens, top_k=10**9, block_size=4, window=4)
    assert idx.shape == (1, 1, 3, 10)  # no 10**9-wide tensor


def test_sink_blocks_are_always_picked_when_candidates():
    q, k, _ = _case(1, 2, 1, 64, 8, 4, seed=8)
    k[0, 0, :4] = -q[0, 0, 0] * 5  # block 0 scores worst on its own
    lens = torch.tensor([64])
    summ = block_summaries(k, lens, 4)
    plain = select_blocks(q, summ, lens, top_k=2, block_size=4, window=4, sink_blocks=0)
    sunk = select_blocks(q, summ, lens, top_k=2, block_size=4, window=4, sink_blocks=1)
    assert not (plain == 0).any(dim=-1).all()  # on its own score block 0 is not always picked
    assert (sunk == 0).any(dim=-1).all()
    few = select_blocks(q, summ, torch.tensor([6]), top_k=2, block_size=4, window=4, sink_blocks=1)
    assert (few < 0).all()  # no complete block before the window: nothing to sink
