"""A remote pool worker (`gateway worker`) as a Backend: the GenerationRequest goes over HTTP
with the shared worker token, and the worker's engine streams its events back as NDJSON,
usage and cache hits measured by that engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

from inference.dispatch import wire
from inference.dispatch.backend import Health, probe_failed
from inference.dispatch.http_client import HttpError, ReplicaHttpClient, Timeouts
from inference.dispatch.types import DispatchRequest
from inference.errors import ReplicaError, StreamInterruptedError
from inference.types import Finished, TokenDelta

# Answers that another replica may well not give: overload, restarts, a bad token here only.
RETRYABLE_STATUS = frozenset({401, 403, 408, 429, 500, 502, 503, 504})


def worker_timeout(first_token_s: float) -> Timeouts:
    return Timeouts(connect=2.0, read=first_token_s, write=10.0, pool=2.0)


def replica_client(
    url: str, *, bearer: str | None, capacity: int, first_token_timeout_s: float
) -> ReplicaHttpClient:
    """The connection pool to one replica: keep-alive connections for its whole capacity
    (the dispatcher never sends it more), the secret only in the Authorization header."""
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    return ReplicaHttpClient(
        url, headers=headers, timeouts=worker_timeout(first_token_timeout_s), max_connections=capacity + 8
    )


class WorkerBackend:
    kind = "worker"

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        capacity: int = 64,
        first_token_timeout_s: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = replica_client(
            self.url, bearer=token, capacity=capacity, first_token_timeout_s=first_token_timeout_s
        )

    async def generate(self, request: DispatchRequest) -> AsyncIterator[TokenDelta | Finished]:
        body = wire.request_to_json(request.generation)
        started = False
        try:
            async with self._client.stream("POST", wire.GENERATE_PATH, content=body) as response:
                if response.status_code != 200:
                    detail = (await response.aread())[:500].decode(errors="replace")
                    raise ReplicaError(
                        f"worker {self.url} answered {response.status_code}: {detail}",
                        retryable=response.status_code in RETRYABLE_STATUS,
                        status=response.status_code,
                    )
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    event = wire.event_from_line(line.encode())
                    if isinstance(event, dict):
                        message = f"worker {self.url}: {event.get('message')}"
                        if started:
                            raise StreamInterruptedError(message)
                        raise ReplicaError(message, retryable=bool(event.get("retryable")))
                    started = True
                    yield event
                    if isinstance(event, Finished):
                        return
            raise_ended(self.url, started)
        except HttpError as exc:
            message = f"worker {self.url}: {type(exc).__name__}: {exc}"
            if started:
                raise StreamInterruptedError(message) from exc
            raise ReplicaError(message, retryable=True) from exc

    async def health(self) -> Health:
        try:
            response = await self._client.get(wire.HEALTH_PATH, timeout_s=2.0)
        except HttpError as exc:
            return probe_failed(exc)
        if response.status_code != 200:
            return Health(ok=False, detail=f"HTTP {response.status_code}")
        data = response.json()
        return Health(ok=data.get("status") == "ok", detail=str(data.get("status")), load=data.get("load"))

    async def close(self) -> None:
        await self._client.aclose()


def raise_ended(url: str, started: bool) -> None:
    """The stream ended without a Finished event: the worker went away mid-answer."""
    message = f"{url}: the stream ended before the answer finished"
    if started:
        raise StreamInterruptedError(message)
    raise ReplicaError(message, retryable=True)
