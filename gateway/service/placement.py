"""The service's side of dispatch: the request a backend gets, where an attempt may run, and
what its records say about where it ran."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from gateway.errors import UpstreamError
from inference.dispatch import DispatchRequest, Placement
from inference.dispatch.types import UPSTREAM_DIALECTS
from inference.errors import ReplicaError
from inference.types import Finished, GenerationRequest, TokenDelta
from policy.compliance_rules import Candidate
from policy.types import Mode

# Backends that run our engine: their records name the embedded model's artifact.
LOCAL_BACKENDS = frozenset({None, "embedded", "worker"})


class Dispatch(Protocol):
    """inference.dispatch.Dispatcher: runs a request on a replica of one of `pools`."""

    def generate(
        self, request: DispatchRequest, pools: Sequence[str], placement: Placement
    ) -> AsyncIterator[TokenDelta | Finished]: ...


def dispatch_request(
    generation: GenerationRequest,
    messages: list[dict[str, Any]],
    *,
    variant: str,
    mode: str,
    model: str,
    stream: bool,
) -> DispatchRequest:
    return DispatchRequest(
        generation=generation,
        messages=messages,
        variant=variant,
        mode=mode,
        model=model,
        salt_text=generation.cache_salt.hex()[:32],
        stream=stream,
        reasoning_effort="max" if mode == str(Mode.THINK_MAX) else None,
    )


def pools_of(deployments: Sequence[Candidate]) -> list[str]:
    """The eligible deployments' pools, in order, once each: where the attempt may run."""
    return list(dict.fromkeys(d.pool.name for d in deployments))


def served_deployment(deployments: Sequence[Candidate], placement: Placement) -> Candidate:
    """The deployment whose pool served the attempt (the first eligible one if none did)."""
    return next((d for d in deployments if d.pool.name == placement.pool), deployments[0])


def dispatch_fields(placement: Placement, usage_source: str) -> dict[str, Any]:
    """The audit event's `dispatch`: pool, replica, backend, the replicas that failed first."""
    return {
        "pool": placement.pool,
        "replica": placement.replica,
        "backend": placement.backend,
        "failed_replicas": list(placement.failures),
        "usage_source": usage_source,
    }


def usage_source_of(placement: Placement) -> str:
    """Usage the gateway counted itself: measured for our engine, estimated for an upstream."""
    return "estimated" if placement.backend in UPSTREAM_DIALECTS else "measured"


def weights_of(deployment: Candidate) -> dict[str, Any]:
    """The model weights a deployment names (what an upstream serves), for the records."""
    weights = next((a for a in deployment.artifacts if a.kind == "model_weights"), None)
    if weights is None:
        return {"name": deployment.name, "sha256": None, "license": "unknown"}
    return {"name": weights.name, "sha256": weights.sha256, "license": weights.license}


async def upstream_errors(
    stream: AsyncIterator[TokenDelta | Finished],
) -> AsyncIterator[TokenDelta | Finished]:
    """An upstream that refused the request itself is a 502 naming it, not an engine outage."""
    try:
        async for event in stream:
            yield event
    except ReplicaError as exc:
        if exc.retryable:
            raise
        # The upstream's own message, never its address (tenants do not see the topology).
        detail = f": {exc.detail}" if exc.detail else ""
        raise UpstreamError(f"The upstream engine refused the request (HTTP {exc.status}){detail}") from exc
