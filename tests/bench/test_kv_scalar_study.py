"""bench/kv_scalar_study.py's codec parts: the rotation is orthogonal, a head vector comes
back within half a level step of its max, fitted levels are sorted and inside [-1, 1]."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import kv_scalar_study as study  # noqa: E402


def test_the_rotation_is_orthogonal() -> None:
    h = study.hadamard(64)
    torch.testing.assert_close(h @ h.T, torch.eye(64), atol=1e-6, rtol=0)
    assert not torch.equal(h, study.hadamard(64, seed=1))


def test_a_vector_comes_back_within_half_a_step_of_its_max() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((50, 3, 64), generator=g) * torch.linspace(0.1, 10, 64)  # outlier dims
    codec = study.Codec(study.hadamard(64), None, None)
    back = codec(0, x)
    rotated_max = (x @ study.hadamard(64)).abs().amax(-1, keepdim=True)
    # a coordinate's error is at most half a step (2 / 16 of the max) after rotation, which
    # keeps vector norms: |error| <= sqrt(64) * max / 16
    assert bool(((back - x).norm(dim=-1, keepdim=True) <= 8 * rotated_max / 16 * 1.01).all())
    mean = torch.full((1, 3, 64), 5.0)
    shifted = study.Codec(study.hadamard(64), mean, None)(0, x + 5.0)
    torch.testing.assert_close(shifted - 5.0, back, atol=1e-4, rtol=0)  # the mean comes back exactly


def test_fitted_levels_are_sorted_and_inside_the_range() -> None:
    u = torch.rand(10_000, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lv = study.fit_levels(u)
    assert lv.shape == (study.LEVELS,) and bool((lv[1:] > lv[:-1]).all())
    assert float(lv.min()) >= -1 and float(lv.max()) <= 1
    # uniform data: k-means levels near the evenly spaced ones
    even = (torch.arange(study.LEVELS) + 0.5) * 2 / study.LEVELS - 1
    torch.testing.assert_close(lv, even, atol=0.03, rtol=0)
