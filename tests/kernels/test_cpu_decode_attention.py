"""The C++ decode-attention kernel (built here on first use) against its PyTorch twin."""

from __future__ import annotations

import pytest
import torch

from kernels import cpu_ops
from kernels.cpu_ops import paged_decode_attention
from kernels.decode_attention_ref import paged_decode_attention_ref
from tests.kernels.cases import paged_case


@pytest.fixture(scope="module", autouse=True)
def built():
    assert cpu_ops.load(), "the C++ kernel did not build (see the warning above)"


CASES = [
    ([1], 9, 3, 64, 16),  # one token of context
    ([37, 5, 64, 100, 16, 17], 9, 3, 64, 16),  # lengths off and on page and tile edges
    ([3000, 40], 9, 3, 64, 16),  # a long context: many pages and tiles
    ([70, 33], 8, 2, 32, 8),  # groups of 4, another head size (portable path)
    ([50], 4, 4, 16, 16),  # no grouping (multi-head)
    ([29, 64], 24, 2, 64, 16),  # groups of 12 (portable path in bf16)
    ([21], 2, 1, 128, 32),
]


@pytest.mark.parametrize(("lens", "heads", "kv_heads", "dim", "block"), CASES)
def test_float32_matches_the_reference(lens, heads, kv_heads, dim, block):
    q, k, v, slots, n = paged_case(lens, heads, kv_heads, dim, block)
    want = paged_decode_attention_ref(q, k, v, slots, n, dim**-0.5)
    got = paged_decode_attention(q, k, v, slots, n, dim**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("lens", "heads", "kv_heads", "dim", "block"), CASES)
def test_bfloat16_matches_the_reference(lens, heads, kv_heads, dim, block):
    q, k, v, slots, n = (
        t.bfloat16() if t.is_floating_point() else t for t in paged_case(lens, heads, kv_heads, dim, block)
    )
    # a scale that is not a power of two: it must not round the query to bf16
    want = paged_decode_attention_ref(q.float(), k.float(), v.float(), slots, n, 0.1)
    got = paged_decode_attention(q, k, v, slots, n, 0.1)
    assert got.dtype == torch.bfloat16
    # fp32 inside: the only error is the output's rounding to bfloat16 (2^-8 relative)
    torch.testing.assert_close(got.float(), want, rtol=2**-8, atol=1e-3)


# (dtype, rtol): bf16 outputs are rounded once (2^-8 relative); fp32 ones only reassociated
DTYPES = [(torch.bfloat16, 2**-8), (torch.float32, 1e-5)]


@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_strided_views_as_the_engine_passes_them(dtype, rtol):
    """q a slice of the rope output, keys and values the two halves of one layer's cache."""
    q, k, v, slots, n = paged_case([45, 12, 80], 9, 3, 64, 16, seed=3)
    qk = torch.cat([q, torch.randn(3, 3, 64)], dim=1).to(dtype)  # [B, nh + nkv, hd]
    cache = torch.cat([k, v]).to(dtype)  # [2 nkv, slots, hd]
    got = paged_decode_attention(qk[:, :9], cache[:3], cache[3:], slots, n, 1.0)
    want = paged_decode_attention_ref(
        qk[:, :9].float(), k.to(dtype).float(), v.to(dtype).float(), slots, n, 1.0
    )
    torch.testing.assert_close(got.float(), want, rtol=rtol, atol=1e-3 if dtype == torch.bfloat16 else 1e-5)


@pytest.mark.parametrize(("dtype", "rtol"), DTYPES)
def test_extreme_scores_stay_finite(dtype, rtol):
    q, k, v, slots, n = paged_case([40], 9, 3, 64, 16)
    q = q * 200  # scores in the thousands: the softmax must subtract the max
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    got = paged_decode_attention(q, k, v, slots, n, 1.0)
    assert torch.isfinite(got.float()).all()
    want = paged_decode_attention_ref(q.float(), k.float(), v.float(), slots, n, 1.0)
    torch.testing.assert_close(got.float(), want, rtol=rtol, atol=1e-3 if dtype == torch.bfloat16 else 1e-4)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: {**a, "slots": a["slots"] + 10_000}, "slot out of range"),
        (lambda a: {**a, "seq_lens": a["seq_lens"] * 0}, "sequence length out of range"),
        (lambda a: {**a, "seq_lens": a["seq_lens"] + 1000}, "sequence length out of range"),
        (lambda a: {**a, "q": a["q"].double()}, "share a dtype"),
        (lambda a: {**a, "q": a["q"][:, :5]}, "group over the kv heads"),
    ],
)
def test_bad_input_is_an_error_not_a_crash(mutate, message):
    q, k, v, slots, n = paged_case([20, 7], 9, 3, 64, 16)
    args = mutate({"q": q, "k_cache": k, "v_cache": v, "slots": slots, "seq_lens": n, "scale": 1.0})
    with pytest.raises(RuntimeError, match=message):
        paged_decode_attention(**args)


@pytest.mark.parametrize(("lens", "heads", "kv_heads", "dim", "block"), CASES)
def test_float32_queries_over_a_bfloat16_cache(lens, heads, kv_heads, dim, block):
    """fp32 compute with its cache in bf16: the keys and values as rounded, fp32 otherwise."""
    q, k, v, slots, n = paged_case(lens, heads, kv_heads, dim, block)
    kb, vb = k.bfloat16(), v.bfloat16()
    got = paged_decode_attention(q, kb, vb, slots, n, 0.1)
    assert got.dtype == torch.float32
    want = paged_decode_attention_ref(q, kb.float(), vb.float(), slots, n, 0.1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="share a dtype"):  # not the other way round
        paged_decode_attention(q.bfloat16(), k, v, slots, n, 0.1)
