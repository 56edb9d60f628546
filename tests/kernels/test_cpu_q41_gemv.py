"""The few-rows Q4_1 GEMV (q41_gemv in kernels/cpu/sparse_ffn.cpp, QLinear's few-rows path on
AVX512_VNNI CPUs) against float64 dot products of the file's values and of x as the kernel
reads it (rounded to int8 per block where its int8 path runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.quant import Q4_1Weight, QLinear, q41_rows
from kernels import cpu_ops


@pytest.fixture(autouse=True, scope="module")
def built():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"


def _q41(n: int, k: int, seed: int = 0) -> Q4_1Weight:
    rng = np.random.default_rng(seed)
    d = (rng.random((n, k // 32)) * 0.02 + 0.005).astype(np.float16).astype(np.float32)
    m = (-7.5 * d + rng.standard_normal(d.shape) * 0.01).astype(np.float16).astype(np.float32)
    return Q4_1Weight(rng.integers(0, 16, size=(n, k)).astype(np.uint8), d, m)


@pytest.mark.parametrize("rows,n,k", [(1, 3072, 576), (4, 576, 1536), (2, 40, 96), (3, 17, 32)])
def test_matches_float64_dot_products(rows, n, k):
    w = _q41(n, k, seed=n + k)
    x = torch.randn((rows, k), generator=torch.Generator().manual_seed(rows)).bfloat16()
    got = cpu_ops.q41_gemv(x, q41_rows(w))
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    xr = cpu_ops.int8_rounded(x) if cpu_ops.sparse_ffn_int8_x() else x.float()
    want = xr.double() @ torch.from_numpy(w.dequantize()).double().T
    # fp32 sums rounded to bf16 once: within half a bf16 ulp (2^-9 relative) and a little
    torch.testing.assert_close(got.double(), want, rtol=2**-8, atol=1e-4 * k**0.5)


def test_a_row_does_not_depend_on_the_others():
    packed = q41_rows(_q41(50, 64, seed=3))
    x = torch.randn((4, 64)).bfloat16()
    whole = cpu_ops.q41_gemv(x, packed)
    for i in range(4):
        assert torch.equal(cpu_ops.q41_gemv(x[i : i + 1], packed)[0], whole[i])


def test_qlinear_takes_it_for_a_few_rows():
    w = _q41(64, 128, seed=5)
    layer = QLinear(w, torch.bfloat16, torch.device("cpu"), 4)
    if not cpu_ops.sparse_ffn_int8_x():
        assert layer.q41 is None
        pytest.skip("the few-rows Q4_1 kernel runs on AVX512_VNNI CPUs")
    assert layer.q41 is not None and layer.packed is None
    x = torch.randn((3, 128)).bfloat16()
    assert torch.equal(layer(x), cpu_ops.q41_gemv(x, layer.q41))
    many = torch.randn((9, 128)).bfloat16()  # more rows: the bf16 GEMM over the dense copy
    want = many.double() @ torch.from_numpy(w.dequantize()).double().T
    torch.testing.assert_close(layer(many).double(), want, rtol=2**-6, atol=0.01)


def test_rejects_what_it_does_not_serve():
    packed = q41_rows(_q41(16, 64))
    with pytest.raises(RuntimeError, match="1-4 rows"):
        cpu_ops.q41_gemv(torch.randn(5, 64).bfloat16(), packed)
    with pytest.raises(RuntimeError, match="bf16"):
        cpu_ops.q41_gemv(torch.randn(1, 64), packed)
    with pytest.raises(RuntimeError, match="w rows"):
        cpu_ops.q41_gemv(torch.randn(1, 64).bfloat16(), packed[:, :-1].contiguous())
