"""A replica's capacity is a hard limit (requests wait for a slot, then get a clear
NoReplicaError, and a full replica is no breaker failure); a stream cut after its
finish_reason is a complete answer with estimated usage, not an error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from inference.dispatch import Dispatcher, Placement, PoolConfig, ReplicaSpec, UpstreamBackend
from inference.dispatch.backend import Backend
from inference.errors import NoReplicaError
from inference.types import Finished
from tests.dispatch.conftest import dispatch_request, words
from tests.dispatch.fake_upstream import FakeUpstream, Fault


def _backend(pool: PoolConfig, spec: ReplicaSpec) -> Backend:
    return UpstreamBackend(pool.backend, spec.url, encode=words, first_token_timeout_s=5.0)


async def _dispatcher(up: FakeUpstream, capacity: int, queue_timeout_s: float) -> Dispatcher:
    d = Dispatcher(_backend, queue_timeout_s=queue_timeout_s)
    await d.configure([PoolConfig("p", "vllm", replicas=(ReplicaSpec(up.base_url, capacity),))])
    return d


async def _answer(d: Dispatcher, placement: Placement | None = None) -> list[object]:
    return [e async for e in d.generate(dispatch_request(), ["p"], placement or Placement())]


async def test_requests_over_capacity_wait_for_a_slot(upstreams: Callable[..., FakeUpstream]) -> None:
    up = upstreams("vllm", instance=10)
    up.reset()
    up.always = Fault("slow_first_chunk", delay_s=0.3)
    d = await _dispatcher(up, capacity=1, queue_timeout_s=5.0)
    try:
        answers = await asyncio.gather(*(_answer(d) for _ in range(3)))
        assert all(isinstance(a[-1], Finished) for a in answers)
        # Never more than one at a time on the replica, and nothing counted against it.
        assert up.max_concurrent == 1
        state = d.snapshot()[0]
        assert state["breaker"] == "closed" and state["failed"] == 0 and state["in_flight"] == 0
    finally:
        await d.stop()


async def test_a_full_pool_past_the_queue_timeout_is_a_clear_503_cause(
    upstreams: Callable[..., FakeUpstream],
) -> None:
    up = upstreams("vllm", instance=11)
    up.reset()
    up.always = Fault("slow_first_chunk", delay_s=1.0)
    d = await _dispatcher(up, capacity=1, queue_timeout_s=0.2)
    try:
        first = asyncio.create_task(_answer(d))
        await asyncio.sleep(0.1)
        placement = Placement()
        with pytest.raises(NoReplicaError) as err:
            await _answer(d, placement)
        assert "at capacity" in str(err.value) and up.base_url not in str(err.value)
        assert isinstance((await first)[-1], Finished)
        assert d.snapshot()[0]["breaker"] == "closed"
    finally:
        await d.stop()


async def test_a_stream_cut_after_its_finish_reason_is_complete(
    upstreams: Callable[..., FakeUpstream],
) -> None:
    up = upstreams("vllm", instance=12)
    up.reset()
    up.always = Fault("drop", after_words=10**6)  # every word and the finish_reason, then a drop
    d = await _dispatcher(up, capacity=4, queue_timeout_s=1.0)
    try:
        events = await _answer(d)
        finished = events[-1]
        assert isinstance(finished, Finished) and finished.usage_source == "estimated"
        assert finished.usage.completion_tokens == sum(len(e.token_ids) for e in events[:-1])  # type: ignore[attr-defined]
    finally:
        await d.stop()
