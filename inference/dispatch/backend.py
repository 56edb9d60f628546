"""The one interface every kind of replica implements: the embedded engine in this process,
a remote pool worker (`gateway worker`), or an upstream engine's OpenAI-compatible server.

`generate` yields TokenDelta events and one Finished with exact usage. A replica that cannot
take the request raises ReplicaError before its first event (retryable or not); one that
fails later raises StreamInterruptedError. `health` is the active check's probe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from inference.dispatch.http_client import ConnectError, PoolTimeout
from inference.dispatch.types import DispatchRequest
from inference.types import Finished, TokenDelta


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""
    load: int | None = None  # requests the replica reports in flight (workers)
    # False: the probe got no answer (refused, timed out). One such probe is no verdict: a
    # replica busy with our own traffic can miss a 2 s probe (the dispatcher wants several).
    answered: bool = True


def probe_failed(exc: Exception) -> Health:
    """The probe's result when the request itself failed. Every connection to the replica in
    use by requests is no sign of trouble (they are being served): healthy, and busy."""
    if isinstance(exc, PoolTimeout):
        return Health(ok=True, detail="busy: every connection in use")
    if isinstance(exc, ConnectError) and "Refused" in str(exc):  # nothing listens: a verdict
        return Health(ok=False, detail="connection refused")
    return Health(ok=False, detail=type(exc).__name__, answered=False)


class Backend(Protocol):
    kind: str  # embedded | worker | vllm | sglang | deepseek

    def generate(self, request: DispatchRequest) -> AsyncIterator[TokenDelta | Finished]: ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...
