"""The dispatcher over two (or three) fake upstream replicas: failures before the first token
go to another replica, failures after it end the stream and are never retried, a refusal is
not retried, and a replica that keeps failing has its circuit opened."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

import pytest

from inference.dispatch import Dispatcher, Placement, PoolConfig, ReplicaSpec, UpstreamBackend
from inference.dispatch.backend import Backend
from inference.dispatch.types import DispatchRequest
from inference.errors import NoReplicaError, ReplicaError, StreamInterruptedError
from inference.types import Finished, TokenDelta
from tests.dispatch.conftest import dispatch_request, words
from tests.dispatch.fake_upstream import DEFAULT_ANSWER, FakeUpstream, Fault

TIMEOUT_S = 0.4  # the first-token timeout of these tests' replicas


@pytest.fixture(scope="module")
def fleet(upstreams: Callable[..., FakeUpstream]) -> list[FakeUpstream]:
    return [upstreams("vllm", instance=i) for i in range(3)]


@pytest.fixture
async def pool(fleet: list[FakeUpstream]) -> AsyncIterator[tuple[Dispatcher, dict[str, FakeUpstream]]]:
    """A dispatcher over a pool of the first two fake replicas (the third is spare)."""
    for up in fleet:
        up.reset()
    dispatcher = Dispatcher(make_backend, max_attempts=3, affinity=True)
    await dispatcher.configure([pool_of(fleet[:2])])
    yield dispatcher, {replica_id(up): up for up in fleet[:2]}
    await dispatcher.stop()


def make_backend(pool: PoolConfig, spec: ReplicaSpec) -> Backend:
    return UpstreamBackend(pool.backend, spec.url, encode=words, first_token_timeout_s=TIMEOUT_S)


def pool_of(ups: list[FakeUpstream], name: str = "vllm-pool") -> PoolConfig:
    return PoolConfig(
        name=name,
        backend="vllm",
        variants=("flash",),
        replicas=tuple(ReplicaSpec(u.base_url, 8) for u in ups),
    )


def replica_id(up: FakeUpstream, pool: str = "vllm-pool") -> str:
    return f"{pool}/{up.base_url}"


async def drain(
    dispatcher: Dispatcher,
    request: DispatchRequest,
    placement: Placement,
    pools: tuple[str, ...] = ("vllm-pool",),
) -> tuple[list[TokenDelta], list[Finished]]:
    deltas: list[TokenDelta] = []
    done: list[Finished] = []
    async for event in dispatcher.generate(request, pools, placement):
        (deltas if isinstance(event, TokenDelta) else done).append(event)  # type: ignore[arg-type]
    return deltas, done


async def first_choice(
    dispatcher: Dispatcher, ups: dict[str, FakeUpstream], request: DispatchRequest
) -> FakeUpstream:
    """The replica affinity sends this request to (a clean request, then forget it)."""
    placement = Placement()
    await drain(dispatcher, request, placement)
    assert placement.replica is not None and not placement.failures
    for up in ups.values():
        up.received.clear()
    return ups[placement.replica]


BEFORE_HEADERS = [
    pytest.param(Fault("status", status=500), id="http-500"),
    pytest.param(Fault("status", status=503), id="http-503"),
    pytest.param(Fault("status", status=429), id="http-429"),
    pytest.param(Fault("slow_headers", delay_s=TIMEOUT_S * 3), id="slow-headers"),
]
IN_STREAM = [
    pytest.param(Fault("slow_first_chunk", delay_s=TIMEOUT_S * 3), id="slow-first-token"),
    pytest.param(Fault("drop", after_words=0), id="dropped-before-first-token"),
    pytest.param(Fault("error_chunk", after_words=0), id="error-chunk-before-first-token"),
]
CASES = [
    *(pytest.param(*p.values, True, id=f"{p.id}-stream") for p in BEFORE_HEADERS + IN_STREAM),
    *(pytest.param(*p.values, False, id=f"{p.id}-whole") for p in BEFORE_HEADERS + IN_STREAM),
]


@pytest.mark.parametrize(("fault", "stream"), CASES)
async def test_a_failure_before_the_first_token_goes_to_another_replica(
    pool, fault: Fault, stream: bool
) -> None:
    dispatcher, ups = pool
    request = dispatch_request(stream=stream)
    first = await first_choice(dispatcher, ups, request)
    first.script(fault)
    placement = Placement()
    deltas, done = await drain(dispatcher, request, placement)
    other = next(u for u in ups.values() if u is not first)
    assert "".join(d.text for d in deltas) == DEFAULT_ANSWER and len(done) == 1
    assert placement.replica == replica_id(other) and placement.first_token
    assert len(placement.failures) == 1 and placement.failures[0].startswith(replica_id(first))
    assert len(first.chat_requests()) == 1 and len(other.chat_requests()) == 1
    assert done[0].usage.completion_tokens == len(DEFAULT_ANSWER.split())  # billed once: the answer served


@pytest.mark.parametrize(
    "fault", [Fault("drop", after_words=2), Fault("error_chunk", after_words=2)], ids=["drop", "error-chunk"]
)
async def test_a_failure_after_the_first_token_is_never_retried(pool, fault: Fault) -> None:
    dispatcher, ups = pool
    request = dispatch_request()
    first = await first_choice(dispatcher, ups, request)
    first.script(fault)
    placement = Placement()
    got: list[TokenDelta | Finished] = []
    with pytest.raises(StreamInterruptedError):
        async for event in dispatcher.generate(request, ("vllm-pool",), placement):
            got.append(event)
    assert [e.text for e in got if isinstance(e, TokenDelta)] == ["The", " capital"]  # what was delivered
    assert len(got) == 2  # and no Finished
    assert placement.first_token and placement.replica == replica_id(first)
    assert sum(len(u.chat_requests()) for u in ups.values()) == 1  # nobody else was asked


async def test_a_refusal_is_not_retried(pool) -> None:
    dispatcher, ups = pool
    request = dispatch_request()
    first = await first_choice(dispatcher, ups, request)
    first.script(Fault("status", status=400, message="This model's maximum context length is 8 tokens"))
    placement = Placement()
    with pytest.raises(ReplicaError) as err:
        await drain(dispatcher, request, placement)
    assert not err.value.retryable and err.value.status == 400 and "maximum context length" in str(err.value)
    assert sum(len(u.chat_requests()) for u in ups.values()) == 1
    state = {r["url"]: r["breaker"] for r in dispatcher.snapshot()}
    assert state[first.base_url] == "closed"  # the request's fault, not the replica's


async def test_every_replica_failing_is_no_replica_naming_each(pool) -> None:
    dispatcher, ups = pool
    for up in ups.values():
        up.always = Fault("status", status=503)
    placement = Placement()
    with pytest.raises(NoReplicaError) as err:
        await drain(dispatcher, dispatch_request(), placement)
    # The operator's record names each replica; the client's message names only the pool.
    assert len(placement.failures) == 2
    assert "vllm-pool" in str(err.value) and "2 replica(s) failed" in str(err.value)
    for up in list(ups.values())[:2]:
        assert any(up.base_url in f for f in placement.failures) and len(up.chat_requests()) == 1
        assert up.base_url not in str(err.value)


async def test_attempts_are_bounded(fleet: list[FakeUpstream]) -> None:
    for up in fleet:
        up.reset()
        up.always = Fault("status", status=500)
    dispatcher = Dispatcher(make_backend, max_attempts=2)
    await dispatcher.configure([pool_of(fleet)])
    try:
        with pytest.raises(NoReplicaError):
            await drain(dispatcher, dispatch_request(), Placement())
    finally:
        await dispatcher.stop()
    assert sum(len(u.chat_requests()) for u in fleet) == 2


async def test_the_circuit_opens_after_repeated_failures(pool) -> None:
    dispatcher, ups = pool
    request = dispatch_request()
    first = await first_choice(dispatcher, ups, request)
    first.always = Fault("status", status=500)
    for _ in range(3):  # threshold: three failures in a row; each request is still served
        placement = Placement()
        await drain(dispatcher, request, placement)
        assert len(placement.failures) == 1
    state = {r["url"]: r["breaker"] for r in dispatcher.snapshot()}
    assert state[first.base_url] == "open"
    placement = Placement()
    await drain(dispatcher, request, placement)
    assert not placement.failures and len(first.chat_requests()) == 3  # not asked while open


async def test_only_the_pools_given_are_used(pool, fleet: list[FakeUpstream]) -> None:
    dispatcher, ups = pool
    await dispatcher.configure([pool_of(fleet[:2]), pool_of(fleet[2:], name="other-pool")])
    with pytest.raises(NoReplicaError):
        await drain(dispatcher, dispatch_request(), Placement(), pools=("nope",))
    with pytest.raises(NoReplicaError):  # the pool serves flash only
        await drain(dispatcher, dispatch_request(variant="pro"), Placement())
    placement = Placement()
    await drain(dispatcher, dispatch_request(), placement, pools=("other-pool",))
    assert placement.pool == "other-pool" and placement.replica == replica_id(fleet[2], "other-pool")
    assert len(fleet[0].chat_requests()) == len(fleet[1].chat_requests()) == 0


async def test_an_unhealthy_replica_gets_no_traffic(pool) -> None:
    dispatcher, ups = pool
    request = dispatch_request()
    first = await first_choice(dispatcher, ups, request)
    first.healthy = False
    await dispatcher.check_health()
    placement = Placement()
    await drain(dispatcher, request, placement)
    assert placement.replica != replica_id(first) and not first.chat_requests()
    first.healthy = True
    await dispatcher.check_health()
    placement = Placement()
    await drain(dispatcher, request, placement)
    assert placement.replica == replica_id(first)  # back, and affinity returns to it


async def test_the_same_tenant_and_prefix_stay_on_the_replica_that_holds_it(
    fleet: list[FakeUpstream],
) -> None:
    for up in fleet:
        up.reset()
    dispatcher = Dispatcher(make_backend, affinity=True)
    await dispatcher.configure([pool_of(fleet)])
    used: set[str] = set()
    try:
        for t in range(12):
            request = dispatch_request(salt=f"tenant-{t}")
            first, second = Placement(), Placement()
            await drain(dispatcher, request, first)
            _, done = await drain(dispatcher, request, second)
            assert first.replica == second.replica
            assert done[0].usage.prompt_cache_hit_tokens > 0  # that replica held the prefix
            used.add(str(first.replica))
    finally:
        await dispatcher.stop()
    assert len(used) > 1  # tenants spread over the replicas


async def test_a_long_streamed_answer_is_not_a_timeout(pool) -> None:
    """The timeout is for the first token: a stream whose tokens keep coming is served even
    when the whole answer takes longer than the timeout."""
    dispatcher, ups = pool
    request = dispatch_request()
    first = await first_choice(dispatcher, ups, request)
    first.script(Fault("slow_words", delay_s=TIMEOUT_S / 3))  # 6 words: 2x the timeout in all
    placement = Placement()
    deltas, done = await drain(dispatcher, request, placement)
    assert "".join(d.text for d in deltas) == DEFAULT_ANSWER and not placement.failures
    assert placement.replica == replica_id(first)


async def test_a_long_whole_answer_is_not_a_timeout_either(pool) -> None:
    """A client awaiting one JSON answer: the upstream is still asked for a stream, so the
    timeout is still the first token's (a JSON upstream answer arrives only when the whole
    generation is done: a long one was taken for a dead replica and generated again)."""
    dispatcher, ups = pool
    request = dispatch_request(stream=False)
    first = await first_choice(dispatcher, ups, request)
    first.script(Fault("slow_words", delay_s=TIMEOUT_S / 3))
    placement = Placement()
    deltas, _ = await drain(dispatcher, request, placement)
    assert "".join(d.text for d in deltas) == DEFAULT_ANSWER and not placement.failures
    assert first.chat_requests()[0].body["stream"] is True
    assert sum(len(u.chat_requests()) for u in ups.values()) == 1


@pytest.mark.parametrize(
    "fault", [Fault("drop", after_words=2), Fault("error_chunk", after_words=2)], ids=["drop", "error-chunk"]
)
async def test_a_whole_answer_is_retried_mid_answer(pool, fault: Fault) -> None:
    """Nothing of a held answer reached the client: a replica failing mid-answer is retried, and
    only the answer that completed is returned (and billed)."""
    dispatcher, ups = pool
    request = dispatch_request(stream=False)
    first = await first_choice(dispatcher, ups, request)
    first.script(fault)
    placement = Placement()
    deltas, done = await drain(dispatcher, request, placement)
    other = next(u for u in ups.values() if u is not first)
    assert "".join(d.text for d in deltas) == DEFAULT_ANSWER and len(done) == 1
    assert placement.replica == replica_id(other) and len(placement.failures) == 1
    assert done[0].usage.completion_tokens == len(DEFAULT_ANSWER.split())


async def test_a_hot_prefix_spills_over_at_the_load_bound(fleet: list[FakeUpstream]) -> None:
    """Many requests with one tenant and prefix at once: affinity keeps them together only up
    to the bound (1.25x the mean in flight), then they spill over to the next replica."""
    for up in fleet:
        up.reset()
        up.always = Fault("slow_words", delay_s=0.05)  # each answer stays in flight ~0.3 s
    dispatcher = Dispatcher(make_backend, affinity=True)
    await dispatcher.configure([pool_of(fleet[:2])])
    placements = [Placement() for _ in range(8)]
    try:
        await asyncio.gather(*(drain(dispatcher, dispatch_request(), p) for p in placements))
    finally:
        await dispatcher.stop()
    counts = [len(u.chat_requests()) for u in fleet[:2]]
    assert sum(counts) == 8 and min(counts) > 0
    assert max(counts) <= math.ceil(1.25 * 8 / 2)
    assert not any(p.failures for p in placements)
