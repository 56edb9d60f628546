"""Fused residual add + RMSNorm: the Triton kernel (interpreter) against its twin."""

from __future__ import annotations

import pytest
import torch

from kernels.rmsnorm_residual import rmsnorm_residual
from kernels.rmsnorm_residual_ref import rmsnorm_residual_ref
from kernels.triton_support import triton

needs_triton = pytest.mark.skipif(triton is None, reason="needs the triton package")


def _case(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(*shape, generator=g),
        torch.randn(*shape, generator=g),
        torch.randn(shape[-1], generator=g),
    )


def test_twin_is_the_unfused_sequence():
    x, r, w = _case((4, 24))
    y, h = rmsnorm_residual_ref(x, r, w, eps=1e-5)
    torch.testing.assert_close(h, x + r)
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x + r, (24,), w, eps=1e-5))


def test_shape_errors():
    x, r, w = _case((4, 24))
    with pytest.raises(ValueError, match="weight"):
        rmsnorm_residual_ref(x, r, w[:5])
    with pytest.raises(ValueError, match="residual"):
        rmsnorm_residual_ref(x, r[:2], w)


@needs_triton
@pytest.mark.parametrize("shape", [(1, 64), (3, 5, 37), (7, 100)])  # widths on and off powers of two
@pytest.mark.parametrize("with_residual", [True, False])
def test_kernel_matches_the_twin(shape, with_residual):
    x, r, w = _case(shape)
    r_in = r if with_residual else None
    y, h = rmsnorm_residual(x, r_in, w, eps=1e-6)
    y_ref, h_ref = rmsnorm_residual_ref(x, r_in, w, eps=1e-6)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
