"""One replica's runtime state in this process: its backend, load, breaker and health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.dispatch.backend import Backend
from inference.dispatch.breaker import CircuitBreaker
from inference.dispatch.types import PoolConfig, ReplicaSpec


@dataclass(eq=False)
class Replica:
    pool: PoolConfig
    spec: ReplicaSpec
    backend: Backend
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    in_flight: int = 0  # requests this process has on it now
    healthy: bool = True  # the last active check (optimistic until the first one)
    detail: str = ""
    probe_failures: int = 0  # active checks in a row that got no answer
    reported_load: int | None = None
    served: int = 0
    failed: int = 0

    @property
    def id(self) -> str:
        return f"{self.pool.name}/{self.spec.url}"

    def usable(self) -> bool:
        return self.healthy and self.breaker.would_allow()

    def snapshot(self) -> dict[str, Any]:
        return {
            "pool": self.pool.name,
            "url": self.spec.url,
            "backend": self.backend.kind,
            "capacity": self.spec.capacity,
            "in_flight": self.in_flight,
            "healthy": self.healthy,
            "breaker": self.breaker.state,
            "detail": self.detail,
            "reported_load": self.reported_load,
            "served": self.served,
            "failed": self.failed,
        }
