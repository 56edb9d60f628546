"""The fused C++ layer steps against the PyTorch ops they replace (`inference.layer_ops`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inference.layer_ops import FusedCpuLayerOps, TorchLayerOps
from kernels import cpu_ops

from .kernel_modes import rerun_in_mode

BF16_STEP = 2**-7  # bfloat16 values are at most this far apart (relative): one rounding


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(1234)


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def ops(request):
    """(PyTorch ops, fused ops) computing in bf16 (AVX-512 BF16 CPUs) or fp32 (the others)."""
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"
    g = torch.Generator().manual_seed(0)
    cos = torch.randn(4096, 64, generator=g)
    sin = torch.randn(4096, 64, generator=g)
    return TorchLayerOps(request.param, 1e-5, cos, sin), FusedCpuLayerOps(request.param, 1e-5, cos, sin)


def close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """One rounding to `dtype` apart (fp32: a few ulps, the order of the sums differs)."""
    assert got.dtype == dtype
    rtol = BF16_STEP if dtype == torch.bfloat16 else 2e-6
    torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize(("rows", "dim"), [(1, 576), (32, 576), (300, 576), (5, 40), (3, 7)])
def test_rms_norm(ops, rows, dim):
    torch_ops, fused = ops
    x = torch.randn(rows, dim) * 3
    w = torch.randn(dim)
    close(fused.norm(x, w), F.rms_norm(x, (dim,), w, 1e-5), fused.dtype)
    close(fused.norm(x, w), torch_ops.norm(x, w), fused.dtype)


@pytest.mark.parametrize(("rows", "dim"), [(1, 576), (64, 576), (4, 20)])
def test_add_norm_updates_the_residual_in_place(ops, rows, dim):
    _, fused = ops
    x = torch.randn(rows, dim)
    y = torch.randn(rows, dim).to(fused.dtype)
    w = torch.randn(dim)
    want_x = x + y.float()
    got = fused.add_norm(x, y, w)
    torch.testing.assert_close(x, want_x, rtol=0, atol=0)
    close(got, F.rms_norm(want_x, (dim,), w, 1e-5), fused.dtype)


@pytest.mark.parametrize(("rows", "ffn"), [(1, 1536), (40, 1536), (3, 24)])
def test_silu_mul_rounds_once(ops, rows, ffn):
    _, fused = ops
    gu = (torch.randn(rows, 2 * ffn) * 4).to(fused.dtype)
    g, u = gu[:, :ffn].double(), gu[:, ffn:].double()
    close(fused.silu_mul(gu), F.silu(g) * u, fused.dtype)


def test_silu_of_extreme_gates_is_finite(ops):
    _, fused = ops
    gates = [-200.0, -90.0, -87.0, 0.0, 88.0, 90.0, 200.0, -3.0, 2.5]  # and the 8-lane loop's tail
    gu = torch.tensor([gates + [1.0] * len(gates)]).to(fused.dtype)
    got = fused.silu_mul(gu).float()
    want = F.silu(torch.tensor([gates]).to(fused.dtype).double())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=BF16_STEP, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 7, 100])
def test_rope_store_matches_pytorch_and_writes_only_its_slots(ops, rows):
    torch_ops, fused = ops
    nh, nkv, hd, num_slots = 9, 3, 64, 512
    qkv = torch.randn(rows, nh + 2 * nkv, hd).to(fused.dtype)
    positions = torch.randint(0, 4096, (rows,))
    slots = torch.randperm(num_slots)[:rows]
    want_cache = torch.randn(2 * nkv, num_slots, hd).to(fused.dtype)
    got_cache = want_cache.clone()
    want = torch_ops.rope_store(qkv, torch_ops.rope_tables(positions), want_cache, slots, nh)
    got = fused.rope_store(qkv, fused.rope_tables(positions), got_cache, slots, nh)
    close(got, want, fused.dtype)
    # the cache holds exactly the returned keys and the given values, nothing else moved
    torch.testing.assert_close(got_cache[:nkv, slots], got[:, nh:].transpose(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(got_cache[nkv:, slots], qkv[:, nh + nkv :].transpose(0, 1), rtol=0, atol=0)
    others = torch.ones(num_slots, dtype=torch.bool)
    others[slots] = False
    torch.testing.assert_close(got_cache[:, others], want_cache[:, others], rtol=0, atol=0)


def test_rope_store_rounds_keys_and_values_into_a_bf16_cache_under_fp32(ops):
    torch_ops, fused = ops
    if fused.dtype != torch.float32:
        pytest.skip("fp32 compute only")
    nh, nkv, hd, num_slots = 9, 3, 64, 64
    qkv = torch.randn(5, nh + 2 * nkv, hd)
    positions, slots = torch.tensor([0, 3, 9, 100, 4000]), torch.tensor([7, 0, 63, 20, 21])
    cache32 = torch.zeros(2 * nkv, num_slots, hd)
    want = torch_ops.rope_store(qkv, torch_ops.rope_tables(positions), cache32, slots, nh)
    cache = torch.zeros(2 * nkv, num_slots, hd, dtype=torch.bfloat16)
    got = fused.rope_store(qkv, fused.rope_tables(positions), cache, slots, nh)
    close(got, want, torch.float32)  # the roped queries and keys stay fp32
    torch.testing.assert_close(cache, cache32.bfloat16(), rtol=0, atol=0)  # rounded once


@pytest.mark.parametrize(
    ("positions", "slots", "message"),
    [
        ([0, 5000], [0, 1], "position out of range"),
        ([0, 1], [0, 512], "slot out of range"),
        ([0, 1], [-1, 0], "slot"),
    ],
)
def test_rope_store_rejects_bad_indices(ops, positions, slots, message):
    _, fused = ops
    cache = torch.zeros(6, 512, 64).to(fused.dtype)
    with pytest.raises(RuntimeError, match=message):
        fused.rope_store(
            torch.zeros(2, 15, 64).to(fused.dtype), torch.tensor(positions), cache, torch.tensor(slots), 9
        )
    assert not cache.any()  # checked before anything is written


def test_portable_paths_pass_the_same_tests():
    """CPUs without AVX512_BF16 (or AVX2) take the plain loops: run these tests and the
    attention and other CPU kernels' again in a process that forces them."""
    here = Path(__file__).parent
    names = (
        "test_cpu_decode_attention.py",
        "test_cpu_fused_ops.py",
        "test_cpu_pq_roundtrip.py",
        "test_cpu_sparse_ffn.py",
        "test_cpu_q8_gemv.py",
    )
    rerun_in_mode("portable", [here / n for n in names])
