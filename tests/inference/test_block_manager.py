"""Block manager and prefix-cache hashing, without the model."""

import pytest

from inference.block_manager import BlockManager, BlockTable, NoFreeBlocksError, block_hash


def alloc(bm: BlockManager, tokens: list[int], salt: bytes = b"") -> tuple[BlockTable, int]:
    t = BlockTable()
    hit = bm.allocate_prefix(t, tokens, salt)
    bm.reserve(t, len(tokens))
    return t, hit


def test_hash_is_chained_and_salted():
    a = block_hash(None, [1, 2, 3, 4], b"")
    assert a == block_hash(None, [1, 2, 3, 4], b"")
    assert a != block_hash(None, [1, 2, 3, 4], b"tenant-b")
    assert a != block_hash(a, [1, 2, 3, 4], b"")
    assert a != block_hash(None, [1, 2, 3, 5], b"")


def test_allocate_reserve_free_counts():
    bm = BlockManager(8, 4)
    t, hit = alloc(bm, list(range(10)))
    assert hit == 0 and len(t.blocks) == 3 and bm.num_free_blocks == 5
    bm.reserve(t, 12)
    assert len(t.blocks) == 3
    bm.reserve(t, 13)
    assert len(t.blocks) == 4
    with pytest.raises(NoFreeBlocksError):
        bm.reserve(t, 100)
    assert len(t.blocks) == 4  # unchanged after a failed reserve
    bm.free_table(t)
    assert bm.num_free_blocks == 8
    bm.check_invariants()


def test_prefix_hit_after_commit_never_covers_last_token():
    bm = BlockManager(16, 4)
    toks = list(range(12))  # exactly 3 full blocks
    t, hit = alloc(bm, toks)
    bm.commit(t, toks, 12, b"")
    bm.free_table(t)
    t2, hit2 = alloc(bm, toks)
    assert hit2 == 8  # the block holding the last token is recomputed
    t3, hit3 = alloc(bm, toks + [99])
    assert hit3 == 12
    bm.check_invariants()


def test_salt_isolates_tenants_and_shorter_than_block_never_hits():
    bm = BlockManager(16, 4)
    toks = list(range(9))
    t, _ = alloc(bm, toks, b"A")
    bm.commit(t, toks, 9, b"A")
    _, hit_b = alloc(bm, toks, b"B")
    _, hit_a = alloc(bm, toks, b"A")
    assert hit_b == 0 and hit_a == 8
    _, short = alloc(bm, [0, 1, 2], b"A")
    assert short == 0


def test_ref_counts_shared_blocks():
    bm = BlockManager(16, 4)
    toks = list(range(9))
    t1, _ = alloc(bm, toks)
    bm.commit(t1, toks, 9, b"")
    t2, hit = alloc(bm, toks)
    assert hit == 8
    assert t1.blocks[:2] == t2.blocks[:2]
    assert bm.blocks[t1.blocks[0]].ref_count == 2
    bm.free_table(t1)
    assert bm.blocks[t2.blocks[0]].ref_count == 1
    bm.free_table(t2)
    assert bm.num_free_blocks == 16
    bm.check_invariants()


def test_lru_eviction_prefers_uncached_then_oldest():
    bm = BlockManager(4, 2)
    a = [1, 2, 3, 4, 5]
    t, _ = alloc(bm, a)  # 3 blocks
    bm.commit(t, a, 5, b"")
    bm.free_table(t)  # two cached blocks + one uncached (partial) block free
    assert len(bm.cached) == 2
    t2 = BlockTable()
    bm.reserve(t2, 4)  # takes the uncached free block and the 4th (never used) first
    assert len(bm.cached) == 2
    hits, _ = bm.match_prefix(a, b"")  # both cached blocks still there
    assert len(hits) == 2
    bm.check_invariants()


def test_eviction_under_pressure_drops_cache_entries():
    bm = BlockManager(3, 2)
    a = [1, 2, 3, 4, 5]
    t, _ = alloc(bm, a)
    bm.commit(t, a, 5, b"")
    bm.free_table(t)
    t2, _ = alloc(bm, [9, 9, 9, 9, 9, 9])  # needs all 3 blocks: evicts the cached ones
    assert bm.cached == {}
    bm.free_table(t2)
    _, hit = alloc(bm, a)
    assert hit == 0
    bm.check_invariants()


def test_hash_collision_is_checked_against_token_ids():
    bm = BlockManager(8, 2)
    a = [1, 2, 3]
    t, _ = alloc(bm, a)
    bm.commit(t, a, 3, b"")
    # corrupt the stored tokens: a hash hit must still compare token ids
    bm.blocks[t.blocks[0]].token_ids = (7, 7)
    _, hit = alloc(bm, a)
    assert hit == 0
