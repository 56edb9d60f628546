"""The output projection from the file's Q8_0 blocks (kernels/cpu/q8_gemv.cpp) and the
blocks' recovery from a dequantized weight (inference.quant.q8_0_rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.quant import q8_0_dequantize_rows, q8_0_rows
from kernels import cpu_ops

from .kernel_modes import rerun_in_mode


@pytest.fixture(autouse=True, scope="module")
def built():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"


def _q8_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A dequantized Q8_0 weight as llama.cpp's quantizer makes one: per block of 32,
    d = max|x| / 127 in fp16, q = round(x / d) (so +-127 at the largest)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, k // 32, 32), generator=g)
    amax = x.abs().amax(dim=-1, keepdim=True)
    q = torch.round(x / (amax / 127)).clamp(-127, 127)
    d = (amax / 127).half().float()
    return (q * d).reshape(n, k)


@pytest.mark.parametrize("rows,n,k", [(1, 49152, 576), (3, 100, 64), (4, 17, 96), (2, 16, 32)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_matches_float64_dot_products(rows, n, k, dtype):
    w = _q8_weight(n, k, seed=n)
    packed = q8_0_rows(w)
    assert packed is not None and packed.shape == (n, k + k // 16)
    assert torch.equal(q8_0_dequantize_rows(packed, torch.arange(n)), w)
    x = torch.randn((rows, k), generator=torch.Generator().manual_seed(k)).to(dtype)
    got = cpu_ops.q8_gemv(x, packed)
    want = x.double() @ w.double().T
    assert got.dtype == torch.float32 and got.shape == (rows, n)
    torch.testing.assert_close(got.double(), want, atol=1e-5 * want.abs().max().item(), rtol=0)


def test_a_row_does_not_depend_on_the_others():
    packed = q8_0_rows(_q8_weight(40, 64, seed=4))
    assert packed is not None
    x = torch.randn((4, 64)).bfloat16()
    whole = cpu_ops.q8_gemv(x, packed)
    for i in range(4):
        assert torch.equal(cpu_ops.q8_gemv(x[i : i + 1], packed)[0], whole[i])


def test_weights_that_are_not_q8_0_are_not_recovered():
    assert q8_0_rows(torch.randn(8, 64)) is None  # d would not be an fp16 value
    w = _q8_weight(8, 64)
    w[3, 5] += 1e-3  # no longer d q
    assert q8_0_rows(w) is None
    assert q8_0_rows(torch.randn(8, 40)) is None  # not whole blocks
    zeros = q8_0_rows(torch.zeros(4, 32))  # an all-zero block: d = 0
    assert zeros is not None and not cpu_ops.q8_gemv(torch.ones(1, 32), zeros).any()


def test_rejects_what_it_does_not_serve():
    packed = q8_0_rows(_q8_weight(16, 64))
    assert packed is not None
    with pytest.raises(RuntimeError, match="1 to 4 rows"):
        cpu_ops.q8_gemv(torch.randn(5, 64), packed)
    with pytest.raises(RuntimeError, match="Q8_0 rows"):
        cpu_ops.q8_gemv(torch.randn(1, 64), packed[:, :-2].contiguous())
    with pytest.raises(RuntimeError, match="multiple of 32"):
        cpu_ops.q8_gemv(torch.randn(1, 48), packed)


def test_avx2_paths_pass_the_same_tests():
    """CPUs without AVX-512 BF16 take the AVX2 paths (tests/kernels/test_cpu_fused_ops.py runs
    the portable ones): these tests again in a process that forces them."""
    rerun_in_mode("avx2", [Path(__file__)])
