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
