"""Paged KV-cache bookkeeping: fixed-size blocks, reference counts, an LRU free list and a
tenant-salted, chained-hash prefix cache. Plain Python: no tensors, testable alone.

A full block is reusable when its chained hash (parent hash + salt + token ids) matches and
its stored token ids equal the new ones. Freed blocks keep their hash and KV until the free
list hands them out again (least recently freed first), so a later request can still hit them.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


def block_hash(parent: bytes | None, token_ids: Sequence[int], salt: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(parent or b"\x00" * 16)
    h.update(len(salt).to_bytes(4, "little"))
    h.update(salt)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: bytes | None = None
    token_ids: tuple[int, ...] = ()


@dataclass
class BlockTable:
    """What one sequence holds: its block ids and the hash of its last full, hashed block."""

    blocks: list[int] = field(default_factory=list)
    num_hashed: int = 0  # leading blocks whose hash is registered
    last_hash: bytes | None = None


class NoFreeBlocksError(RuntimeError):
    pass


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_cache: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_prefix_cache = enable_prefix_cache
        self.blocks = [Block(i) for i in range(num_blocks)]
        # ref_count == 0 blocks, least recently freed first
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}  # hash -> block id

    # -- queries ---------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    def blocks_needed(self, table: BlockTable, num_tokens: int) -> int:
        """Extra blocks for `table` to hold `num_tokens` tokens in total."""
        need = -(-num_tokens // self.block_size)
        return max(0, need - len(table.blocks))

    def match_prefix(self, token_ids: Sequence[int], salt: bytes) -> tuple[list[int], bytes | None]:
        """Cached blocks for the longest prefix of `token_ids`, never covering the last token
        (the last prompt token is always computed so its logits exist). Takes no references."""
        if not self.enable_prefix_cache:
            return [], None
        bs = self.block_size
        hits: list[int] = []
        parent: bytes | None = None
        for b in range((len(token_ids) - 1) // bs):
            chunk = tuple(token_ids[b * bs : (b + 1) * bs])
            h = block_hash(parent, chunk, salt)
            bid = self.cached.get(h)
            if bid is None or self.blocks[bid].token_ids != chunk:
                break
            hits.append(bid)
            parent = h
        return hits, parent

    # -- mutation --------------------------------------------------------------------------
    def _take(self, bid: int) -> None:
        blk = self.blocks[bid]
        if blk.ref_count == 0:
            del self.free[bid]
        blk.ref_count += 1

    def _alloc_fresh(self) -> int:
        if not self.free:
            raise NoFreeBlocksError
        bid, _ = self.free.popitem(last=False)
        blk = self.blocks[bid]
        if blk.hash is not None:  # evict its cache entry
            if self.cached.get(blk.hash) == bid:
                del self.cached[blk.hash]
            blk.hash = None
            blk.token_ids = ()
        blk.ref_count = 1
        return bid

    def allocate_prefix(self, table: BlockTable, token_ids: Sequence[int], salt: bytes) -> int:
        """Attach cached prefix blocks to an empty table; returns the tokens reused."""
        assert not table.blocks
        hits, parent = self.match_prefix(token_ids, salt)
        for bid in hits:
            self._take(bid)
        table.blocks = list(hits)
        table.num_hashed = len(hits)
        table.last_hash = parent
        return len(hits) * self.block_size

    def can_allocate(self, n: int) -> bool:
        return n <= len(self.free)

    def reserve(self, table: BlockTable, num_tokens: int) -> None:
        """Grow `table` to hold `num_tokens` tokens; raises NoFreeBlocksError (no change)."""
        n = self.blocks_needed(table, num_tokens)
        if n > len(self.free):
            raise NoFreeBlocksError
        for _ in range(n):
            table.blocks.append(self._alloc_fresh())

    def commit(self, table: BlockTable, token_ids: Sequence[int], num_computed: int, salt: bytes):
        """Register the hashes of blocks that became full (their KV is now computed)."""
        if not self.enable_prefix_cache:
            return
        bs = self.block_size
        full = min(num_computed // bs, len(table.blocks))
        while table.num_hashed < full:
            i = table.num_hashed
            chunk = tuple(token_ids[i * bs : (i + 1) * bs])
            h = block_hash(table.last_hash, chunk, salt)
            blk = self.blocks[table.blocks[i]]
            if blk.hash is None:
                blk.hash = h
                blk.token_ids = chunk
                self.cached.setdefault(h, blk.block_id)
            table.last_hash = h
            table.num_hashed += 1

    def free_table(self, table: BlockTable) -> None:
        """Drop the table's references, tail first so its leaf blocks are evicted first."""
        for bid in reversed(table.blocks):
            blk = self.blocks[bid]
            blk.ref_count -= 1
            assert blk.ref_count >= 0
            if blk.ref_count == 0:
                if blk.hash is None:
                    self.free[bid] = None
                    self.free.move_to_end(bid, last=False)  # uncached: reuse first
                else:
                    self.free[bid] = None
        table.blocks = []
        table.num_hashed = 0
        table.last_hash = None

    def check_invariants(self) -> None:
        for blk in self.blocks:
            assert blk.ref_count >= 0
            assert (blk.ref_count == 0) == (blk.block_id in self.free), blk
        for h, bid in self.cached.items():
            assert self.blocks[bid].hash == h
