"""Inputs for the decode-attention kernels' tests."""

from __future__ import annotations

import torch


def paged_case(lens: list[int], heads: int, kv_heads: int, dim: int, block: int, seed: int = 0):
    """A paged cache whose blocks are handed out in shuffled order, as after many requests."""
    g = torch.Generator().manual_seed(seed)
    blocks_needed = sum(-(-n // block) for n in lens)
    num_blocks = blocks_needed + 5
    order = torch.randperm(num_blocks, generator=g).tolist()
    k = torch.randn(kv_heads, num_blocks * block, dim, generator=g)
    v = torch.randn(kv_heads, num_blocks * block, dim, generator=g)
    width = max(lens)
    slots = torch.zeros(len(lens), width, dtype=torch.int64)
    for b, n in enumerate(lens):
        table = [order.pop() for _ in range(-(-n // block))]
        row = [table[i // block] * block + i % block for i in range(n)]
        slots[b, :n] = torch.tensor(row)
    q = torch.randn(len(lens), heads, dim, generator=g)
    return q, k, v, slots, torch.tensor(lens, dtype=torch.int32)
