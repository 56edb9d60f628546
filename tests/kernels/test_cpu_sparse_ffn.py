"""The routed modes' sparse FFN (kernels/cpu/sparse_ffn.cpp) against its PyTorch twin: the
same neurons kept (`inference.moe.neurons.select_neurons` on exact fp32 projections) and
the FFN of the kept neurons in fp32 from the file's Q4_1 weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.moe.neurons import SHARDS, candidates_for, q41_rows, select_neurons, shares, transposed_down
from inference.quant import Q4_1Weight
from kernels import cpu_ops

from .kernel_modes import rerun_in_mode


@pytest.fixture(autouse=True, scope="module")
def built():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"


def _q41(rng: np.random.Generator, rows: int, cols: int) -> Q4_1Weight:
    q = rng.integers(0, 16, size=(rows, cols)).astype(np.uint8)
    d = (rng.random((rows, cols // 32)) * 0.05 + 0.01).astype(np.float16).astype(np.float32)
    m = (-7.5 * d + rng.standard_normal(d.shape) * 0.01).astype(np.float16).astype(np.float32)
    return Q4_1Weight(q, d, m)


class Layer:
    """Random Q4_1 gate, up [F, K] and down [O, F], packed as the kernel reads them."""

    def __init__(self, k: int, f: int, o: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.gate, self.up, self.down = _q41(rng, f, k), _q41(rng, f, k), _q41(rng, o, f)
        self.pack()

    def pack(self) -> None:
        """(Re)derive the dense weights, the norms and the kernel's arguments from the Q4_1 ones."""
        self.wg, self.wu, self.wd = (
            torch.from_numpy(w.dequantize()) for w in (self.gate, self.up, self.down)
        )
        dn = self.wd.norm(dim=0)
        self.down_norm, self.score_scale = dn, self.wu.norm(dim=1) * dn
        dq, dm = transposed_down(self.down)
        self.args = (q41_rows(self.gate), q41_rows(self.up), dq, dm, self.score_scale, self.down_norm)

    def kernel(self, x: torch.Tensor, keep: list[int], cand: list[int], dtype=torch.float32):
        kept = torch.zeros((x.shape[0], self.wg.shape[0]), dtype=torch.uint8)
        y = cpu_ops.sparse_ffn(x, *self.args, keep, cand, dtype, kept)
        return y, kept.bool()

    def twin(self, x: torch.Tensor, keep: list[int], cand: list[int]):
        """(kept mask, the FFN of a given mask) in fp32 from the dequantized weights, of x as
        the kernel reads it (a bf16 x rounded to int8 per block where its VNNI path runs)."""
        rounded = x.dtype == torch.bfloat16 and cpu_ops.sparse_ffn_int8_x()
        xf = cpu_ops.int8_rounded(x) if rounded else x.float()
        a, u = F.silu(xf @ self.wg.t()), xf @ self.wu.t()
        mask = select_neurons(a, u, self.score_scale, self.down_norm, torch.tensor(keep), torch.tensor(cand))
        return mask, lambda m: torch.where(m, a * u, 0.0) @ self.wd.t()


# (K, F, O): the engine's shape (SmolLM2: 576, 1536, 576), an odd number of input blocks (the
# bf16 path's half step), one shard group each, a single output block
SHAPES = [(576, 1536, 576), (96, 256, 64), (64, 128, 32), (160, 512, 96)]


@pytest.mark.parametrize("k,f,o", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_matches_the_twin(k, f, o, dtype):
    layer = Layer(k, f, o, seed=k + f)
    g = torch.Generator().manual_seed(f)
    rows = 3
    x = torch.randn((rows, k), generator=g).to(dtype)
    fractions = [0.35, 0.6, 0.92]
    keep = [max(SHARDS, round(fr * f)) for fr in fractions]
    cand = [candidates_for(kk, f) for kk in keep]
    y, kept = layer.kernel(x, keep, cand, dtype)
    assert y.dtype == dtype and y.shape == (rows, o)
    want_mask, ffn_of = layer.twin(x, keep, cand)
    assert kept.sum(dim=1).tolist() == keep
    # the kernel's projections are exact up to fp32 summation order: only a near-tie of two
    # scores may rank differently
    assert (kept == want_mask).float().mean() > 0.995
    want = ffn_of(kept)
    tol = 2e-5 * want.abs().max().item() if dtype == torch.float32 else 0.01 * want.abs().max().item()
    torch.testing.assert_close(y.float(), want, atol=tol, rtol=0)


def test_every_neuron_kept_is_the_dense_ffn():
    layer = Layer(96, 256, 64, seed=5)
    x = torch.randn((2, 96))
    y, kept = layer.kernel(x, [256, 256], [256, 256])
    assert bool(kept.all())
    dense = (F.silu(x @ layer.wg.t()) * (x @ layer.wu.t())) @ layer.wd.t()
    torch.testing.assert_close(y, dense, atol=2e-5 * dense.abs().max().item(), rtol=0)


def test_rows_are_independent():
    """A row's result is the same alone and next to rows with other counts."""
    layer = Layer(96, 256, 64, seed=7)
    x = torch.randn((5, 96)).bfloat16()
    keep, cand = [4, 100, 250, 64, 128], [8, 200, 256, 64, 256]
    together, kept = layer.kernel(x, keep, cand, torch.bfloat16)
    for r in range(5):
        alone, kept_alone = layer.kernel(x[r : r + 1], keep[r : r + 1], cand[r : r + 1], torch.bfloat16)
        assert torch.equal(alone[0], together[r]) and torch.equal(kept_alone[0], kept[r]), r


def test_sixteen_rows():
    layer = Layer(64, 128, 32, seed=2)
    x = torch.randn((16, 64))
    keep = [4 + 7 * r for r in range(16)]
    cand = [min(128, 2 * kk) for kk in keep]
    y, kept = layer.kernel(x, keep, cand)
    assert kept.sum(dim=1).tolist() == keep
    torch.testing.assert_close(y, layer.twin(x, keep, cand)[1](kept), atol=1e-4, rtol=0)


def test_exact_ties_go_to_the_lower_neuron():
    """Neurons 3 and 9 (shard 0 of 4 x 32, one scale group) are identical and the strongest of
    their shard: they tie on both scores, and the shard's one kept neuron is 3 (the twin's
    stable argsort keeps the lower id too)."""
    rng = np.random.default_rng(11)
    layer = Layer(64, 128, 32, seed=11)
    for w in (layer.gate, layer.up):
        w.d[3] *= 20
        w.q[9], w.d[9], w.m[9] = w.q[3], w.d[3], w.m[3]
    col = rng.integers(0, 16, size=32).astype(np.uint8)
    layer.down.q[:, 3], layer.down.q[:, 9] = col, col
    layer.pack()
    for _ in range(5):
        x = torch.randn((1, 64)).abs()  # the strong neurons' gates positive: silu(g) ~ g
        want_mask, _ = layer.twin(x, [5], [5])  # shard 0's share: 1
        _, kept = layer.kernel(x, [5], [5])
        assert torch.equal(kept, want_mask)
        assert bool(kept[0, 3]) and not bool(kept[0, 9])


@pytest.mark.parametrize("rows", [1, 7, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_twins_selection_is_the_rule(rows, dtype):
    """cpu_ops.select_act (the twin's selection over its own projections) against
    select_neurons, ties included (up values drawn from a few integers)."""
    g = torch.Generator().manual_seed(rows)
    f = 256
    gate = torch.randn((rows, f), generator=g).to(dtype)
    up = torch.randint(-3, 4, (rows, f), generator=g).to(dtype)
    cs, dn = torch.rand(f, generator=g) + 0.5, torch.ones(f)
    keep = torch.randint(4, 200, (rows,), generator=g)
    cand = torch.minimum(keep * 2, torch.tensor(f))
    act = cpu_ops.select_act(torch.cat([gate, up], dim=1), cs, dn, keep, cand)
    assert act.dtype == dtype
    a, u = F.silu(gate.float()), up.float()
    want = select_neurons(a, u, cs, dn, keep, cand)
    assert torch.equal(act != 0, want & (a * u != 0))
    torch.testing.assert_close(
        act.float(), torch.where(want, a * u, 0.0).to(dtype).float(), atol=1e-6, rtol=0
    )


def test_the_int8_rounding_is_per_block_of_32():
    x = torch.zeros((1, 64))
    x[0, 0], x[0, 1], x[0, 32] = 1.27, 0.004, -3.0
    got = cpu_ops.int8_rounded(x)
    assert got[0, 0].item() == pytest.approx(1.27) and got[0, 1].item() == 0.0  # 0.004 < dx / 2
    assert got[0, 32].item() == pytest.approx(-3.0) and torch.count_nonzero(got) == 2


def test_shares_sum_to_the_count():
    k = torch.tensor([4, 5, 538, 1383, 1536, 7])
    s = shares(k)
    assert s.shape == (6, SHARDS) and s.sum(dim=1).tolist() == k.tolist()
    assert int(s.min()) >= 1


@pytest.mark.parametrize(
    "keep,cand,message",
    [([3], [8], "keep"), ([9], [8], "keep"), ([8], [200], "cand"), ([8, 8], [8], "one count per row")],
)
def test_bad_counts_are_refused(keep, cand, message):
    layer = Layer(64, 128, 32)
    with pytest.raises(RuntimeError, match=message):
        layer.kernel(torch.randn((1, 64)), keep, cand)


def test_bad_shapes_are_refused():
    layer = Layer(64, 128, 32)
    gate, up, dq, dm, cs, dn = layer.args
    with pytest.raises(RuntimeError, match="gate"):
        cpu_ops.sparse_ffn(
            torch.randn(1, 64), gate[:, :-1].contiguous(), up, dq, dm, cs, dn, [8], [8], torch.float32
        )
    with pytest.raises(RuntimeError, match="down_dm"):
        cpu_ops.sparse_ffn(torch.randn(1, 64), gate, up, dq, dm.float(), cs, dn, [8], [8], torch.float32)
    with pytest.raises(RuntimeError, match="rows"):
        cpu_ops.sparse_ffn(torch.randn(17, 64), gate, up, dq, dm, cs, dn, [8] * 17, [8] * 17, torch.float32)


def test_avx2_paths_pass_the_same_tests():
    """CPUs without AVX-512 BF16 take the AVX2 paths (tests/kernels/test_cpu_fused_ops.py runs
    the portable ones): these tests again in a process that forces them."""
    rerun_in_mode("avx2", [Path(__file__)])
