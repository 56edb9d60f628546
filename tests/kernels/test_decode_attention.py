"""The Triton decode-attention kernel against its PyTorch twin (interpreter, fp32)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from kernels.decode_attention import available, paged_decode_attention  # noqa: E402
from kernels.decode_attention_ref import paged_decode_attention_ref  # noqa: E402
from tests.kernels.cases import paged_case as _case  # noqa: E402


def test_the_interpreter_is_on():
    assert available(torch.device("cpu"))


@pytest.mark.parametrize(
    ("lens", "heads", "kv_heads", "dim", "block"),
    [
        ([1], 9, 3, 64, 16),  # one token of context
        ([37, 5, 64, 100], 9, 3, 64, 16),  # lengths off and on block and tile edges
        ([70, 33], 8, 2, 32, 8),  # groups of 4
        ([50], 4, 4, 16, 16),  # no grouping (multi-head)
    ],
)
def test_kernel_matches_the_reference(lens, heads, kv_heads, dim, block):
    q, k, v, slots, n = _case(lens, heads, kv_heads, dim, block)
    want = paged_decode_attention_ref(q, k, v, slots, n, dim**-0.5)
    got = paged_decode_attention(q, k, v, slots, n, dim**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_reference_matches_sdpa_on_contiguous_tokens():
    q, k, v, slots, n = _case([20], 6, 2, 16, 4)
    idx = slots[0, :20]
    want = F.scaled_dot_product_attention(q[0].view(2, 3, 16), k[:, idx], v[:, idx], scale=0.25).reshape(
        1, 6, 16
    )
    torch.testing.assert_close(paged_decode_attention_ref(q, k, v, slots, n, 0.25), want)


def test_padding_beyond_a_length_is_never_read():
    q, k, v, slots, n = _case([10, 30], 9, 3, 64, 16)
    slots[0, 10:] = 10**9  # garbage past the length: a read would fault or poison the sums
    want = paged_decode_attention_ref(q, k, v, slots, n, 0.125)
    torch.testing.assert_close(paged_decode_attention(q, k, v, slots, n, 0.125), want, rtol=1e-4, atol=1e-5)
