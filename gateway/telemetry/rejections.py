"""Which errors are rejections (budget, rate_limit, policy, compliance, auth), counted once at the edge.

`count_rejection` is a Litestar `after_exception` hook: every domain error that reaches the
HTTP edge passes through it, inside the request's context, so the tenant id annotated after
authentication labels the count. Code in the request path therefore never calls
`record_rejection` for an error it raises.
"""

from __future__ import annotations

from typing import Any

from billing.errors import BudgetExceededError
from gateway.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from policy.errors import ComplianceViolation, CostCeilingExceeded, PolicyForbidden

_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((AuthenticationError, PermissionDeniedError), "auth"),
    (RateLimitedError, "rate_limit"),
    (BudgetExceededError, "budget"),
    (ComplianceViolation, "compliance"),
    ((PolicyForbidden, CostCeilingExceeded), "policy"),
)


def rejection_kind(exc: BaseException) -> str | None:
    for types, kind in _KINDS:
        if isinstance(exc, types):
            return kind
    return None


async def count_rejection(exc: Exception, scope: Any) -> None:
    kind = rejection_kind(exc)
    if kind is None:
        return
    services = getattr(getattr(scope.get("app"), "state", None), "get", lambda *_: None)("services")
    telemetry = getattr(services, "telemetry", None)
    if telemetry is not None:
        telemetry.record_rejection(kind)
