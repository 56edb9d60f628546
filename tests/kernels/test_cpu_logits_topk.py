"""The C++ widened-logits + top-k step against torch's conversion and topk."""

from __future__ import annotations

import pytest
import torch

from kernels import cpu_ops


@pytest.fixture(scope="module", autouse=True)
def built():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"


def id_sets(ids: torch.Tensor) -> list[set[int]]:
    return [set(row.tolist()) for row in ids]


@pytest.mark.parametrize(("rows", "vocab", "k"), [(1, 49152, 16), (32, 49152, 16), (3, 1000, 5), (2, 70, 64)])
def test_matches_torch(rows, vocab, k):
    g = torch.Generator().manual_seed(rows * vocab)
    raw = (torch.randn(rows, vocab, generator=g) * 4).bfloat16()
    # bf16 values tie often: the expected set is the k best, lower ids first on a tie
    want = torch.sort(raw.float(), dim=-1, descending=True, stable=True).indices[:, :k]
    logits, ids = cpu_ops.logits_topk(raw, k)
    assert logits.dtype == torch.float32 and torch.equal(logits, raw.float())
    assert ids.shape == (rows, k) and ids.dtype == torch.int64
    assert id_sets(ids) == id_sets(want)


def test_ascending_rows_replace_the_whole_set():
    """Every chunk beats the last: the worst case for the chunk skipping."""
    raw = torch.arange(5000, dtype=torch.float32).div(16).bfloat16()[None]
    _, ids = cpu_ops.logits_topk(raw, 16)
    want = raw.float().topk(16).values.min()
    assert (raw[0, ids[0]].float() >= want).all() and len(set(ids[0].tolist())) == 16


def test_ties_keep_the_lower_ids():
    raw = torch.zeros(2, 300, dtype=torch.bfloat16)
    raw[0, [7, 150, 299]] = 3.0  # the 2 best of three equal values: ids 7 and 150
    raw[1, 100:] = 1.0
    _, ids = cpu_ops.logits_topk(raw, 2)
    assert id_sets(ids) == [{7, 150}, {100, 101}]


def test_nan_is_never_chosen_and_all_nan_rows_give_valid_ids():
    raw = torch.full((2, 100), float("nan"), dtype=torch.bfloat16)
    raw[0, 40] = -5.0
    raw[0, 60] = -7.0
    logits, ids = cpu_ops.logits_topk(raw, 2)
    assert set(ids[0].tolist()) == {40, 60}
    assert ((ids[1] >= 0) & (ids[1] < 100)).all()
    assert torch.isnan(logits[1]).all()


def test_rejects_bad_arguments():
    raw = torch.zeros(2, 10, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="k must be"):
        cpu_ops.logits_topk(raw, 11)
    with pytest.raises(RuntimeError, match="dense bfloat16"):
        cpu_ops.logits_topk(raw.float(), 2)
