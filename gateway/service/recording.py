"""After an attempt: its exact cost, its usage record and its audit event."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.model import PriceQuote
from billing.cost import Cost, cost_of
from billing.db import transaction, utcnow
from billing.ledger.entry import UsageEntry
from gateway.audit.log import append_event
from gateway.audit.writer import AuditWriter
from gateway.auth.service import Principal
from inference.types import ModelArtifact, Usage
from policy.types import Decision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptRecord:
    """Everything known about one finished (or abandoned) attempt."""

    request_id: str
    attempt: int
    principal: Principal
    decision: Decision
    quote: PriceQuote
    artifact: ModelArtifact
    usage: Usage
    status: str  # completed | cancelled | failed
    finish_reason: str | None
    stream: bool
    started_at: dt.datetime
    # deployment, compliance_profile_version, retention fields (gateway.compliance.service)
    compliance: dict[str, Any]
    escalation: dict[str, Any] | None = None
    # Where it ran (pool, replica, backend, replicas that failed before it, usage_source) and,
    # when that is not the embedded model, the weights artifact the deployment names.
    dispatch: dict[str, Any] | None = None
    served_artifact: dict[str, Any] | None = None

    @cached_property  # read four times per attempt (ledger, audit, outcome, telemetry)
    def cost(self) -> Cost:
        u = self.usage
        return cost_of(self.quote, u.prompt_cache_hit_tokens, u.prompt_cache_miss_tokens, u.completion_tokens)

    def usage_entry(self, finished_at: dt.datetime) -> UsageEntry:
        u, cost = self.usage, self.cost
        return UsageEntry(
            request_id=self.request_id,
            attempt=self.attempt,
            tenant_id=self.principal.tenant_id,
            api_key_id=self.principal.key_id,
            model=self.decision.model,
            variant=str(self.decision.variant),
            mode=str(self.decision.mode),
            artifact_id=self.served_artifact["name"] if self.served_artifact else self.artifact.name,
            status=self.status,
            started_at=self.started_at,
            finished_at=finished_at,
            prompt_cache_hit_tokens=u.prompt_cache_hit_tokens,
            prompt_cache_miss_tokens=u.prompt_cache_miss_tokens,
            completion_tokens=u.completion_tokens,
            reasoning_tokens=u.reasoning_tokens,
            finish_reason=self.finish_reason,
            stream=self.stream,
            price_version=cost.price_version,
            cost_cache_hit=cost.cache_hit,
            cost_cache_miss=cost.cache_miss,
            cost_output=cost.output,
            cost_total=cost.total,
        )

    def audit_payload(self) -> dict[str, Any]:
        u = self.usage
        return {
            "attempt": self.attempt,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "decision": self.decision.audit_dict(),
            "artifact": self.served_artifact
            or {
                "name": self.artifact.name,
                "sha256": self.artifact.sha256,
                "license": self.artifact.license,
            },
            "dispatch": self.dispatch,
            "usage": {
                "prompt_tokens": u.prompt_tokens,
                "prompt_cache_hit_tokens": u.prompt_cache_hit_tokens,
                "prompt_cache_miss_tokens": u.prompt_cache_miss_tokens,
                "completion_tokens": u.completion_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            },
            "cost": {"price_version": self.cost.price_version, **self.cost.as_usd_str()},
            "escalation": self.escalation,
            # The prompt (and answer) as the tenant's retention allows; the default keeps hashes.
            **self.compliance,
        }


def audit_attempt(writer: AuditWriter, record: AttemptRecord) -> None:
    """Queue the attempt's event on the batched audit writer (group commit, spooled when the
    database is down); it never delays the answer."""
    kind = "request.completed" if record.status == "completed" else f"request.{record.status}"
    writer.submit(
        kind=kind,
        actor=f"key:{record.principal.key_id}",
        tenant_id=record.principal.tenant_id,
        request_id=record.request_id,
        payload=record.audit_payload(),
        at=utcnow(),
    )


async def record_billing_events(
    sessions: async_sessionmaker[AsyncSession], events: list[dict[str, Any]]
) -> None:
    """Audit events that the billing room returns as dicts (budget alerts, price changes)."""
    try:
        async with transaction(sessions) as session:
            for event in events:
                await append_event(
                    session,
                    kind=str(event["kind"]),
                    actor=str(event.get("actor", "billing")),
                    tenant_id=event.get("tenant_id"),
                    payload=dict(event.get("payload") or {}),
                )
    except Exception:
        log.exception("billing events were not written to the audit log")
