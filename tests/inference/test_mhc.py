"""Manifold-constrained hyper-connections: the projected coefficients, the conservation that
follows, and the depth property that motivates them (gain ~1 with mHC, growing with HC)."""

from __future__ import annotations

import pytest
import torch

from inference.v4.mhc import (
    HyperConnection,
    collapse_streams,
    composite_gains,
    expand_streams,
    gain_report,
    mixing_gain_curve,
)


def _streams(t=6, n=4, c=16, seed=0):
    return torch.randn(t, n, c, generator=torch.Generator().manual_seed(seed))


def test_h_res_is_doubly_stochastic_and_the_gates_are_bounded():
    hc = HyperConnection(16, 4, constrained=True, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hc.alpha.fill_(0.5)  # a large input-dependent part: still projected
        h_pre, h_post, h_res = hc.coefficients(_streams() * 10)
    assert h_res.dtype == torch.float32
    assert (h_res >= 0).all()
    assert (h_res.sum(-1) - 1).abs().max() < 1e-5
    assert (h_res.sum(-2) - 1).abs().max() < 1e-5
    assert ((h_pre > 0) & (h_pre < 1)).all()
    assert ((h_post > 0) & (h_post < 2)).all()
    assert h_res.std(dim=0).max() > 0  # per token, not one matrix for all


def test_unconstrained_coefficients_are_not_projected():
    hc = HyperConnection(16, 4, constrained=False, generator=torch.Generator().manual_seed(1))
    _, _, h_res = hc.coefficients(_streams())
    assert (h_res.sum(-1) - 1).abs().max() > 1e-2


def test_mixing_conserves_the_stream_sum():
    # columns of H_res sum to 1, so with a branch that adds nothing the streams' sum is kept
    hc = HyperConnection(16, 4, generator=torch.Generator().manual_seed(2))
    x = _streams()
    y, _ = hc(x, lambda h: torch.zeros_like(h))
    torch.testing.assert_close(y.sum(1), x.sum(1), rtol=1e-5, atol=1e-5)


def test_the_branch_reads_a_gated_mix_and_writes_to_every_stream():
    hc = HyperConnection(8, 3, generator=torch.Generator().manual_seed(3))
    x = _streams(t=2, n=3, c=8)
    seen = []

    def branch(h):
        seen.append(h)
        return torch.ones_like(h)

    y, _ = hc(x, branch)
    h_pre, h_post, h_res = hc.coefficients(x)
    torch.testing.assert_close(seen[0], torch.einsum("tn,tnc->tc", h_pre, x))
    torch.testing.assert_close(y, torch.einsum("tij,tjc->tic", h_res, x) + h_post[:, :, None])


def test_streams_expand_and_collapse():
    h = torch.randn(3, 5)
    x = expand_streams(h, 4)
    assert x.shape == (3, 4, 5)
    torch.testing.assert_close(collapse_streams(x), h)


def test_shape_errors():
    hc = HyperConnection(16, 4)
    with pytest.raises(ValueError, match="streams"):
        hc.coefficients(torch.zeros(2, 3, 16))


def test_composite_gain_of_known_matrices():
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])[None]
    assert composite_gains([swap, swap]) == [1.0, 1.0]
    double = 2 * torch.eye(2)[None]
    assert composite_gains([double, double, double]) == [2.0, 4.0, 8.0]


def test_through_64_layers_mhc_keeps_gain_one_and_hc_grows_without_bound():
    mhc = mixing_gain_curve(64, constrained=True, seed=0)
    hc = mixing_gain_curve(64, constrained=False, seed=0)
    assert abs(mhc[63] - 1.0) < 1e-3
    assert max(abs(g - 1) for g in mhc) < 1e-3  # at every depth, not only the last
    assert hc[63] > 20
    assert hc[63] > 4 * hc[15] > 4  # geometric growth with depth


def test_gain_report_names_the_depth():
    report = gain_report(8, seed=0)
    assert set(report) == {"mhc_gain_8", "hc_gain_8"}
    assert report["mhc_gain_8"] == mixing_gain_curve(8, constrained=True, seed=0)[-1]
