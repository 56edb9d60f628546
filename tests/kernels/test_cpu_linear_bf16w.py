"""The AVX2 linear kernel (fp32 inputs, bf16 weight panels) against float64 products of the
same bf16-rounded weights, and the engine's layer that holds its weights that way."""

from __future__ import annotations

import pytest
import torch

from inference.quant import QLinear
from kernels import cpu_ops


@pytest.fixture(scope="module", autouse=True)
def usable():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"
    if not cpu_ops.avx2_fma():
        pytest.skip("this CPU has no AVX2 + FMA")


def case(rows: int, n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g)
    w = (torch.randn(n, k, generator=g) * 0.05).bfloat16()
    return x, w


@pytest.mark.parametrize(
    ("rows", "n", "k"),
    [
        (1, 960, 576),  # a decode step's qkv projection
        (2, 3072, 576),
        (3, 576, 1536),
        (7, 49152, 576),  # the output projection, a tile of 6 and one row
        (32, 40, 64),  # outputs past the last full panel
        (300, 100, 576),  # several row blocks (L2-sized)
        (5, 5, 3),  # fewer outputs than a panel, odd K
        (13, 33, 1),
    ],
)
def test_matches_float64_products_of_the_bf16_weights(rows, n, k):
    x, w = case(rows, n, k)
    got = cpu_ops.linear_bf16w(x, cpu_ops.pack_bf16_weight(w), n)
    assert got.dtype == torch.float32 and got.shape == (rows, n)
    want = x.double() @ w.double().t()
    # fp32 fused multiply-adds of exact bf16 values: fp32 rounding only
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-5 * k**0.5)


def test_a_row_does_not_depend_on_the_batch():
    """Each output is one FMA chain over k whatever the tile: batched == alone, bitwise."""
    x, w = case(40, 200, 576, seed=1)
    packed = cpu_ops.pack_bf16_weight(w)
    whole = cpu_ops.linear_bf16w(x, packed, 200)
    for rows in (slice(0, 1), slice(3, 5), slice(7, 10), slice(11, 15), slice(20, 26)):
        assert torch.equal(cpu_ops.linear_bf16w(x[rows], packed, 200), whole[rows])


def test_strided_rows_and_no_rows():
    x, w = case(9, 48, 64, seed=2)
    packed = cpu_ops.pack_bf16_weight(w)
    wide = torch.cat([x, torch.full_like(x, float("nan"))], dim=1)[:, :64]  # row stride 128
    assert torch.equal(cpu_ops.linear_bf16w(wide, packed, 48), cpu_ops.linear_bf16w(x, packed, 48))
    assert cpu_ops.linear_bf16w(x[:0], packed, 48).shape == (0, 48)
    no_outputs = cpu_ops.pack_bf16_weight(w[:0])
    assert no_outputs.shape == (0, 64, 16)
    assert cpu_ops.linear_bf16w(x, no_outputs, 0).shape == (9, 0)


def test_rejects_what_it_does_not_serve():
    x, w = case(2, 40, 64)
    packed = cpu_ops.pack_bf16_weight(w)
    with pytest.raises(RuntimeError, match="float32"):
        cpu_ops.linear_bf16w(x.bfloat16(), packed, 40)
    with pytest.raises(RuntimeError, match="disagree on K"):
        cpu_ops.linear_bf16w(x[:, :32].contiguous(), packed, 40)
    for n in (32, 49):  # 40 outputs fill 3 panels: 33..48 match, these do not
        with pytest.raises(RuntimeError, match="N does not match"):
            cpu_ops.linear_bf16w(x, packed, n)
    with pytest.raises(RuntimeError, match="packed"):
        cpu_ops.linear_bf16w(x, packed.float(), 40)


def test_qlinear_holds_bf16_panels_under_fp32_compute():
    """The engine's layer: bf16 weights, fp32 in and out, the same values with or without the
    kernel (the fallback holds the rounded weights densely)."""
    x, w = case(6, 70, 96, seed=3)
    w32 = w.float() + 1e-4  # not bf16-exact: the layer rounds it
    fast = QLinear(w32, torch.float32, torch.device("cpu"), 0, weight_dtype=torch.bfloat16)
    plain = QLinear(w32, torch.float32, torch.device("cpu"), 0, weight_dtype=torch.bfloat16, kernel=False)
    assert fast.panels is not None and fast.panels.dtype == torch.bfloat16 and plain.panels is None
    want = x.double() @ w32.bfloat16().double().t()
    for layer in (fast, plain):
        torch.testing.assert_close(layer(x).double(), want, rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("avx512", [True, False])
def test_int4_for_a_few_rows_only_where_torch_vectorises_it_with_avx512(monkeypatch, avx512):
    """fp32 compute over bf16 weights: 1-4 rows take the file's exact Q4_1 values through the
    int4 kernel (bf16 in and out) where torch runs it with AVX-512; else the panels."""
    import numpy as np

    from inference import quant

    monkeypatch.setattr(quant, "int4_under_fp32", lambda: avx512)
    g = np.random.default_rng(0)
    n, k = 48, 128
    w = quant.Q4_1Weight(
        q=g.integers(0, 16, (n, k)),
        d=g.uniform(0.001, 0.01, (n, k // 32)).astype(np.float32),
        m=g.uniform(-0.08, 0.0, (n, k // 32)).astype(np.float32),
    )
    layer = QLinear(w, torch.float32, torch.device("cpu"), 4, weight_dtype=torch.bfloat16)
    assert (layer.packed is not None) == (avx512 and quant.int4_available())
    exact = torch.from_numpy(w.dequantize()).double()
    # the int4 kernel's weights: (q - 8) * scale + zero, with scale and zero held in bf16
    d = torch.from_numpy(w.d).double().repeat_interleave(32, 1)
    zero = torch.from_numpy(w.m).double().repeat_interleave(32, 1) + 8 * d
    as_int4 = (torch.from_numpy(w.q).double() - 8) * d.bfloat16().double() + zero.bfloat16().double()
    for rows in (1, 4, 5):
        x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))
        got = layer(x)
        assert got.dtype == torch.float32 and got.shape == (rows, n)
        if rows <= 4 and layer.packed is not None:  # bf16 inputs and output
            want = x.bfloat16().double() @ as_int4.t()
            torch.testing.assert_close(got.double(), want, rtol=2**-7, atol=1e-4 * k**0.5)
        else:  # fp32 inputs, the weights rounded to bf16
            want = x.double() @ exact.bfloat16().double().t()
            torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-4)
