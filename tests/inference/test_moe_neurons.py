"""Per-neuron gate-first routing (inference/moe/neurons.py) on a tiny random Llama: the
packing, the counts, dense equivalence, the kernel against the twin, and row independence."""

from __future__ import annotations

import pytest
import torch

from inference.moe.forward import chunk_logits
from inference.moe.neurons import (
    KERNEL_MAX_ROWS,
    NeuronFFN,
    candidates_for,
    q41_rows,
    transposed_down,
)
from inference.quant import Q4_1Weight

from .moe_tiny import CFG, tiny_model, tiny_tensors


@pytest.fixture(scope="module")
def tiny():
    tensors = tiny_tensors()
    return tiny_model(tensors), tensors


def _unpack_rows(packed: torch.Tensor, k: int) -> Q4_1Weight:
    import numpy as np

    b = packed.numpy()
    n, nb = b.shape[0], k // 32
    nib = b[:, : nb * 16].reshape(n, nb, 16)
    q = np.concatenate([nib & 0xF, nib >> 4], axis=-1).reshape(n, k)
    d = b[:, nb * 16 : nb * 18].copy().view(np.float16).astype(np.float32)
    m = b[:, nb * 18 :].copy().view(np.float16).astype(np.float32)
    return Q4_1Weight(q, d, m)


def test_packing_round_trips(tiny):
    _, tensors = tiny
    gate, down = tensors["blk.0.ffn_gate.weight"], tensors["blk.0.ffn_down.weight"]
    back = _unpack_rows(q41_rows(gate), CFG.dim)
    assert (back.dequantize() == gate.dequantize()).all()
    nib, dm = transposed_down(down)
    assert nib.shape == (CFG.ffn_dim, CFG.dim // 2) and dm.shape == (CFG.ffn_dim // 32, 2, CFG.dim)
    col = nib[5].numpy()  # neuron 5's column of the down projection, 32 outputs a block
    import numpy as np

    q = np.concatenate([col.reshape(-1, 16) & 0xF, col.reshape(-1, 16) >> 4], axis=-1).reshape(-1)
    want = down.dequantize()[:, 5]
    got = q * dm[0, 0].float().numpy() + dm[0, 1].float().numpy()
    assert np.allclose(got, want)


def test_candidates_per_fraction():
    n = 1536
    assert [candidates_for(round(f * n), n) for f in (0.35, 0.6, 0.92)] == [1076, 1383, 1413]
    assert candidates_for(n, n) == n
    assert candidates_for(10, 16) == 15  # 62%: 1.5x
    assert candidates_for(1, 16) == 2


def test_every_neuron_is_the_dense_model(tiny):
    model, tensors = tiny
    ex = NeuronFFN(model, tensors)
    ids = list(range(1, 21))
    dense = chunk_logits(model, ids)
    k = torch.full((len(ids),), ex.n_experts, dtype=torch.long)
    assert torch.equal(chunk_logits(model, ids, ex.route(k)), dense)
    assert ex.ffn_macs(ex.n_experts) == 3 * CFG.dim * CFG.ffn_dim


def test_fewer_neurons_compute_less(tiny):
    model, tensors = tiny
    ex = NeuronFFN(model, tensors)
    full = ex.ffn_macs(ex.n_experts)
    k35 = round(0.35 * ex.n_experts)
    assert ex.ffn_macs(k35) < ex.ffn_macs(round(0.92 * ex.n_experts)) < full
    assert ex.router_macs() == 2 * CFG.ffn_dim  # two scores a neuron: 2 / (3 dim) of the FFN


def test_kernel_and_twin_agree_on_the_model(tiny):
    model, tensors = tiny
    ex = NeuronFFN(model, tensors)
    if not ex.kernel:
        pytest.skip("the CPU kernels are not built here")
    twin = NeuronFFN(model, tensors, kernel=False)
    h = torch.randn(3, CFG.dim).to(model.dtype)
    k = torch.tensor([45, 77, 110])
    got, want = ex.route(k)(0, h).float(), twin.route(k)(0, h).float()
    # the twin's projections run in the compute dtype (bf16 GEMM), the kernel's in fp32
    torch.testing.assert_close(got, want, atol=0.1 * want.abs().max().item(), rtol=0)


def test_rows_keep_their_own_counts_alone_or_together(tiny):
    model, tensors = tiny
    ex = NeuronFFN(model, tensors)
    h = torch.randn(4, CFG.dim).to(model.dtype)
    k = torch.tensor([40, CFG.ffn_dim, 90, 60])  # row 1 dense
    together = ex.route(k)(0, h)
    for r in range(4):
        assert torch.equal(together[r : r + 1], ex.route(k[r : r + 1])(0, h[r : r + 1])), r
    assert torch.equal(together[1:2], ex.dense(0, h[1:2]))
    many = torch.randn(KERNEL_MAX_ROWS + 5, CFG.dim).to(model.dtype)  # the twin's batch
    km = torch.tensor([40, 60, 90, 100, 40, 60, 90, 100, 50])
    together = ex.route(km)(1, many)
    perm = torch.tensor([8, 3, 0, 5, 6, 7, 1, 2, 4])
    shuffled = ex.route(km[perm])(1, many[perm])
    assert torch.equal(shuffled, together[perm])


def test_tiny_counts_take_the_twin(tiny):
    """Fewer than one neuron per shard: the kernel cannot split it, the twin runs it."""
    model, tensors = tiny
    ex = NeuronFFN(model, tensors)
    h = torch.randn(1, CFG.dim).to(model.dtype)
    route = ex.route(torch.tensor([2]))
    assert not route.kernel
    assert route(0, h).shape == (1, CFG.dim)
