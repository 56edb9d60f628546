"""The dispatch helper: Triton on CUDA/ROCm, the twin everywhere else (the interpreter is never
chosen, even when it is switched on, as it is in this test run)."""

from __future__ import annotations

import os

import pytest
import torch

from kernels import dispatch
from kernels.block_sparse_attention_ref import attended_tokens
from kernels.triton_support import triton


def test_the_cpu_gets_the_twin_even_under_the_interpreter():
    assert os.environ.get("TRITON_INTERPRET") == "1"
    assert dispatch.backend(torch.device("cpu")) == "torch"
    assert dispatch.backend(torch.device("meta")) == "torch"


@pytest.mark.skipif(triton is None, reason="needs the triton package")
def test_cuda_and_rocm_devices_get_triton():
    assert dispatch.backend(torch.device("cuda", 0)) == "triton"  # ROCm builds name their devices "cuda" too


def test_cpu_calls_run_the_twins():
    g = torch.Generator().manual_seed(0)
    m = dispatch.sinkhorn_knopp(torch.randn(3, 4, 4, generator=g) * 0.3)
    assert (m.sum(-1) - 1).abs().max() < 1e-5
    x, r, w = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g), torch.ones(8)
    y, h = dispatch.rmsnorm_residual(x, r, w)
    torch.testing.assert_close(h, x + r)
    q = torch.randn(1, 2, 1, 8, generator=g)
    k = torch.randn(1, 1, 64, 8, generator=g)
    out, idx = dispatch.sparse_attention(q, k, k, torch.tensor([64]), block_size=8, top_k=2, window=8)
    assert out.shape == q.shape
    assert int(attended_tokens(idx, torch.tensor([64]), 8, 8).max()) == 2 * 8 + 8
