"""What the decision needs for ``model: auto``: the router's score and the tenant's calibration.

The shipped router scores the last user message (pure Python, well under 1 ms); the
tenant's active router calibration (gateway/router_calibration) is read from the database
at most once per ``ttl_s`` per process, so the decision itself stays free of I/O. A fit, an
activation or a rollback made elsewhere (the CLI, the Celery job, another replica) takes
effect here within ``ttl_s``; ``invalidate`` makes this process see it at once. While the
database does not answer, the last calibration read keeps applying (TtlCache's
stale-if-error, as for the policy the same request is decided under).

A stored document this code cannot apply (an unknown format) is logged and ignored: the
tenant is then routed as if it had no calibration, never refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.api.schemas import ChatCompletionRequest
from gateway.router_calibration import service as calibrations
from gateway.telemetry import Telemetry
from gateway.ttl_cache import TtlCache
from policy.router import Router
from policy.router.calibration import Calibration
from policy.types import AUTO_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Routed:
    """decide()'s router inputs: ``router_score=score, calibration=calibration``."""

    score: float | None = None
    calibration: Calibration | None = None


NOT_ROUTED = Routed()


class Routing:
    def __init__(
        self,
        router: Router | None,
        sessions: async_sessionmaker[AsyncSession],
        *,
        telemetry: Telemetry | None = None,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._router = router
        self._sessions = sessions
        self._telemetry = telemetry or Telemetry.disabled()
        self._cache: TtlCache[str, Calibration | None] = TtlCache(ttl_s, clock)

    async def route(self, tenant_id: str, request: ChatCompletionRequest) -> Routed:
        """Score and calibration for a ``model: auto`` request; nothing for any other model."""
        if request.model != AUTO_MODEL or self._router is None:
            return NOT_ROUTED
        text = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
        with self._telemetry.span("policy.route"):
            score = self._router.score(text)
        return Routed(score, await self.calibration(tenant_id))

    async def calibration(self, tenant_id: str) -> Calibration | None:
        """The tenant's active calibration (None: it has none), at most ``ttl_s`` old."""

        async def load() -> Calibration | None:
            async with self._sessions() as session:
                stored = await calibrations.get_active(session, tenant_id)
            if stored is None:
                return None
            try:
                return stored.calibration()
            except ValueError as exc:
                log.warning(
                    "tenant %s: router calibration v%s not applied: %s", tenant_id, stored.version, exc
                )
                return None

        return await self._cache.get(tenant_id, load)

    def invalidate(self, tenant_id: str | None = None) -> None:
        self._cache.forget(None if tenant_id is None else (lambda key: key == tenant_id))
