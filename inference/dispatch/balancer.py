"""Replica choice: consistent hashing with bounded load (Mirrokni et al., 2018).

The request's affinity key (tenant salt + the first prompt tokens) picks a point on a ring
of virtual nodes; the first replica clockwise whose load is below the bound
ceil(c * (total + 1) / n) takes it. The same tenant and prefix land on the replica that
already holds the prefix in its KV cache, and no replica gets more than c times the mean.
Without affinity the least-loaded replica (relative to capacity) wins.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

AFFINITY_PREFIX_TOKENS = 256  # the prefix that identifies a shared system prompt
VIRTUAL_NODES = 64


@dataclass(frozen=True)
class Candidate:
    name: str  # unique replica id
    load: int  # requests in flight
    capacity: int


def affinity_key(salt: bytes, token_ids: Sequence[int], prefix_tokens: int = AFFINITY_PREFIX_TOKENS) -> int:
    h = hashlib.blake2b(salt, digest_size=8)
    h.update(b"\x00".join(str(t).encode() for t in token_ids[:prefix_tokens]))
    return int.from_bytes(h.digest(), "big")


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """The ring of virtual nodes of a fixed set of replica names (rebuilt when it changes)."""

    def __init__(self, names: Sequence[str], virtual_nodes: int = VIRTUAL_NODES) -> None:
        points = sorted((_point(f"{name}#{i}"), name) for name in names for i in range(virtual_nodes))
        self._keys = [p for p, _ in points]
        self._names = [n for _, n in points]
        self.names = tuple(sorted(set(names)))

    def walk(self, key: int) -> list[str]:
        """Distinct replica names in ring order, starting clockwise from `key`."""
        if not self._keys:
            return []
        start = bisect.bisect_left(self._keys, key)
        seen: dict[str, None] = {}
        for i in range(len(self._keys)):
            name = self._names[(start + i) % len(self._keys)]
            if name not in seen:
                seen[name] = None
                if len(seen) == len(self.names):
                    break
        return list(seen)


def order_by_affinity(
    ring: HashRing, key: int, candidates: Sequence[Candidate], c: float = 1.25
) -> list[str]:
    """Candidates in the order to try: ring order from the key, those over the load bound
    (or at capacity) moved behind, least loaded first among them."""
    by_name = {cand.name: cand for cand in candidates}
    total = sum(cand.load for cand in candidates)
    bound = math.ceil(c * (total + 1) / max(1, len(candidates)))
    ordered = [n for n in ring.walk(key) if n in by_name]
    ordered += [n for n in by_name if n not in ordered]  # not on the ring (rebuilt lazily)
    fits = [n for n in ordered if by_name[n].load < min(bound, by_name[n].capacity)]
    rest = sorted((n for n in ordered if n not in fits), key=lambda n: _utilisation(by_name[n]))
    return fits + rest


def order_by_load(candidates: Sequence[Candidate]) -> list[str]:
    """Least utilised first; ties broken at random so that idle replicas share the traffic."""
    return [c.name for c in sorted(candidates, key=lambda c: (_utilisation(c), random.random()))]


def _utilisation(c: Candidate) -> float:
    return c.load / max(1, c.capacity)
