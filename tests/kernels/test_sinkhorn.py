"""Batched Sinkhorn-Knopp: the Triton kernel (interpreter) against its twin, and the
doubly-stochastic property itself."""

from __future__ import annotations

import pytest
import torch

from kernels.sinkhorn import sinkhorn_knopp
from kernels.sinkhorn_ref import sinkhorn_knopp_ref
from kernels.triton_support import triton

needs_triton = pytest.mark.skipif(triton is None, reason="needs the triton package")


def _logits(shape, scale=0.5, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_rows_and_columns_sum_to_one(n):
    m = sinkhorn_knopp_ref(_logits((500, n, n)), iters=20)
    assert m.dtype == torch.float32
    assert (m >= 0).all()
    assert (m.sum(-1) - 1).abs().max() < 1e-5
    assert (m.sum(-2) - 1).abs().max() < 1e-5


def test_too_few_rounds_leave_the_rows_off():
    # the property comes from the iterations, not from the last column division alone
    m = sinkhorn_knopp_ref(_logits((500, 4, 4), scale=2.0), iters=1)
    assert (m.sum(-1) - 1).abs().max() > 1e-2


def test_a_doubly_stochastic_input_is_a_fixed_point():
    perm = torch.eye(4)[[2, 0, 3, 1]] * 0.7 + 0.3 / 4
    out = sinkhorn_knopp_ref(perm.log()[None])
    torch.testing.assert_close(out[0], perm, rtol=1e-5, atol=1e-6)


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        sinkhorn_knopp_ref(torch.zeros(2, 3, 4))


@needs_triton
@pytest.mark.parametrize(("shape", "block_b"), [((37, 4, 4), 16), ((2, 5, 3, 3), 4), ((1, 8, 8), 16)])
def test_kernel_matches_the_twin(shape, block_b):
    x = _logits(shape, scale=1.5)
    got = sinkhorn_knopp(x, iters=20, block_b=block_b)
    torch.testing.assert_close(got, sinkhorn_knopp_ref(x, 20), rtol=1e-5, atol=1e-6)


@needs_triton
def test_kernel_handles_large_logits_and_an_empty_batch():
    x = _logits((5, 4, 4), scale=30.0)  # spreads of ~100: some columns underflow entirely
    got = sinkhorn_knopp(x)
    assert torch.isfinite(got).all()  # floored sums: zeros, never NaN
    torch.testing.assert_close(got, sinkhorn_knopp_ref(x), rtol=1e-4, atol=1e-6)
    assert sinkhorn_knopp(torch.zeros(0, 4, 4)).shape == (0, 4, 4)
