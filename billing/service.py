"""The two calls the gateway makes around dispatch, in the right order.

    billing = BillingService(catalog, budgets, limiter, writer)
    adm = await billing.admit(AdmitRequest(...))       # rate limit, price, reserve
    try:
        ... dispatch ...
    except Exception:
        await billing.abort(adm)                         # nothing billable happened
        raise
    done = await billing.finish(adm, Usage(...), status="completed")
    done.cost.as_usd_str()  -> usage.cost_usd and usage.cost_details

`admit` raises RateLimitedError or BudgetExceededError (both BillingError). The price is
the one in force at `started_at` (the request's start), also for settlement.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from billing.budgets.types import Budget, BudgetAlert, BudgetBackend, Reservation
from billing.catalog.model import PriceCatalog, PriceQuote
from billing.cost import Cost, cost_of, worst_case_cost
from billing.errors import BudgetExceededError, RateLimitedError
from billing.ledger.entry import UsageEntry
from billing.ledger.writer import UsageWriter
from billing.ratelimit import MemoryRateLimiter, RateLimit, RateLimitResult, RedisRateLimiter


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    request_id: str
    attempt: int
    tenant_id: str
    api_key_id: str | None
    variant: str
    mode: str
    model: str
    started_at: dt.datetime
    prompt_tokens: int  # counted before dispatch (upper bound of cache hit + miss)
    max_output_tokens: int  # max_tokens incl. reasoning: the worst case
    budgets: list[Budget] = field(default_factory=list)  # BudgetStore.budgets_for(...)
    rate_limits: list[RateLimit] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Admission:
    request: AdmitRequest
    quote: PriceQuote
    worst_case_units: int
    reservation: Reservation | None
    rate: RateLimitResult
    estimated_tokens: int


@dataclass(frozen=True, slots=True)
class Usage:
    """What the engine measured (DeepSeek usage fields)."""

    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    completion_tokens: int  # includes reasoning_tokens
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finished:
    cost: Cost
    entry: UsageEntry
    alerts: tuple[BudgetAlert, ...]


class BillingService:
    def __init__(
        self,
        catalog: PriceCatalog,
        budgets: BudgetBackend,
        limiter: RedisRateLimiter | MemoryRateLimiter,
        writer: UsageWriter,
        *,
        lease_seconds: float = 600.0,
    ) -> None:
        self.catalog = catalog  # replace the attribute to apply a new catalog
        self.budgets = budgets
        self.limiter = limiter
        self.writer = writer
        self.lease_seconds = lease_seconds

    async def admit(self, req: AdmitRequest) -> Admission:
        quote = self.catalog.prices_at(req.variant, req.started_at)
        worst = worst_case_cost(quote, req.prompt_tokens, req.max_output_tokens)
        estimate = req.prompt_tokens + req.max_output_tokens
        rate = await self.limiter.check(req.rate_limits, tokens=estimate)
        if not rate.allowed:
            raise RateLimitedError(rate)
        reservation = None
        if req.budgets:
            try:
                reservation = await self.budgets.reserve(
                    f"{req.request_id}:{req.attempt}",
                    req.budgets,
                    worst,
                    at=req.started_at,
                    lease_seconds=self.lease_seconds,
                )
            except BudgetExceededError:
                await self.limiter.adjust_tokens(req.rate_limits, -estimate)
                raise
        return Admission(req, quote, worst, reservation, rate, estimate)

    async def finish(
        self,
        adm: Admission,
        usage: Usage,
        *,
        status: str = "completed",
        finish_reason: str | None = None,
        stream: bool = False,
        artifact_id: str = "",
        finished_at: dt.datetime | None = None,
    ) -> Finished:
        """Price the measured usage, settle the reservation, queue the usage record.
        Use it for cancelled or failed attempts that produced billable tokens too."""
        req = adm.request
        cost = cost_of(
            adm.quote, usage.prompt_cache_hit_tokens, usage.prompt_cache_miss_tokens, usage.completion_tokens
        )
        entry = UsageEntry(
            request_id=req.request_id,
            attempt=req.attempt,
            tenant_id=req.tenant_id,
            api_key_id=req.api_key_id,
            model=req.model,
            variant=req.variant,
            mode=req.mode,
            artifact_id=artifact_id,
            status=status,
            started_at=req.started_at,
            finished_at=finished_at or dt.datetime.now(dt.UTC),
            prompt_cache_hit_tokens=usage.prompt_cache_hit_tokens,
            prompt_cache_miss_tokens=usage.prompt_cache_miss_tokens,
            completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            finish_reason=finish_reason,
            stream=stream,
        ).with_cost(cost)
        alerts: tuple[BudgetAlert, ...] = ()
        if adm.reservation is not None:
            alerts = (await self.budgets.settle(adm.reservation, cost.total)).alerts
        used = usage.prompt_cache_hit_tokens + usage.prompt_cache_miss_tokens + usage.completion_tokens
        await self.limiter.adjust_tokens(req.rate_limits, used - adm.estimated_tokens)
        await self.writer.submit(entry)
        return Finished(cost, entry, alerts)

    async def abort(self, adm: Admission) -> None:
        """Nothing billable happened (error before the first token, early cancel)."""
        if adm.reservation is not None:
            await self.budgets.release(adm.reservation)
        await self.limiter.adjust_tokens(adm.request.rate_limits, -adm.estimated_tokens)
