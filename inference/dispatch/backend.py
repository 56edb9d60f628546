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

from inference.dispatch.types import DispatchRequest
from inference.types import Finished, TokenDelta


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""
    load: int | None = None  # requests the replica reports in flight (workers)


class Backend(Protocol):
    kind: str  # embedded | worker | vllm | sglang | deepseek

    def generate(self, request: DispatchRequest) -> AsyncIterator[TokenDelta | Finished]: ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...
