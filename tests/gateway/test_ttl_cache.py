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
