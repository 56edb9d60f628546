"""The billing side of a request: prices in force, budget reservations, usage records.

Wraps the billing room for the request path: quotes come from an in-memory catalog (so
the decision stays pure), reservations from the budget backend (Redis or in-process), and
usage entries go through the batched, spooling ledger writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.guard import BudgetGuard
from billing.budgets.store import BudgetStore
from billing.budgets.types import Budget, BudgetAlert, BudgetBackend, BudgetStatus, Reservation
from billing.catalog.model import PriceCatalog, PriceQuote
from billing.catalog.store import CatalogStore
from billing.ledger.entry import UsageEntry
from billing.ledger.writer import UsageWriter
from billing.ratelimit import MemoryRateLimiter, RateLimit, RateLimitResult, RedisRateLimiter
from billing.types import Variant
from gateway.errors import is_database_outage
from gateway.ttl_cache import STALE_IF_ERROR_S, TtlCache

log = logging.getLogger(__name__)

VARIANTS = (Variant("flash"), Variant("pro"))
RateLimiter = MemoryRateLimiter | RedisRateLimiter


class Metering:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        catalog_store: CatalogStore,
        budget_store: BudgetStore,
        budgets: BudgetBackend,
        writer: UsageWriter,
        limiter: RateLimiter,
        redis_fail_open: bool = False,
        stale_if_error_s: float = STALE_IF_ERROR_S,
        config_ttl_s: float = 2.0,
        catalog_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sessions = sessions
        self.catalog_store = catalog_store
        self.budget_store = budget_store
        self.budgets = budgets
        self.writer = writer
        self.limiter = limiter
        self._catalog_ttl_s = catalog_ttl_s
        self._clock = clock
        self._catalog: PriceCatalog | None = None
        self._catalog_loaded = 0.0
        self._budgets: TtlCache[tuple[str, str | None], list[Budget]] = TtlCache(
            config_ttl_s, clock, stale_s=stale_if_error_s
        )
        # Reservations, settles and seeding from the ledger, exact through Redis outages.
        self.guard = BudgetGuard(budgets, sessions, writer.flush, fail_open=redis_fail_open)

    async def start(self) -> None:
        await self.reload_catalog()
        await self.writer.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await self.writer.stop()

    async def reload_catalog(self) -> PriceCatalog:
        self._catalog = await self.catalog_store.load()
        self._catalog_loaded = self._clock()
        return self._catalog

    @property
    def catalog(self) -> PriceCatalog:
        if self._catalog is None:
            raise RuntimeError("Metering.start() was not awaited")
        return self._catalog

    async def quotes_at(self, at: dt.datetime) -> dict[str, PriceQuote]:
        """Prices in force at `at` for every variant. New versions take effect in the future
        (the catalog refuses back-dated ones), so a catalog a few seconds old prices right."""
        if self._clock() - self._catalog_loaded >= self._catalog_ttl_s:
            try:
                await self.reload_catalog()
            except Exception as exc:
                if not is_database_outage(exc) or self._catalog is None:
                    raise
                # Price versions take effect in the future: the loaded catalog still prices
                # right; try again in a second.
                self._catalog_loaded = self._clock() - self._catalog_ttl_s + 1.0
        return {str(v): self.catalog.prices_at(v, at) for v in VARIANTS}

    async def budgets_for(self, tenant_id: str, key_id: str | None) -> list[Budget]:
        return await self._budgets.get(
            (tenant_id, key_id), lambda: self.budget_store.budgets_for(tenant_id, key_id)
        )

    async def budget_status(self, budget: Budget, at: dt.datetime) -> BudgetStatus:
        """Spent and reserved in the budget's period containing `at`, from the live counters.
        A counter this process has not used yet is first seeded from the ledger, exactly as
        the next reservation would seed it, so the figures survive a restart."""
        return await self.guard.status(budget, at)

    def forget_budgets(self, tenant_id: str) -> None:
        self._budgets.forget(lambda key: key[0] == tenant_id)

    async def reserve(
        self, reservation_id: str, tenant_id: str, key_id: str | None, amount_units: int, at: dt.datetime
    ) -> Reservation | None:
        """Hold the worst case against every budget of the tenant and key (raises
        BudgetExceededError for a hard budget that cannot cover it); None without budgets."""
        budgets = await self.budgets_for(tenant_id, key_id)
        if not budgets:
            return None
        return await self.guard.reserve(reservation_id, budgets, amount_units, at)

    async def settle(self, reservation: Reservation | None, actual_units: int) -> tuple[BudgetAlert, ...]:
        if reservation is None:
            return ()
        result = await self.guard.settle(reservation, actual_units)
        return result.alerts

    async def release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            await self.guard.release(reservation)

    async def record(self, entry: UsageEntry) -> None:
        self.guard.recorded(entry)
        await self.writer.submit(entry)

    async def admit(self, limits: tuple[RateLimit, ...], estimated_tokens: int) -> RateLimitResult | None:
        """Charge one request and its estimated tokens against the key's and tenant's
        limits (all or nothing); None when neither has limits."""
        if not limits:
            return None
        return await self.limiter.check(limits, tokens=estimated_tokens)

    async def correct_tokens(self, limits: tuple[RateLimit, ...], delta_tokens: int) -> None:
        """Replace the admission estimate with the tokens actually used."""
        if limits and delta_tokens:
            await self.limiter.adjust_tokens(limits, delta_tokens)
