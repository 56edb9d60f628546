"""Active health checks: what one probe's outcome does to a replica's state.

A replica is marked down at once when it answers that it is not ready or refuses the
connection, but only after several unanswered probes in a row (under load a busy replica can
miss one 2 s probe; marking the only replica of a pool down for a whole interval turned a slow
probe into a burst of 503s in the 64-client load test). A probe that finds every connection in
use by requests is no failure at all.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from inference.dispatch import Dispatcher
from inference.dispatch.backend import Health, probe_failed
from inference.dispatch.http_client import ConnectError, PoolTimeout, ReadTimeout
from inference.dispatch.types import PoolConfig, ReplicaSpec


class ScriptedProbe:
    """A backend whose health() returns (or raises) the scripted outcomes in order."""

    kind = "vllm"

    def __init__(self) -> None:
        self.outcomes: deque[Health | Exception | None] = deque()

    async def health(self) -> Health:
        outcome = self.outcomes.popleft()
        if outcome is None:  # hang past the dispatcher's probe timeout
            await asyncio.sleep(10)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, Health)
        return outcome

    def generate(self, request):  # pragma: no cover - not used here
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def one_replica(unhealthy_after: int = 2) -> tuple[Dispatcher, ScriptedProbe]:
    backend = ScriptedProbe()
    dispatcher = Dispatcher(
        lambda pool, spec: backend, health_timeout_s=0.05, unhealthy_after=unhealthy_after
    )
    await dispatcher.configure([PoolConfig("p", "vllm", replicas=(ReplicaSpec("http://127.0.0.1:9/v1"),))])
    return dispatcher, backend


def healthy(dispatcher: Dispatcher) -> bool:
    (state,) = dispatcher.snapshot()
    return bool(state["healthy"])


async def probe(dispatcher: Dispatcher, backend: ScriptedProbe, *outcomes: Health | Exception | None) -> bool:
    for outcome in outcomes:
        backend.outcomes.append(outcome)
        await dispatcher.check_health()
    return healthy(dispatcher)


UNANSWERED = Health(ok=False, detail="ReadTimeout", answered=False)


async def test_one_unanswered_probe_is_no_verdict_two_in_a_row_are() -> None:
    dispatcher, backend = await one_replica()
    assert await probe(dispatcher, backend, UNANSWERED)
    assert await probe(dispatcher, backend, Health(ok=True))  # the count starts again
    assert await probe(dispatcher, backend, UNANSWERED)
    assert not await probe(dispatcher, backend, UNANSWERED)
    assert "2 unanswered in a row" in dispatcher.snapshot()[0]["detail"]
    assert await probe(dispatcher, backend, Health(ok=True))  # back on the first answer


async def test_a_probe_that_hangs_or_raises_counts_as_unanswered() -> None:
    dispatcher, backend = await one_replica()
    assert await probe(dispatcher, backend, None)  # timed out by the dispatcher
    assert not await probe(dispatcher, backend, RuntimeError("boom"))


async def test_a_replica_that_answers_not_ready_is_down_at_once() -> None:
    dispatcher, backend = await one_replica()
    assert not await probe(dispatcher, backend, Health(ok=False, detail="HTTP 503"))


@pytest.mark.parametrize("after", [1, 3])
async def test_the_threshold_is_configurable(after: int) -> None:
    dispatcher, backend = await one_replica(unhealthy_after=after)
    for _ in range(after - 1):
        assert await probe(dispatcher, backend, UNANSWERED)
    assert not await probe(dispatcher, backend, UNANSWERED)


def test_what_a_failed_probe_request_means() -> None:
    refused = probe_failed(ConnectError("ConnectionRefusedError"))
    assert not refused.ok and refused.answered  # nothing listens: down at once
    busy = probe_failed(PoolTimeout("no free connection"))
    assert busy.ok and busy.answered  # every connection serving a request
    slow = probe_failed(ReadTimeout("no answer within 2 s"))
    assert not slow.ok and not slow.answered
