"""Consistent hashing with bounded load: the same (salt, prefix) lands on the same replica, no
replica goes over the bound, removing a replica moves only the keys it held."""

from __future__ import annotations

import math
import random

from inference.dispatch import balancer
from inference.dispatch.balancer import Candidate, HashRing, affinity_key, order_by_affinity, order_by_load

NAMES = [f"pool/http://10.0.0.{i}:8000/v1" for i in range(5)]


def keys(n: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [
        affinity_key(f"tenant-{rng.randrange(50)}".encode(), [rng.randrange(50_000) for _ in range(40)])
        for _ in range(n)
    ]


def test_the_key_is_the_salt_and_the_prefix() -> None:
    prefix = list(range(balancer.AFFINITY_PREFIX_TOKENS))
    a = affinity_key(b"tenant-a", prefix + [1, 2, 3])
    assert a == affinity_key(b"tenant-a", prefix + [9, 9])  # past the prefix: the same key
    assert a != affinity_key(b"tenant-b", prefix + [1, 2, 3])  # another tenant: another key
    assert a != affinity_key(b"tenant-a", [7, *prefix])
    # token ids are delimited: [1, 23] and [12, 3] are different prompts
    assert affinity_key(b"s", [1, 23]) != affinity_key(b"s", [12, 3])


def test_the_same_key_goes_to_the_same_replica() -> None:
    ring = HashRing(NAMES)
    idle = [Candidate(n, 0, 64) for n in NAMES]
    for key in keys(200):
        first = order_by_affinity(ring, key, idle)[0]
        assert first == order_by_affinity(HashRing(list(reversed(NAMES))), key, idle)[0]
        assert first == ring.walk(key)[0]
    owners = {order_by_affinity(ring, k, idle)[0] for k in keys(200)}
    assert owners == set(NAMES)  # and the keys spread over every replica


def test_no_replica_exceeds_the_bound() -> None:
    ring = HashRing(NAMES)
    load = dict.fromkeys(NAMES, 0)
    hot = affinity_key(b"one-tenant", list(range(300)))  # every request shares one prefix
    for step, key in enumerate([hot] * 300 + keys(700)):
        cands = [Candidate(n, load[n], 10_000) for n in NAMES]
        load[order_by_affinity(ring, key, cands, c=1.25)[0]] += 1
        total = step + 1
        assert max(load.values()) <= math.ceil(1.25 * total / len(NAMES)), (step, load)
    assert min(load.values()) > 0


def test_capacity_is_respected_before_the_bound() -> None:
    ring = HashRing(NAMES[:2])
    key = next(k for k in keys(100) if ring.walk(k)[0] == NAMES[0])
    cands = [Candidate(NAMES[0], 2, 2), Candidate(NAMES[1], 5, 64)]  # the owner is full
    assert order_by_affinity(ring, key, cands)[0] == NAMES[1]


def test_removing_a_replica_moves_only_its_keys() -> None:
    before = HashRing(NAMES)
    gone = NAMES[2]
    after = HashRing([n for n in NAMES if n != gone])
    sample = keys(3000)
    moved = 0
    for key in sample:
        old, new = before.walk(key)[0], after.walk(key)[0]
        if old != gone:
            assert new == old
        else:
            moved += 1
            assert new == before.walk(key)[1]  # to the next replica clockwise
    assert 0.1 < moved / len(sample) < 0.35  # about a fifth of the keys were its own


def test_without_affinity_the_least_utilised_wins() -> None:
    cands = [Candidate("a", 30, 64), Candidate("b", 3, 4), Candidate("c", 10, 64)]
    assert order_by_load(cands) == ["c", "a", "b"]
