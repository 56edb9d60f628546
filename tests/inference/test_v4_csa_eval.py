"""Sparse attention measured on a real model (inference/v4/csa_eval.py): the counting and
comparison helpers, and (slow) the swap of the real model's prefill attention."""

from __future__ import annotations

import pytest
import torch

from inference.v4.csa_eval import attended_per_query, compare, prefill_logits, sparse_prefill
from kernels.block_sparse_attention_ref import attended_tokens, block_summaries, select_blocks


def test_attended_count_matches_the_indexer():
    g = torch.Generator().manual_seed(0)
    n, tq = 300, 40
    q = torch.randn(1, 2, tq, 8, generator=g)
    k = torch.randn(1, 1, n, 8, generator=g)
    lens = torch.tensor([n])
    idx = select_blocks(q, block_summaries(k, lens, 16), lens, 5, 16, 20)
    want = attended_tokens(idx, lens, 16, 20)[0, 0]
    assert torch.equal(attended_per_query(torch.arange(n - tq, n), 16, 5, 20), want)


def test_compare_identical_and_different_logits():
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    same = compare(x, x)
    assert same["top1"] == 1.0 and abs(same["kl"]) < 1e-6
    diff = compare(x, -x)
    assert diff["top1"] == 0.0 and diff["kl"] > 0.1


@pytest.mark.slow
def test_sparse_prefill_on_the_real_model(model):
    lm = model.model
    ids = model.encode("The quick brown fox jumps over the lazy dog. " * 30)[:320]
    dense, _ = prefill_logits(lm, ids, 32)
    with sparse_prefill(lm, block_size=16, top_k=10**6, window=16):  # every block: dense
        covering, _ = prefill_logits(lm, ids, 32)
    with sparse_prefill(lm, block_size=16, top_k=1, window=16):
        narrow, _ = prefill_logits(lm, ids, 32)
    assert compare(dense, covering)["top1"] == 1.0
    assert compare(dense, covering)["kl"] < 1e-3
    assert compare(dense, narrow)["kl"] > compare(dense, covering)["kl"]
    again, _ = prefill_logits(lm, ids, 32)  # the model's own attention is back
    torch.testing.assert_close(again, dense)
