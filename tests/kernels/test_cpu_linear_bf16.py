"""The AVX-512 BF16 linear kernel (bf16 inputs, packed bf16 weight, bf16 output) against
float64 products of the same bf16 values, and the engine's layer that holds its weights so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inference.quant import QLinear
from kernels import cpu_ops

# the output is an fp32 sum rounded once to bf16 (a relative error of at most 2^-9)
BF16_RTOL = 2**-8


@pytest.fixture(scope="module", autouse=True)
def usable():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"
    if not cpu_ops.avx512_bf16():
        pytest.skip("this CPU has no AVX-512 BF16")


def case(rows: int, n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g).bfloat16()
    w = (torch.randn(n, k, generator=g) * 0.05).bfloat16()
    return x, w


def close_to_float64(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    want = x.double() @ w.double().t()
    torch.testing.assert_close(got.double(), want, rtol=BF16_RTOL, atol=1e-5 * x.shape[1] ** 0.5)


@pytest.mark.parametrize(
    ("rows", "n", "k"),
    [
        (1, 960, 576),  # qkv projection, one row
        (5, 3072, 576),  # gate + up
        (32, 576, 1536),  # down, four tiles of 8 rows
        (13, 49152, 576),  # the output projection, a tile of 8 and one of 5
        (9, 40, 64),  # outputs past the last full panel (a group of 3 panels, partly used)
        (17, 100, 2),  # a single pair of k
        (3, 5, 30),  # fewer outputs than a panel
        (200, 112, 576),  # many row tiles; 7 panels: groups of 3, 3 and 1
    ],
)
def test_matches_float64_products(rows, n, k):
    x, w = case(rows, n, k)
    got = cpu_ops.linear_bf16(x, cpu_ops.pack_bf16_pairs(w), n)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    close_to_float64(got, x, w)


def test_agrees_with_torch_bf16_linear():
    """oneDNN's bf16 GEMM rounds its fp32 sums once too: the two differ by at most one bf16
    step (sums in another order can round the other way) and agree on most outputs."""
    x, w = case(32, 960, 576, seed=4)
    got = cpu_ops.linear_bf16(x, cpu_ops.pack_bf16_pairs(w), 960).float()
    ref = F.linear(x, w).float()
    step = torch.finfo(torch.bfloat16).eps * ref.abs().clamp_min(1e-3)
    assert ((got - ref).abs() <= step).all()
    assert (got == ref).float().mean() > 0.9


def test_a_row_does_not_depend_on_the_batch():
    """Each output is one chain of dot products over k whatever the tile: bitwise equal."""
    x, w = case(40, 200, 576, seed=1)
    packed = cpu_ops.pack_bf16_pairs(w)
    whole = cpu_ops.linear_bf16(x, packed, 200)
    for rows in (slice(0, 1), slice(3, 5), slice(7, 10), slice(11, 19), slice(20, 33)):
        assert torch.equal(cpu_ops.linear_bf16(x[rows], packed, 200), whole[rows])


def test_strided_rows_and_empty_shapes():
    x, w = case(9, 48, 64, seed=2)
    packed = cpu_ops.pack_bf16_pairs(w)
    wide = torch.cat([x, torch.full_like(x, float("nan"))], dim=1)[:, :64]  # row stride 128
    assert torch.equal(cpu_ops.linear_bf16(wide, packed, 48), cpu_ops.linear_bf16(x, packed, 48))
    assert cpu_ops.linear_bf16(x[:0], packed, 48).shape == (0, 48)
    no_outputs = cpu_ops.pack_bf16_pairs(w[:0])
    assert no_outputs.shape == (0, 32, 16, 2)
    assert cpu_ops.linear_bf16(x, no_outputs, 0).shape == (9, 0)


def test_rejects_what_it_does_not_serve():
    x, w = case(2, 40, 64)
    packed = cpu_ops.pack_bf16_pairs(w)
    with pytest.raises(RuntimeError, match="bfloat16"):
        cpu_ops.linear_bf16(x.float(), packed, 40)
    with pytest.raises(RuntimeError, match="match the packed"):
        cpu_ops.linear_bf16(x[:, :32].contiguous(), packed, 40)
    with pytest.raises(RuntimeError, match="rows dense"):
        cpu_ops.linear_bf16(x.t().contiguous().t(), packed, 40)
    for n in (32, 49):  # 40 outputs fill 3 panels: 33..48 match, these do not
        with pytest.raises(RuntimeError, match="N does not match"):
            cpu_ops.linear_bf16(x, packed, n)
    with pytest.raises(RuntimeError, match="packed"):
        cpu_ops.linear_bf16(x, packed.float(), 40)
    with pytest.raises(ValueError, match="even"):
        cpu_ops.pack_bf16_pairs(w[:, :63])


def test_qlinear_holds_packed_pairs_for_bf16():
    """The engine's bf16 layer: the kernel's panels (no oneDNN copy) beside the int4 weight
    for a few rows; with kernel=False the oneDNN path, within one bf16 step of each other."""
    x, w = case(6, 70, 96, seed=3)
    cpu = torch.device("cpu")
    fast = QLinear(w, torch.bfloat16, cpu, 0)
    plain = QLinear(w, torch.bfloat16, cpu, 0, kernel=False)
    assert fast.pairs is not None and fast.onednn is None and fast.dense is None
    assert plain.pairs is None
    close_to_float64(fast(x), x, w)
    close_to_float64(plain(x), x, w)
    kept = QLinear(w, torch.bfloat16, cpu, 0, keep_dense=True)
    assert kept.dense is not None and torch.equal(kept.dense, w)
