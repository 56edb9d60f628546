"""Where a request runs: constraints -> healthy replicas -> affinity with bounded load ->
bounded retries before the first token reaches the client.

The caller (the gateway's service) passes the pools the decision and the tenant's compliance
profile allow; the dispatcher never widens that set. A replica that fails before the first
token is marked in its breaker and the request goes to the next one (at most
`max_attempts` replicas); after the first token nothing is retried, since the client already
holds part of that answer: the stream ends with StreamInterruptedError. A request whose
client waits for the whole answer (not streamed) is held here until it finished, so a replica
that dies mid-answer is retried like one that failed before its first token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from inference.dispatch import balancer
from inference.dispatch.backend import Backend, Health
from inference.dispatch.replica import Replica
from inference.dispatch.types import DispatchRequest, Placement, PoolConfig, ReplicaSpec
from inference.errors import NoReplicaError, ReplicaError, StreamInterruptedError
from inference.types import Finished, TokenDelta

log = logging.getLogger(__name__)

BackendFactory = Callable[[PoolConfig, ReplicaSpec], Backend]


class Dispatcher:
    def __init__(
        self,
        make_backend: BackendFactory,
        *,
        max_attempts: int = 3,
        affinity: bool = True,
        health_interval_s: float = 5.0,
        health_timeout_s: float = 2.0,
        unhealthy_after: int = 2,
        queue_timeout_s: float = 30.0,
    ) -> None:
        self.queue_timeout_s = queue_timeout_s
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._make_backend = make_backend
        self.max_attempts = max_attempts
        self.affinity = affinity
        self._health_interval = health_interval_s
        self._health_timeout = health_timeout_s
        self._unhealthy_after = max(1, unhealthy_after)
        self._replicas: dict[str, Replica] = {}
        self._pools: dict[str, PoolConfig] = {}
        self._rings: dict[tuple[str, ...], balancer.HashRing] = {}
        self._health_task: asyncio.Task[None] | None = None

    # -- configuration -----------------------------------------------------------------------

    async def configure(self, pools: Sequence[PoolConfig]) -> None:
        """Make the replica set match `pools`; replicas that stay keep their state."""
        wanted: dict[str, tuple[PoolConfig, ReplicaSpec]] = {}
        for pool in pools:
            for spec in pool.replicas:
                wanted[f"{pool.name}/{spec.url}"] = (pool, spec)
        for rid in list(self._replicas):
            old = self._replicas[rid]
            new = wanted.get(rid)
            if new is None or _backend_changed(old.pool, new[0]):
                del self._replicas[rid]
                await _close_quietly(old.backend)
        for rid, (pool, spec) in wanted.items():
            current = self._replicas.get(rid)
            if current is None:
                self._replicas[rid] = Replica(pool, spec, self._make_backend(pool, spec))
            else:
                current.pool, current.spec = pool, spec
        self._pools = {p.name: p for p in pools}
        self._rings.clear()

    def pools(self) -> list[PoolConfig]:
        return list(self._pools.values())

    def snapshot(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in sorted(self._replicas.values(), key=lambda r: r.id)]

    # -- health ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop())

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for replica in self._replicas.values():
            await _close_quietly(replica.backend)
        self._replicas.clear()

    async def check_health(self) -> None:
        replicas = list(self._replicas.values())
        await asyncio.gather(*(self._check(r) for r in replicas))

    async def _check(self, replica: Replica) -> None:
        try:
            health = await asyncio.wait_for(replica.backend.health(), self._health_timeout)
        except (TimeoutError, Exception) as exc:  # a probe must never stop the loop
            health = Health(ok=False, detail=f"health check failed: {type(exc).__name__}", answered=False)
        if not health.answered:
            # Unanswered probes mark a replica down only several in a row: under load one probe
            # can miss its 2 s, and a dead replica's requests already open its breaker.
            replica.probe_failures += 1
            replica.detail = f"{health.detail} ({replica.probe_failures} unanswered in a row)"
            if replica.healthy and replica.probe_failures >= self._unhealthy_after:
                log.warning("replica %s is unhealthy: %s", replica.id, replica.detail)
                replica.healthy = False
            return
        replica.probe_failures = 0
        if replica.healthy and not health.ok:
            log.warning("replica %s is unhealthy: %s", replica.id, health.detail)
        replica.healthy, replica.detail, replica.reported_load = health.ok, health.detail, health.load

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            await self.check_health()

    # -- dispatch ----------------------------------------------------------------------------

    def candidates(self, pools: Sequence[str], variant: str) -> list[Replica]:
        allowed = set(pools)
        return [
            r
            for r in self._replicas.values()
            if r.pool.name in allowed and r.pool.serves(variant) and r.spec.capacity > 0
        ]

    async def generate(
        self, request: DispatchRequest, pools: Sequence[str], placement: Placement
    ) -> AsyncIterator[TokenDelta | Finished]:
        replicas = self.candidates(pools, request.variant)
        if not replicas:
            raise NoReplicaError(
                f"no replica of the pools this request may use ({', '.join(pools) or 'none'}) "
                f"serves the {request.variant} variant",
                pools=tuple(pools),
            )
        key = balancer.affinity_key(request.generation.cache_salt, request.generation.prompt_token_ids)
        buffered = not request.stream  # the client waits for the whole answer: retry mid-answer too
        tried: set[str] = set()
        deadline = asyncio.get_running_loop().time() + self.queue_timeout_s
        while len(tried) < self.max_attempts:
            untried = [r for r in replicas if r.id not in tried]
            replica = self._choose(untried, key)
            if replica is None:
                full = [r for r in untried if r.usable() and r.in_flight >= r.spec.capacity]
                if full and await self._wait_for_slot(deadline):
                    continue  # a slot freed up: choose again (waiting is not an attempt)
                if full:
                    placement.failures.append(f"every replica at capacity for {self.queue_timeout_s:g} s")
                break
            tried.add(replica.id)
            placement.pool, placement.replica, placement.backend = (
                replica.pool.name,
                replica.id,
                replica.backend.kind,
            )
            replica.in_flight += 1
            held: list[TokenDelta | Finished] = []
            try:
                async with _closing(replica.backend.generate(request)) as events:
                    async for event in events:
                        if buffered:
                            held.append(event)
                            continue
                        placement.first_token = True
                        yield event
                replica.breaker.success()
                replica.served += 1
                if buffered:
                    placement.first_token = True
                    for event in held:
                        yield event
                return
            except ReplicaError as exc:
                if placement.first_token:  # a backend that breaks the contract: never retry then
                    replica.breaker.failure()
                    raise StreamInterruptedError(str(exc)) from exc
                placement.failures.append(f"{replica.id}: {exc}")
                if not exc.retryable:  # the upstream refused this request; another would too
                    replica.breaker.release_trial()
                    raise
                replica.breaker.failure()
                replica.failed += 1
                log.warning("replica %s failed before the first token, trying another: %s", replica.id, exc)
            except StreamInterruptedError as exc:
                replica.breaker.failure()
                replica.failed += 1
                if not buffered:
                    raise
                # Nothing reached the client yet: the whole answer comes from another replica,
                # and the tokens the failed one made are not billed.
                placement.failures.append(f"{replica.id}: {exc}")
                log.warning(
                    "replica %s failed mid-answer (not yet sent), trying another: %s", replica.id, exc
                )
            except BaseException:  # cancelled (client gone) or the request's own error
                replica.breaker.release_trial()
                raise
            finally:
                replica.in_flight -= 1
                self._release_slot()
        # Tenants see the pools and why in general terms; the replicas' addresses and errors
        # go to the log and the audit event (placement.failures).
        names = ", ".join(sorted({r.pool.name for r in replicas}))
        if placement.failures and placement.failures[-1].startswith("every replica at capacity"):
            why = "every replica is at capacity; retry later"
        elif placement.failures:
            why = f"{len(placement.failures)} replica(s) failed"
        else:
            why = "every replica is unhealthy or its circuit is open"
        log.warning("no replica could serve a request in %s: %s", names, "; ".join(placement.failures) or why)
        raise NoReplicaError(
            f"No replica of pool(s) {names} could serve the request: {why}.", pools=tuple(pools)
        )

    async def _wait_for_slot(self, deadline: float) -> bool:
        """Wait (first come, first served) until a request ends somewhere; False at the deadline."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        waiter: asyncio.Future[None] = loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)

    def _release_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _choose(self, replicas: list[Replica], key: int) -> Replica | None:
        # Capacity is a hard limit: a full replica is not chosen (the caller waits for a slot).
        usable = [r for r in replicas if r.usable() and r.in_flight < r.spec.capacity]
        if not usable:
            return None
        by_id = {r.id: r for r in usable}
        cands = [balancer.Candidate(r.id, r.in_flight, r.spec.capacity) for r in usable]
        if self.affinity:
            names = tuple(sorted(by_id))
            ring = self._rings.get(names)
            if ring is None:
                ring = self._rings[names] = balancer.HashRing(names)
            order = balancer.order_by_affinity(ring, key, cands)
        else:
            order = balancer.order_by_load(cands)
        for rid in order:
            if by_id[rid].breaker.allows():
                return by_id[rid]
        return None


@contextlib.asynccontextmanager
async def _closing(
    events: AsyncIterator[TokenDelta | Finished],
) -> AsyncIterator[AsyncIterator[TokenDelta | Finished]]:
    """Close the backend's stream however the loop ends: a client that went away must free
    the replica's sequence (and its HTTP connection) now, not when the generator is collected."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _backend_changed(old: PoolConfig, new: PoolConfig) -> bool:
    return (old.backend, old.api_key_env, old.models) != (new.backend, new.api_key_env, new.models)


async def _close_quietly(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception:  # closing a dead connection pool must not stop reconfiguration
        log.exception("closing a replica's backend failed")
