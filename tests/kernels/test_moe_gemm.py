"""Fused MoE grouped GEMM over a SwiGLU FFN partitioned into experts: the alignment step, the
twin against the dense FFN, and the Triton kernels (interpreter) against the twin."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import moe_gemm_ref
from kernels.moe_gemm import moe_swiglu
from kernels.moe_gemm_ref import align_by_expert, moe_swiglu_ref
from kernels.triton_support import triton

needs_triton = pytest.mark.skipif(triton is None, reason="needs the triton package")


def _ffn(d=40, experts=6, fe=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    wg = torch.randn(experts * fe, d, generator=g) * 0.2
    wu = torch.randn(experts * fe, d, generator=g) * 0.2
    wd = torch.randn(d, experts * fe, generator=g) * 0.2
    return wg, wu, wd, g


def _slices(wg, wu, wd, experts):
    fe = wg.shape[0] // experts
    d = wg.shape[1]
    return wg.view(experts, fe, d), wu.view(experts, fe, d), wd.view(d, experts, fe).permute(1, 0, 2)


def _dense(x, wg, wu, wd):
    return F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)


def _routing(t, experts, k, g):
    """Distinct experts per token; some slots empty (a variable number of active experts)."""
    ids = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(t)])
    if t > 1:
        ids[1, 1:] = -1  # one expert only
    if t > 4:
        ids[4, k - 1] = -1
    return ids, torch.rand(t, k, generator=g)


def test_alignment_groups_by_expert_and_pads_to_the_block():
    ids = torch.tensor([[0, 2, -1], [2, -1, -1], [1, 2, 0]])
    al = align_by_expert(ids, num_experts=4, block_m=2)
    pad = 9
    assert al.sorted_ids.tolist() == [0, 8, 6, pad, 1, 3, 7, pad]
    assert al.block_expert.tolist() == [0, 1, 2, 2]  # expert 3 has no tokens: no block
    with pytest.raises(ValueError, match="expert ids"):
        align_by_expert(torch.tensor([[4]]), num_experts=4, block_m=2)


def test_every_expert_at_weight_one_is_the_dense_ffn():
    wg, wu, wd, g = _ffn()
    x = torch.randn(5, 40, generator=g)
    ids = torch.arange(6).repeat(5, 1)
    got = moe_swiglu_ref(x, *_slices(wg, wu, wd, 6), ids, torch.ones(5, 6))
    torch.testing.assert_close(got, _dense(x, wg, wu, wd), rtol=1e-5, atol=1e-5)


def test_twin_computes_only_the_selected_experts():
    # zeroing the experts no token chose must not change anything
    wg, wu, wd, g = _ffn()
    x = torch.randn(6, 40, generator=g)
    ids, w = _routing(6, 4, 2, g)  # only experts 0-3 of 6 are ever chosen
    ws = _slices(wg, wu, wd, 6)
    want = moe_swiglu_ref(x, *ws, ids, w)
    unused = [4, 5]
    zeroed = [t.clone() for t in ws]
    for t in zeroed:
        t[unused] = 0
    torch.testing.assert_close(moe_swiglu_ref(x, *zeroed, ids, w), want)
    # and a token's output is its experts' outputs, weighted
    e0, e1 = ids[0].tolist()
    one = [moe_swiglu_ref(x[:1], *ws, torch.tensor([[e]]), torch.ones(1, 1)) for e in (e0, e1)]
    torch.testing.assert_close(want[:1], w[0, 0] * one[0] + w[0, 1] * one[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [2, 6])
def test_both_twin_strategies_agree(k):
    # decode batches covering every expert run masked-dense, the rest one GEMM per expert
    wg, wu, wd, g = _ffn()
    x = torch.randn(9, 40, generator=g)
    ids, w = _routing(9, 6, k, g)
    ws = _slices(wg, wu, wd, 6)
    dense_path = moe_gemm_ref._masked_dense(x, *ws, ids.long(), w)
    # Two fp32 summation orders (one GEMM over all experts vs one per expert), which also vary
    # with the thread count: 1.8e-6 apart was seen; a wrong routing is off by ~1e-1.
    per_expert = moe_gemm_ref._per_expert(x, *ws, ids, w)
    torch.testing.assert_close(per_expert, dense_path, rtol=1e-4, atol=1e-5)


def test_shape_errors():
    wg, wu, wd, _ = _ffn()
    ws = _slices(wg, wu, wd, 6)
    with pytest.raises(ValueError, match="shapes"):
        moe_swiglu_ref(torch.zeros(2, 39), *ws, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))
    with pytest.raises(ValueError, match="expert_ids"):
        moe_swiglu_ref(torch.zeros(2, 40), *ws, torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1))


@needs_triton
@pytest.mark.parametrize(("tokens", "k", "block_m"), [(7, 3, 16), (1, 2, 16), (20, 2, 16)])
def test_kernel_matches_the_twin(tokens, k, block_m):
    wg, wu, wd, g = _ffn()  # Fe=24 and D=40: partial tiles of 32 on both dims
    x = torch.randn(tokens, 40, generator=g)
    ids, w = _routing(tokens, 6, k, g)
    ws = _slices(wg, wu, wd, 6)
    got = moe_swiglu(x, *ws, ids, w, block_m=block_m)
    torch.testing.assert_close(got, moe_swiglu_ref(x, *ws, ids, w), rtol=1e-4, atol=1e-5)


@needs_triton
def test_kernel_dense_equivalence_and_a_token_with_no_expert():
    wg, wu, wd, g = _ffn(d=32, experts=4, fe=16)
    x = torch.randn(3, 32, generator=g)
    ids = torch.arange(4).repeat(3, 1)
    ids[2] = -1  # no expert at all: the FFN adds nothing
    got = moe_swiglu(x, *_slices(wg, wu, wd, 4), ids, torch.ones(3, 4))
    torch.testing.assert_close(got[:2], _dense(x[:2], wg, wu, wd), rtol=1e-4, atol=1e-5)
    assert (got[2] == 0).all()


@needs_triton
def test_kernel_in_half_precision():
    # the serving dtype path (bf16 on GPU; the interpreter has no bf16, fp16 takes the same path)
    wg, wu, wd, g = _ffn(d=32, experts=4, fe=16)
    x = torch.randn(5, 32, generator=g)
    ids, w = _routing(5, 4, 2, g)
    ws = [t.half() for t in _slices(wg, wu, wd, 4)]
    got = moe_swiglu(x.half(), *ws, ids, w.half())
    assert got.dtype == torch.float16
    want = moe_swiglu_ref(x.half(), *ws, ids, w.half())
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)
