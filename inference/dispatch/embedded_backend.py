"""The embedded engine as a Backend: no network hop, exact usage from the engine itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from inference.dispatch.backend import Health
from inference.dispatch.types import DispatchRequest
from inference.errors import InferenceError, InvalidRequestError, PromptTooLongError, ReplicaError
from inference.types import Finished, GenerationRequest, TokenDelta


class LocalEngine(Protocol):
    @property
    def running(self) -> bool: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta | Finished]: ...

    def stats(self) -> dict[str, Any]: ...


class EmbeddedBackend:
    """`engine` may be one engine for every variant or an `inference.variants.VariantEngines`
    (one engine per variant, each with its variant's configuration): the request's variant
    picks the engine and its mode the variant's expert fraction."""

    kind = "embedded"

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine

    def generate(self, request: DispatchRequest) -> AsyncIterator[TokenDelta | Finished]:
        engine: Any = self._engine
        generation = request.generation
        if hasattr(engine, "for_variant"):
            generation = engine.request_for(request.variant, request.mode, generation)
            engine = engine.for_variant(request.variant)
        try:
            return engine.generate(generation)
        except (PromptTooLongError, InvalidRequestError):
            raise  # the request's fault: no other replica would take it either
        except InferenceError as exc:  # not started, stopped, or failed: another replica may serve
            raise ReplicaError(str(exc), retryable=True) from exc

    async def health(self) -> Health:
        if not self._engine.running:
            return Health(ok=False, detail="engine not running")
        stats = self._engine.stats()
        return Health(ok=True, load=int(stats.get("running", 0)) + int(stats.get("waiting", 0)))

    async def close(self) -> None:
        """The engine's owner stops it."""
