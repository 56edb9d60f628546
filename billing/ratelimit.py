"""Rate limits per API key and per tenant, in requests and tokens per minute.

The algorithm is GCRA (a leaky bucket stored as one "theoretical arrival time" per
limit): a limit of N per minute admits a burst of N and then one per 60/N seconds.
A check is all-or-nothing across every limit it names (key RPM/TPM, tenant RPM/TPM):
if one denies, nothing is consumed. `RedisRateLimiter` keeps the state in Redis and takes
time from the Redis server, so every gateway replica shares one limit (the limit does
not multiply with the replica count); `MemoryRateLimiter` is the one-process twin.

Tokens are charged at admission with an estimate (prompt tokens + max_tokens) and
corrected afterwards with `adjust_tokens(actual - estimate)`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from billing.redis_client import REDIS_OUTAGE, RedisUnavailableError, make_redis

log = logging.getLogger(__name__)

WINDOW_MS = 60_000.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limits of one key or tenant; None means unlimited."""

    scope: str  # "key" | "tenant"
    scope_id: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def items(self, tokens: int) -> list[tuple[str, str, int, int]]:
        """(state name, dimension, limit, quantity) for each configured dimension."""
        out = []
        if self.requests_per_minute:
            out.append((f"{self.scope}:{self.scope_id}:requests", "requests", self.requests_per_minute, 1))
        if self.tokens_per_minute:
            out.append((f"{self.scope}:{self.scope_id}:tokens", "tokens", self.tokens_per_minute, tokens))
        return out


@dataclass(frozen=True, slots=True)
class LimitState:
    dimension: str  # requests | tokens
    scope: str
    scope_id: str
    limit: int
    remaining: int
    reset_seconds: float  # until the bucket is full again


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    states: tuple[LimitState, ...]
    retry_after_seconds: float | None = None  # None with allowed=False: can never fit
    blocked_by: LimitState | None = None

    @property
    def too_large(self) -> bool:
        """The request alone exceeds a per-minute limit (answer 429 without Retry-After)."""
        return not self.allowed and self.retry_after_seconds is None

    def headers(self) -> dict[str, str]:
        """`x-ratelimit-*` headers (OpenAI names, most restrictive of key and tenant) and,
        when denied, `Retry-After` in whole seconds."""
        h: dict[str, str] = {}
        for dim in ("requests", "tokens"):
            states = [s for s in self.states if s.dimension == dim]
            if not states:
                continue
            s = min(states, key=lambda x: (x.remaining, -x.reset_seconds))
            h[f"x-ratelimit-limit-{dim}"] = str(s.limit)
            h[f"x-ratelimit-remaining-{dim}"] = str(s.remaining)
            h[f"x-ratelimit-reset-{dim}"] = format_duration(s.reset_seconds)
        if not self.allowed and self.retry_after_seconds is not None:
            h["retry-after"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return h


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: '1s', '6m0s', '0.5s' (milliseconds under a second: '250ms')."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds) if seconds - int(seconds) > 0.001 else int(seconds)
    m, s = divmod(whole, 60)
    return f"{m}m{s}s" if m else f"{s}s"


def _remaining(ahead_ms: float, interval: float) -> int:
    """Whole units left in the window when the bucket's tat is `ahead_ms` past now. The
    tolerance absorbs float error: (now + 6000) - now is 6000.000000000116 near 2^20 ms,
    and a plain floor then reports one unit fewer than the limit allows."""
    return math.floor((WINDOW_MS - ahead_ms) / interval + 1e-6)


def _gcra(tat: float, now: float, limit: int, quantity: int) -> tuple[bool, float, float | None, int, float]:
    """One GCRA step: (allowed, new tat, retry_after_ms, remaining, reset_ms)."""
    interval = WINDOW_MS / limit
    tat = max(tat, now)
    new_tat = tat + quantity * interval
    if quantity > limit:
        return False, tat, None, _remaining(tat - now, interval), tat - now
    if new_tat - now > WINDOW_MS:
        return False, tat, new_tat - WINDOW_MS - now, _remaining(tat - now, interval), tat - now
    return True, new_tat, 0.0, _remaining(new_tat - now, interval), new_tat - now


def _result(
    rows: list[tuple[tuple[str, str, int, int], bool, float | None, int, float]],
    scopes: list[tuple[str, str]],
) -> RateLimitResult:
    states = []
    denied: list[tuple[LimitState, float | None]] = []
    for (item, allowed, retry_ms, remaining, reset_ms), (scope, scope_id) in zip(rows, scopes, strict=True):
        st = LimitState(item[1], scope, scope_id, item[2], max(remaining, 0), max(reset_ms, 0.0) / 1000)
        states.append(st)
        if not allowed:
            denied.append((st, retry_ms))
    if not denied:
        return RateLimitResult(True, tuple(states))
    never = [st for st, r in denied if r is None]
    if never:
        return RateLimitResult(False, tuple(states), None, never[0])
    st, retry = max(denied, key=lambda d: d[1] or 0.0)
    return RateLimitResult(False, tuple(states), (retry or 0.0) / 1000, st)


_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS
local out = {}
local ok = true
local tats = {}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local q = tonumber(ARGV[2 * i])
  local interval = 60000 / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + q * interval
  local allowed = 1
  local retry = '0'
  if q > limit then
    allowed = 0
    retry = '-1'
  elseif new_tat - now > 60000 then
    allowed = 0
    retry = string.format('%.3f', new_tat - 60000 - now)
  end
  if allowed == 0 then ok = false end
  tats[i] = {tat, new_tat}
  out[#out + 1] = {allowed, retry, string.format('%.3f', tat - now), string.format('%.3f', new_tat - now)}
end
if ok then
  for i = 1, n do
    local new_tat = tats[i][2]
    redis.call('SET', KEYS[i], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  end
end
return out
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i = 1, #KEYS do
  local interval = 60000 / tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[2 * i]) * interval
  if tat > now then
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class RedisRateLimiter:
    """fail_open: while Redis does not answer, admit every request (without limit headers);
    otherwise refuse it with RedisUnavailableError. Either way the limits resume by
    themselves when Redis answers (a Redis that lost its data starts every bucket full)."""

    def __init__(self, redis: Redis, *, prefix: str = "gw:", fail_open: bool = False) -> None:
        self._r = redis
        self._p = prefix
        self.fail_open = fail_open
        self._down = False
        self._check = redis.register_script(_CHECK)
        self._adjust = redis.register_script(_ADJUST)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisRateLimiter:
        return cls(make_redis(url), **kwargs)

    async def close(self) -> None:
        await self._r.aclose()

    async def check(self, limits: Sequence[RateLimit], tokens: int = 0) -> RateLimitResult:
        """Admit one request of `tokens` estimated tokens against every limit, or none."""
        items, scopes = _flatten(limits, tokens)
        if not items:
            return RateLimitResult(True, ())
        keys = [f"{self._p}rl:{name}" for name, _, _, _ in items]
        args: list[Any] = []
        for _, _, limit, q in items:
            args += [limit, q]
        try:
            raw = await self._check(keys=keys, args=args)
        except REDIS_OUTAGE as exc:
            self._went_down(exc)
            if self.fail_open:
                return RateLimitResult(True, ())
            raise RedisUnavailableError("Rate limits") from exc
        if self._down:
            log.warning("rate limits: Redis answers again")
            self._down = False
        rows = []
        for item, (allowed, retry, tat_rel, new_rel) in zip(items, raw, strict=True):
            ok = int(allowed) == 1
            retry_ms = None if _f(retry) < 0 else _f(retry)
            interval = WINDOW_MS / item[2]
            rel = _f(new_rel) if ok else _f(tat_rel)
            rows.append((item, ok, retry_ms, _remaining(rel, interval), rel))
        return _result(rows, scopes)

    async def adjust_tokens(self, limits: Sequence[RateLimit], delta_tokens: int) -> None:
        """Correct the token charge after the response (negative delta refunds)."""
        items = [i for i in _flatten(limits, delta_tokens)[0] if i[1] == "tokens"]
        if not items or delta_tokens == 0:
            return
        args: list[Any] = []
        for _, _, limit, q in items:
            args += [limit, q]
        try:
            await self._adjust(keys=[f"{self._p}rl:{name}" for name, _, _, _ in items], args=args)
        except REDIS_OUTAGE as exc:  # a lost correction only shifts one minute's token count
            self._went_down(exc)

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            verdict = "admit every request" if self.fail_open else "refuse requests"
            log.warning("rate limits: Redis does not answer (%s); %s", type(exc).__name__, verdict)


class MemoryRateLimiter:
    """The one-process twin of RedisRateLimiter (asyncio-safe: no await under the lock)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def check(self, limits: Sequence[RateLimit], tokens: int = 0) -> RateLimitResult:
        items, scopes = _flatten(limits, tokens)
        async with self._lock:
            now = self._clock() * 1000
            steps = [(_gcra(self._tats.get(name, 0.0), now, limit, q)) for name, _, limit, q in items]
            if all(s[0] for s in steps):
                for (name, _, _, _), s in zip(items, steps, strict=True):
                    self._tats[name] = s[1]
                self._gc(now)
        rows = [(item, s[0], s[2], s[3], s[4]) for item, s in zip(items, steps, strict=True)]
        return _result(rows, scopes)

    async def adjust_tokens(self, limits: Sequence[RateLimit], delta_tokens: int) -> None:
        items = [i for i in _flatten(limits, delta_tokens)[0] if i[1] == "tokens"]
        async with self._lock:
            now = self._clock() * 1000
            for name, _, limit, q in items:
                tat = max(self._tats.get(name, 0.0), now) + q * WINDOW_MS / limit
                if tat > now:
                    self._tats[name] = tat
                else:
                    self._tats.pop(name, None)

    def _gc(self, now: float) -> None:
        if len(self._tats) > 10_000:
            for name in [n for n, tat in self._tats.items() if tat <= now]:
                del self._tats[name]


def _flatten(
    limits: Sequence[RateLimit], tokens: int
) -> tuple[list[tuple[str, str, int, int]], list[tuple[str, str]]]:
    items: list[tuple[str, str, int, int]] = []
    scopes: list[tuple[str, str]] = []
    for lim in limits:
        for item in lim.items(tokens):
            items.append(item)
            scopes.append((lim.scope, lim.scope_id))
    return items, scopes


def _f(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)
