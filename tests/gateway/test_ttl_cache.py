import asyncio

import pytest

from gateway.ttl_cache import TtlCache


async def test_entries_expire_and_can_be_forgotten() -> None:
    now = [0.0]
    loads: list[str] = []
    cache: TtlCache[str, int] = TtlCache(2.0, clock=lambda: now[0])

    async def load(key: str) -> int:
        loads.append(key)
        return len(loads)

    assert await cache.get("a", lambda: load("a")) == 1
    now[0] = 1.9
    assert await cache.get("a", lambda: load("a")) == 1  # still fresh
    now[0] = 2.0
    assert await cache.get("a", lambda: load("a")) == 2  # expired: loaded again
    await cache.get("b", lambda: load("b"))
    cache.forget(lambda key: key == "a")
    assert await cache.get("a", lambda: load("a")) == 4
    assert await cache.get("b", lambda: load("b")) == 3
    cache.forget()
    assert await cache.get("b", lambda: load("b")) == 5


async def test_concurrent_misses_share_one_load() -> None:
    loads = 0
    gate = asyncio.Event()
    cache: TtlCache[str, int] = TtlCache(2.0)

    async def load() -> int:
        nonlocal loads
        loads += 1
        await gate.wait()
        return loads

    waiters = [asyncio.create_task(cache.get("a", load)) for _ in range(16)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 16
    assert loads == 1
    assert await cache.get("a", load) == 1  # stored


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    gate = asyncio.Event()
    cache: TtlCache[str, str] = TtlCache(2.0)

    async def load() -> str:
        await gate.wait()
        return "value"

    first = asyncio.create_task(cache.get("a", load))
    second = asyncio.create_task(cache.get("a", load))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await second == "value"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_load_reaches_every_waiter_and_is_not_stored() -> None:
    calls = 0
    gate = asyncio.Event()
    cache: TtlCache[str, int] = TtlCache(2.0)

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("no such key")

    waiters = [asyncio.create_task(cache.get("a", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results) and calls == 1

    async def ok() -> int:
        return 7

    assert await cache.get("a", ok) == 7  # the failure was not remembered


async def test_a_load_in_flight_when_forgotten_is_not_stored() -> None:
    gate = asyncio.Event()
    cache: TtlCache[str, str] = TtlCache(2.0)

    async def old() -> str:
        await gate.wait()
        return "before the change"

    async def new() -> str:
        return "after the change"

    in_flight = asyncio.create_task(cache.get("a", old))
    await asyncio.sleep(0)
    cache.forget(lambda key: key == "a")
    after = await cache.get("a", new)  # does not join the load that predates the change
    gate.set()
    assert await in_flight == "before the change"
    assert after == "after the change"
    assert await cache.get("a", old) == "after the change"


async def test_a_database_outage_serves_the_last_value_within_the_stale_limit() -> None:
    from sqlalchemy.exc import OperationalError

    now = [0.0]
    calls: list[float] = []
    state = {"down": False}
    cache: TtlCache[str, int] = TtlCache(2.0, clock=lambda: now[0], stale_s=10.0)

    async def load() -> int:
        calls.append(now[0])
        if state["down"]:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError())
        return len(calls)

    assert await cache.get("k", load) == 1
    state["down"] = True
    now[0] = 3.0
    assert await cache.get("k", load) == 1  # stale: the database does not answer
    now[0] = 3.5
    assert await cache.get("k", load) == 1 and calls == [0.0, 3.0]  # no retry within a second
    now[0] = 4.1
    assert await cache.get("k", load) == 1 and calls[-1] == 4.1
    now[0] = 12.0  # read at 0.0: past ttl + stale_s
    with pytest.raises(OperationalError):
        await cache.get("k", load)
    state["down"] = False
    assert await cache.get("k", load) == len(calls)


async def test_other_errors_and_a_zero_stale_limit_are_not_hidden() -> None:
    from sqlalchemy.exc import OperationalError

    now = [0.0]
    fail: list[Exception] = []
    strict: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0], stale_s=0.0)
    lenient: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0], stale_s=60.0)

    async def load() -> int:
        if fail:
            raise fail[0]
        return 7

    assert await strict.get("k", load) == 7 and await lenient.get("k", load) == 7
    now[0] = 2.0
    fail.append(OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    with pytest.raises(OperationalError):
        await strict.get("k", load)
    fail[0] = ValueError("a bad row, not an outage")
    with pytest.raises(ValueError):
        await lenient.get("k", load)
