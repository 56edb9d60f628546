"""The C++ prefill-attention kernel against fp32 attention over the same bf16 inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import cpu_ops


@pytest.fixture(scope="module", autouse=True)
def usable():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"
    if not cpu_ops.prefill_attention_usable(torch.bfloat16, 64, 3):
        pytest.skip("this CPU has no AVX-512 BF16: the engine uses SDPA for prefill")


def case(n: int, ctx: int, heads: int, kv_heads: int, seed: int = 0, q_scale: float = 1.0):
    """A chunk of n queries at the end of a ctx-token context whose keys and values sit at
    shuffled slots of a cache with spare slots."""
    g = torch.Generator().manual_seed(seed)
    num_slots = ctx + 40
    k = torch.randn(kv_heads, num_slots, 64, generator=g).bfloat16()
    v = torch.randn(kv_heads, num_slots, 64, generator=g).bfloat16()
    slots = torch.randperm(num_slots, generator=g)[:ctx]
    q = (torch.randn(n, heads, 64, generator=g) * q_scale).bfloat16()
    return q, k, v, slots


def reference(q, k, v, slots, scale: float, dtype=torch.float32) -> torch.Tensor:
    """Bottom-right causal attention (the last query sees the whole context)."""
    n, heads, _ = q.shape
    ctx = slots.numel()
    keys, values = k[:, slots].to(dtype)[None], v[:, slots].to(dtype)[None]
    mask = torch.ones(n, ctx, dtype=torch.bool).tril(ctx - n)
    o = F.scaled_dot_product_attention(
        q.to(dtype).transpose(0, 1)[None], keys, values, attn_mask=mask, enable_gqa=True, scale=scale
    )
    return o[0].transpose(0, 1).reshape(n, -1)


CASES = [
    (1, 1, 9, 3),  # one token
    (5, 5, 9, 3),  # fewer tokens than one task
    (1000, 1000, 9, 3),  # a fresh 1,000-token prompt
    (37, 100, 9, 3),  # a chunk after a cached prefix, off the 32-key blocks
    (1, 70, 9, 3),  # one query over a long prefix
    (64, 64, 4, 4),  # no grouping
    (33, 97, 8, 2),  # groups of 4
    (13, 45, 12, 1),  # one kv head for 12 query heads
    (11, 11, 10, 2),  # groups of 5: tasks of 10 rows
]


@pytest.mark.parametrize(("n", "ctx", "heads", "kv_heads"), CASES)
def test_matches_fp32_attention(n, ctx, heads, kv_heads):
    q, k, v, slots = case(n, ctx, heads, kv_heads)
    got = cpu_ops.prefill_attention(q, k, v, slots, 0.1)  # 0.1: not a power of two
    assert got.dtype == torch.bfloat16 and got.shape == (n, heads * 64)
    want = reference(q, k, v, slots, 0.1)
    # bf16 probabilities times bf16 values, as PyTorch's own bf16 attention does: the kernel
    # is held to that kernel's error (plus the output rounding)
    torch_err = (reference(q, k, v, slots, 0.1, torch.bfloat16).float() - want).abs().max()
    err = (got.float() - want).abs().max()
    assert err <= max(2 * torch_err, 2**-7), (err, torch_err)


def test_random_shapes():
    """Chunk sizes, prefixes, groupings and scales drawn at random (fixed seed)."""
    g = torch.Generator().manual_seed(7)
    for i in range(25):
        kv_heads = int(torch.randint(1, 4, (), generator=g))
        group = int(torch.randint(1, 7, (), generator=g))
        n = int(torch.randint(1, 90, (), generator=g))
        ctx = n + int(torch.randint(0, 150, (), generator=g))
        scale = float(torch.rand((), generator=g)) * 0.3 + 0.01
        q, k, v, slots = case(n, ctx, kv_heads * group, kv_heads, seed=100 + i)
        got = cpu_ops.prefill_attention(q, k, v, slots, scale)
        want = reference(q, k, v, slots, scale)
        torch_err = (reference(q, k, v, slots, scale, torch.bfloat16).float() - want).abs().max()
        assert (got.float() - want).abs().max() <= max(2 * torch_err, 2**-7), (n, ctx, kv_heads, group)


def test_a_row_does_not_depend_on_the_chunk():
    """Chunked prefill computes what a whole prefill does, bit for bit."""
    q, k, v, slots = case(100, 100, 9, 3, seed=1)
    whole = cpu_ops.prefill_attention(q, k, v, slots, 0.125)
    tail = cpu_ops.prefill_attention(q[63:], k, v, slots, 0.125)
    middle = cpu_ops.prefill_attention(q[20:63], k, v, slots[:63], 0.125)
    assert torch.equal(tail, whole[63:])
    assert torch.equal(middle, whole[20:63])


def test_extreme_scores_stay_finite():
    q, k, v, slots = case(40, 80, 9, 3, seed=2, q_scale=300.0)
    got = cpu_ops.prefill_attention(q, k, v, slots, 1.0)
    assert torch.isfinite(got.float()).all()
    torch.testing.assert_close(got.float(), reference(q, k, v, slots, 1.0), rtol=2**-7, atol=2e-2)


def test_strided_views_as_the_engine_passes_them():
    """q a slice of the rope output, keys and values the two halves of one layer's cache."""
    q, k, v, slots = case(50, 90, 9, 3, seed=4)
    qk = torch.cat([q, torch.randn(50, 3, 64).bfloat16()], dim=1)  # [n, nh + nkv, hd]
    cache = torch.cat([k, v])  # [2 nkv, slots, hd]
    got = cpu_ops.prefill_attention(qk[:, :9], cache[:3], cache[3:], slots, 0.125)
    assert torch.equal(got, cpu_ops.prefill_attention(q, k, v, slots, 0.125))


@pytest.mark.parametrize(
    ("slots", "n", "message"),
    [
        (torch.tensor([0, 1, 130]), 2, "slot out of range"),
        (torch.tensor([0, -1, 2]), 2, "slot out of range"),
        (torch.tensor([0, 1]), 3, "context must hold the chunk"),
    ],
)
def test_rejects_bad_input_before_reading(slots, n, message):
    q, k, v, _ = case(n, 90, 9, 3)  # 130 slots
    with pytest.raises(RuntimeError, match=message):
        cpu_ops.prefill_attention(q, k, v, slots, 1.0)


def test_rejects_what_it_does_not_serve():
    q, k, v, slots = case(4, 8, 9, 3)
    with pytest.raises(RuntimeError, match="bfloat16 only"):
        cpu_ops.prefill_attention(q.float(), k.float(), v.float(), slots, 1.0)
    with pytest.raises(RuntimeError, match="head size 64 only"):
        cpu_ops.prefill_attention(q[..., :32], k[..., :32], v[..., :32], slots, 1.0)
