"""The compliance step of the request path: profile + registry, cached, I/O before decide().

    tc = await compliance.get(principal.tenant_id)          # ComplianceCache (per process)
    tc.check(request.model, use_case)                       # 403 ComplianceError naming the rule
    decision = decide(policy, req, quotes, compliance=tc.decision_input())
    deployment = tc.deployment_for(decision, use_case)      # the eligible deployment that serves it
    payload.update(tc.audit_fields(deployment, prompt_messages, answer_text))

A newly set profile or registry change takes effect within ``ttl_s`` on every replica; the
process that made the change can call ``invalidate`` to see it at once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.content import Prompt, retention_fields
from gateway.compliance.profiles import active_profile
from gateway.compliance.registry import candidates as load_candidates
from gateway.ttl_cache import TtlCache
from policy.compliance_rules import (
    Candidate,
    ComplianceError,
    ComplianceProfile,
    Evaluation,
    ProfileCompliance,
    evaluate,
    refusal,
)

AUTO_MODEL = "auto"


class DecisionLike(Protocol):
    @property
    def model(self) -> str: ...


@dataclass(frozen=True)
class TenantCompliance:
    tenant_id: str
    profile: ComplianceProfile
    candidates: tuple[Candidate, ...]
    today: dt.date

    def decision_input(self) -> ProfileCompliance:
        """The ``compliance=`` argument of policy.decide()."""
        return ProfileCompliance(self.profile, self.candidates, today=self.today)

    def evaluate(self, model: str | None, use_case: str | None) -> Evaluation:
        pool = (
            self.candidates
            if model in (None, AUTO_MODEL)
            else tuple(c for c in self.candidates if c.model_id == model)
        )
        return evaluate(self.profile, pool, use_case, today=self.today)

    def check(self, model: str | None, use_case: str | None) -> Evaluation:
        """Before deciding: is any deployment of the requested model (any, for ``auto``)
        allowed? Raises ComplianceError (403, ``compliance_violation``, rule named) if not."""
        result = self.evaluate(model, use_case)
        if not result.eligible:
            raise refusal(
                result, what=f"model {model}" if model not in (None, AUTO_MODEL) else "this request"
            )
        return result

    def deployment_for(self, decision: DecisionLike, use_case: str | None) -> Candidate:
        """After deciding: the first eligible deployment that serves ``decision.model``."""
        return self.deployments_for(decision, use_case)[0]

    def deployments_for(self, decision: DecisionLike, use_case: str | None) -> list[Candidate]:
        """After deciding: every eligible deployment that serves ``decision.model``, by name;
        the dispatcher picks among their pools. Raises the rule's refusal when there is none."""
        result = self.evaluate(decision.model, use_case)
        placement = getattr(decision, "placement", None)
        pools = getattr(placement, "pools", None)
        eligible = [c for c in result.eligible if pools is None or c.pool.name in pools]
        if not eligible:
            raise refusal(result, what=f"model {decision.model}")
        return eligible

    def audit_fields(
        self,
        deployment: Candidate,
        prompt: Prompt | None,
        answer: str | None,
        *,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """What the request's audit event records about compliance: the deployment (artifacts,
        licenses, pool, region, hardware), the profile version, and the prompt/answer as the
        retention mode allows (``retention``: nothing, sha256s, or texts with an expiry)."""
        return {
            "deployment": deployment.audit_dict(),
            "compliance_profile_version": self.profile.version,
            **retention_fields(self.profile, prompt, answer, now=now),
        }


class ComplianceCache:
    """Tenant profiles and the registry's candidates, each cached for `ttl_s`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sessions = sessions
        self._profiles: TtlCache[str, ComplianceProfile] = TtlCache(ttl_s, clock)
        self._candidates: TtlCache[None, tuple[Candidate, ...]] = TtlCache(ttl_s, clock)

    async def get(self, tenant_id: str) -> TenantCompliance:
        async def load_profile() -> ComplianceProfile:
            async with self._sessions() as session:
                return await active_profile(session, tenant_id)

        async def load_registry() -> tuple[Candidate, ...]:
            async with self._sessions() as session:
                return tuple(await load_candidates(session))

        profile = await self._profiles.get(tenant_id, load_profile)
        candidates = await self._candidates.get(None, load_registry)
        return TenantCompliance(tenant_id, profile, candidates, dt.datetime.now(dt.UTC).date())

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget one tenant's profile, or (None) every profile and the registry."""
        if tenant_id is None:
            self._profiles.forget()
            self._candidates.forget()
        else:
            self._profiles.forget(lambda key: key == tenant_id)


__all__ = ["ComplianceCache", "ComplianceError", "TenantCompliance"]
