"""The C++ output projection for a few rows against float64 dot products of the same bf16
values."""

from __future__ import annotations

import pytest
import torch

from kernels import cpu_ops


@pytest.fixture(scope="module", autouse=True)
def usable():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"
    if not cpu_ops.head_gemv_usable(torch.bfloat16, 576):
        pytest.skip("this CPU has no AVX-512 BF16: the engine uses the bf16 GEMM")


def case(rows: int, n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g).bfloat16()
    w = (torch.randn(n, k, generator=g) * 0.05).bfloat16()
    return x, w


@pytest.mark.parametrize(
    ("rows", "n", "k"), [(1, 49152, 576), (4, 49152, 576), (3, 37, 64), (2, 16, 32), (1, 5, 96)]
)
def test_matches_float64_dot_products(rows, n, k):
    x, w = case(rows, n, k)
    got = cpu_ops.head_gemv(x, w)
    assert got.dtype == torch.float32 and got.shape == (rows, n)
    want = x.double() @ w.double().t()
    # fp32 accumulation of exact bf16 products: no bf16 rounding of the output
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_a_row_does_not_depend_on_the_others():
    x, w = case(4, 1000, 576, seed=1)
    whole = cpu_ops.head_gemv(x, w)
    for i in range(4):
        assert torch.equal(cpu_ops.head_gemv(x[i : i + 1], w)[0], whole[i])


def test_rejects_what_it_does_not_serve():
    x, w = case(5, 64, 64)
    with pytest.raises(RuntimeError, match="1 to 4 rows"):
        cpu_ops.head_gemv(x, w)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        cpu_ops.head_gemv(x[:1, :48].contiguous(), w[:, :48].contiguous())
    with pytest.raises(RuntimeError, match="bfloat16"):
        cpu_ops.head_gemv(x[:1].float(), w.float())
    with pytest.raises(RuntimeError, match="dense"):
        cpu_ops.head_gemv(x[:1], w.t().contiguous().t())
