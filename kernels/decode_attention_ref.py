"""PyTorch reference twin of `kernels.decode_attention`: the same contract, plain tensor ops.

It defines what the Triton kernel must compute and is what the tests compare it against.
"""

from __future__ import annotations

import torch


def paged_decode_attention_ref(
    q: torch.Tensor,  # [B, H, D]: one query token per sequence
    k_cache: torch.Tensor,  # [KVH, S, D]: keys of every cache slot
    v_cache: torch.Tensor,  # [KVH, S, D]
    slots: torch.Tensor,  # [B, L] int: the cache slots of each sequence's tokens, padded
    seq_lens: torch.Tensor,  # [B] int: valid slots per row (>= 1)
    scale: float,
) -> torch.Tensor:
    """Attention of each sequence's query over its own tokens (no mask beyond the length);
    the H query heads share the KVH key/value heads in groups of H // KVH. fp32 math,
    output in q's dtype."""
    B, H, D = q.shape
    kvh = k_cache.shape[0]
    g = H // kvh
    out = torch.empty_like(q)
    for b in range(B):
        n = int(seq_lens[b])
        idx = slots[b, :n].long()
        k = k_cache[:, idx].float()  # [KVH, n, D]
        v = v_cache[:, idx].float()
        qb = q[b].float().view(kvh, g, D)
        p = torch.softmax(torch.matmul(qb, k.transpose(1, 2)) * scale, dim=-1)  # [KVH, g, n]
        out[b] = torch.matmul(p, v).reshape(H, D).to(q.dtype)
    return out
