"""The pool worker's HTTP app: the embedded engine behind the internal streaming API.

    POST /internal/v1/generate   Bearer worker token; a GenerationRequest; NDJSON events back
    GET  /internal/v1/health     Bearer worker token; load, model digest, pool and device
    GET  /livez                  no auth; the process answers (Kubernetes probes)

Prompts arrive as token ids already tokenized by the gateway, with the tenant's cache salt:
the worker's prefix cache never shares entries across tenants, and the cache-hit tokens it
reports are what its own cache served. The worker holds no database and no tenant data.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from inference.dispatch import wire
from inference.errors import InferenceError, InvalidRequestError, PromptTooLongError
from inference.types import Finished

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    pool: str
    device: str = "cpu"
    token: str = ""  # empty: no authentication (only with --insecure-no-token, for local tests)
    model_path: str = ""
    dtype: str = "auto"
    threads: int = 0


def _authorized(request: Request[Any, Any, Any], token: str) -> bool:
    if not token:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _error(status: int, message: str) -> Response[Any]:
    return Response({"error": {"message": message, "type": "worker_error"}}, status_code=status)


def create_worker_app(config: WorkerConfig) -> Litestar:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from inference import EmbeddedModel, Engine

        async with AsyncExitStack() as stack:
            model = await asyncio.to_thread(
                EmbeddedModel.load,
                config.model_path or None,
                device=config.device,
                dtype=config.dtype,
                threads=config.threads or None,
            )
            engine = Engine(model)
            await engine.start()
            stack.push_async_callback(engine.stop)
            state.update(model=model, engine=engine)
            log.info("pool worker %s on %s serving %s", config.pool, config.device, model.artifact.name)
            yield

    @get("/livez", sync_to_thread=False)
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @get(wire.HEALTH_PATH)
    async def health(request: Request[Any, Any, Any]) -> Response[Any]:
        if not _authorized(request, config.token):
            return _error(401, "invalid worker token")
        engine = state["engine"]
        stats = engine.stats()
        model = state["model"]
        return Response(
            {
                "status": "ok" if engine.running else "stopped",
                "pool": config.pool,
                "device": config.device,
                "artifact": model.artifact.name,
                "sha256": model.artifact.sha256,
                "load": int(stats.get("running", 0)) + int(stats.get("waiting", 0)),
                "kv_blocks_used": int(stats.get("num_blocks", 0)) - int(stats.get("free_blocks", 0)),
                "kv_blocks_total": int(stats.get("num_blocks", 0)),
            }
        )

    @post(wire.GENERATE_PATH, status_code=200)
    async def generate(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        if not _authorized(request, config.token):
            return _error(401, "invalid worker token")
        try:
            gen = wire.request_from_json(await request.body())
            stream = state["engine"].generate(gen)
        except (ValueError, PromptTooLongError, InvalidRequestError) as exc:
            return _error(400, str(exc))
        except InferenceError as exc:
            return _error(503, str(exc))
        return Stream(_ndjson(stream), media_type="application/x-ndjson")

    return Litestar(
        route_handlers=[livez, health, generate],
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


async def _ndjson(stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Events as lines; an engine failure becomes an error line (retryable before the first
    token). A gateway that disconnects cancels this generator, and the engine frees the
    sequence's KV blocks."""
    started = False
    try:
        async for event in stream:
            started = True
            yield wire.event_to_line(event)
            if isinstance(event, Finished):
                return
    except InferenceError as exc:
        log.warning("generation failed: %s", exc)
        yield wire.error_line(str(exc), retryable=not started)
