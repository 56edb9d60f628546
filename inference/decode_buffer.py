"""Contiguous per-row KV copies for the sequences being decoded.

Gathering each decoding sequence's pages every layer and step costs more memory traffic than
the attention itself on a CPU. So every decoding sequence owns a row of a dense buffer,
filled once from its pages (one gather for all layers) and then appended to in place; the
decode attention reads rows [0, B) of the buffer as plain strided views, no copies. The paged
cache stays the source of truth (prefix cache, preemption); rows are a cache of it.

Two layouts, chosen per step by the runner:
- plain (small batches, SDPA): keys and values [n_layers, rows, n_kv_heads, capacity, hd];
- transposed (larger batches): keys transposed and in float32, [n_layers, rows, n_kv_heads,
  hd, capacity], so q @ K^T is one plain batched matmul with exact fp32 scores (faster than
  SDPA for many short query groups); values as in the plain layout.
Switching layouts drops the rows (they are refilled from the pages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .gguf_loader import LlamaConfig


class DecodeBuffer:
    def __init__(
        self,
        cfg: LlamaConfig,
        dtype: torch.dtype,
        device: torch.device,
        max_bytes: int,
        # capacity grows in these steps. The transposed layout attends over the whole
        # capacity (smaller steps waste less attention work), but a growth copies every row
        # (~30 ms at 32 rows x 200 tokens): 16-token steps were slower than 64 (mean step
        # 84-92 vs 75-84 ms at 32 streams x 256 tokens, measured alternately)
        block: int = 64,
    ) -> None:
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.max_bytes = max_bytes
        self.block = block
        self.rows = 0
        self.cap = 0
        self.transposed = False
        self.key_dtype = dtype
        self.k = torch.empty(0, dtype=dtype, device=device)
        self.v = torch.empty(0, dtype=dtype, device=device)
        self.owner: list[int] = []  # row -> seq_no
        self.filled: list[int] = []  # row -> tokens valid in the row
        self.row_of: dict[int, int] = {}  # seq_no -> row

    def set_layout(self, transposed: bool) -> None:
        if transposed == self.transposed:
            return
        self.clear()
        self.transposed = transposed
        self.key_dtype = torch.float32 if transposed else self.dtype
        self.rows = self.cap = 0
        self.k = torch.empty(0, dtype=self.key_dtype, device=self.device)
        self.v = torch.empty(0, dtype=self.dtype, device=self.device)

    def bytes_for(self, rows: int, cap: int) -> int:
        c = self.cfg
        elt = torch.empty((), dtype=self.dtype).element_size()
        kelt = torch.empty((), dtype=self.key_dtype).element_size()
        return c.n_layers * rows * c.n_kv_heads * cap * c.head_dim * (elt + kelt)

    def fits(self, rows: int, length: int) -> bool:
        cap = -(-length // self.block) * self.block
        return self.bytes_for(max(rows, self.rows), max(cap, self.cap)) <= self.max_bytes

    def _resize(self, rows: int, cap: int) -> None:
        c = self.cfg
        shape = (c.n_layers, rows, c.n_kv_heads, cap, c.head_dim)
        kshape = (c.n_layers, rows, c.n_kv_heads, c.head_dim, cap) if self.transposed else shape
        k = torch.zeros(kshape, dtype=self.key_dtype, device=self.device)
        v = torch.zeros(shape, dtype=self.dtype, device=self.device)
        n = len(self.owner)
        if n and self.cap:
            keep = min(self.cap, cap)
            if self.transposed:
                k[:, :n, :, :, :keep] = self.k[:, :n, :, :, :keep]
            else:
                k[:, :n, :, :keep] = self.k[:, :n, :, :keep]
            v[:, :n, :, :keep] = self.v[:, :n, :, :keep]
        self.k, self.v, self.rows, self.cap = k, v, rows, cap

    def release_except(self, keep: set[int]) -> None:
        """Free rows of sequences not in `keep`, moving the last rows into the holes."""
        i = 0
        while i < len(self.owner):
            if self.owner[i] in keep:
                i += 1
                continue
            last = len(self.owner) - 1
            del self.row_of[self.owner[i]]
            if i != last:
                self.k[:, i] = self.k[:, last]
                self.v[:, i] = self.v[:, last]
                self.owner[i] = self.owner[last]
                self.filled[i] = self.filled[last]
                self.row_of[self.owner[i]] = i
            self.owner.pop()
            self.filled.pop()

    def clear(self) -> None:
        self.owner.clear()
        self.filled.clear()
        self.row_of.clear()

    def prepare(
        self,
        seqs: list[tuple[int, int, Any]],
        pages: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[int]:
        """seqs: (seq_no, tokens already computed, object whose get() gives the slots of those
        tokens). Assigns rows,
        refills stale rows from `pages` ([n_layers, 2 nkv, slots, hd]; with `decode`, the
        compressed cache's codes, which `decode` turns into that layout); returns the rows."""
        need_rows = len(self.owner) + sum(1 for s, _, _ in seqs if s not in self.row_of)
        need_cap = max(n for _, n, _ in seqs) + 1
        target = -(-need_cap // self.block) * self.block
        if need_rows > self.rows or need_cap > self.cap:
            rows = max(need_rows, self.rows, 8)
            rows = -(-rows // 8) * 8
            self._resize(rows, max(self.cap, target))
        elif self.transposed and target + self.block <= self.cap:
            # the transposed layout attends over the whole capacity: shrink it back once the
            # long sequences are gone (all remaining rows fit in `target`)
            self._resize(self.rows, target)
        nkv = self.cfg.n_kv_heads
        out = []
        for seq_no, n, slots in seqs:
            r = self.row_of.get(seq_no)
            if r is None:
                r = len(self.owner)
                self.owner.append(seq_no)
                self.filled.append(0)
                self.row_of[seq_no] = r
            if self.filled[r] != n:
                if n:
                    g = torch.index_select(pages, 2, slots.get())  # [L, 2 nkv, n, hd]
                    if decode is not None:
                        g = decode(g)
                    if self.transposed:
                        self.k[:, r, :, :, :n] = g[:, :nkv].transpose(-1, -2)
                    else:
                        self.k[:, r, :, :n] = g[:, :nkv]
                    self.v[:, r, :, :n] = g[:, nkv:]
                self.filled[r] = n
            out.append(r)
        return out

    def advance(self, rows: list[int]) -> None:
        for r in rows:
            self.filled[r] += 1
