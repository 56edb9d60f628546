"""bench/kv_codec_study.py's byte allocation: every dim in exactly one subspace, the codec's
byte count kept, the widest subspaces on the least varied dims."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import kv_codec_study as study  # noqa: E402


def _check_cover(groups: list[list[int]], dims: int, codes: int) -> None:
    assert len(groups) == codes
    assert sorted(d for g in groups for d in g) == list(range(dims))
    assert all(len(g) in study.WIDTHS for g in groups)


def test_equal_variances_keep_two_dims_per_byte() -> None:
    groups = study.allocation(torch.ones(64), 32)
    _check_cover(groups, 64, 32)
    assert {len(g) for g in groups} == {2}


def test_skewed_variances_give_the_varied_dims_their_own_byte() -> None:
    var = torch.tensor([100.0] * 8 + [1.0] * 24 + [0.01] * 32)
    groups = study.allocation(var, 32)
    _check_cover(groups, 64, 32)
    width = {d: len(g) for g in groups for d in g}
    assert all(width[d] == 1 for d in range(8))  # the most varied: 8 bits each
    assert all(width[d] == 4 for d in range(32, 64))  # the least: 2 bits each
    # and the estimate is below equal bits' (what the allocation is for)
    est = sum(len(g) * var[g].mean().item() * 2 ** (-16 / len(g)) for g in groups)
    equal = sum(2 * var[[2 * i, 2 * i + 1]].mean().item() * 2**-8 for i in range(32))
    assert est < equal


def test_the_pair_metric_is_shared_by_rope_pairs() -> None:
    qsq = torch.rand(2, 3, 64) + 0.1
    w = study.metric(qsq, pair=True)
    assert torch.allclose(w[..., :32], w[..., 32:])
    assert torch.allclose(w.mean(-1), torch.ones(2, 3))
