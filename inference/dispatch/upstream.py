"""An existing engine's OpenAI-compatible server (vLLM, SGLang, the DeepSeek API) as a Backend.

The request goes as messages (the upstream applies its own chat template and tokenizer); its
usage is mapped exactly by the dialect. An upstream that sends no usage is metered with our
own tokenizer (`encode`), and the Finished event says so (usage_source="estimated").
Credentials come from an environment variable named in the pool's configuration; they are
sent only in the Authorization header and never appear in an error or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from inference.dispatch import dialects
from inference.dispatch.backend import Health, probe_failed
from inference.dispatch.http_client import HttpError, Response
from inference.dispatch.types import UPSTREAM_DIALECTS, DispatchRequest
from inference.dispatch.worker_client import RETRYABLE_STATUS, raise_ended, replica_client
from inference.errors import ReplicaError, StreamInterruptedError
from inference.types import Finished, TokenDelta, Usage

log = logging.getLogger(__name__)
Encode = Callable[[str], list[int]]


class UpstreamBackend:
    def __init__(
        self,
        dialect: str,
        base_url: str,
        *,
        encode: Encode,
        models: dict[str, str] | None = None,
        api_key: str | None = None,
        capacity: int = 64,
        first_token_timeout_s: float = 120.0,
    ) -> None:
        if dialect not in UPSTREAM_DIALECTS:
            raise ValueError(f"unknown upstream dialect {dialect!r}")
        self.kind = dialect
        self.url = base_url.rstrip("/")
        self._encode = encode
        self._models = dict(models or {})
        self._client = replica_client(
            self.url,
            bearer=api_key,
            capacity=capacity,
            first_token_timeout_s=first_token_timeout_s,
        )

    def model_for(self, request: DispatchRequest) -> str:
        return self._models.get(request.variant) or request.model

    async def generate(self, request: DispatchRequest) -> AsyncIterator[TokenDelta | Finished]:
        body = json.dumps(
            dialects.request_body(self.kind, request, self.model_for(request)), separators=(",", ":")
        ).encode()
        state = _Delivered()
        try:
            async with self._client.stream("POST", "/chat/completions", content=body) as response:
                if response.status_code != 200:
                    raise await _rejected(self.url, response)
                async for event in self._from_stream(request, response, state):  # always asked as a stream
                    yield event
        except HttpError as exc:
            if state.reason is not None and not state.finished_sent:
                # Cut after the answer's finish_reason (before the usage chunk or [DONE]): the
                # answer is complete; only the usage is missing, so it is estimated.
                log.warning("upstream %s: the stream ended after the answer without usage", self.url)
                yield state.finished(request, state.reason, state.usage)
                return
            message = f"upstream {self.url}: {type(exc).__name__}"
            if state.started:
                raise StreamInterruptedError(message) from exc
            raise ReplicaError(message, retryable=True) from exc
        except (ValueError, KeyError, TypeError) as exc:  # not the shape the dialect promises
            message = f"upstream {self.url}: malformed answer ({type(exc).__name__})"
            if state.started:
                raise StreamInterruptedError(message) from exc
            raise ReplicaError(message, retryable=True) from exc

    async def _from_stream(
        self, request: DispatchRequest, response: Response, state: _Delivered
    ) -> AsyncIterator[TokenDelta | Finished]:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names, keep-alives
            payload = line[5:].strip()
            if payload == "[DONE]":
                # Read on to the end of the body: a connection goes back to the pool only when
                # its response was read whole (stopping here opened one per request).
                continue
            chunk = json.loads(payload)
            if "error" in chunk:
                message = f"upstream {self.url}: {_error_message(chunk)}"
                if state.started:
                    raise StreamInterruptedError(message)
                raise ReplicaError(message, retryable=True)
            state.usage = dialects.usage_from(chunk.get("usage")) or state.usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                for event in state.deltas(self._encode, delta, choice.get("logprobs")):
                    yield event
                if choice.get("finish_reason"):
                    state.reason = dialects.finish_reason(choice["finish_reason"])
        if state.reason is None:
            raise_ended(f"upstream {self.url}", state.started)
        yield state.finished(request, state.reason or "stop", state.usage)

    async def health(self) -> Health:
        try:
            response = await self._client.get("/models", timeout_s=2.0)
        except HttpError as exc:
            return probe_failed(exc)
        return Health(ok=response.status_code == 200, detail=f"HTTP {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


class _Delivered:
    """What reached the client so far, counted with our tokenizer (for estimates only)."""

    def __init__(self) -> None:
        self.started = False
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.reason: str | None = None  # the upstream's finish_reason, once it came
        self.usage: Usage | None = None
        self.finished_sent = False

    def deltas(self, encode: Encode, part: dict[str, Any], logprobs: Any) -> list[TokenDelta]:
        out: list[TokenDelta] = []
        reasoning = part.get("reasoning_content") or part.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            ids = encode(reasoning)
            self.reasoning_tokens += len(ids)
            out.append(TokenDelta(text=reasoning, token_ids=ids, reasoning=True))
        content = part.get("content")
        if isinstance(content, str) and content:
            ids = encode(content)
            lp = logprobs.get("content") if isinstance(logprobs, dict) else None
            out.append(TokenDelta(text=content, token_ids=ids, logprobs=lp if isinstance(lp, list) else None))
        for delta in out:
            self.completion_tokens += len(delta.token_ids)
        self.started = self.started or bool(out)
        return out

    def finished(self, request: DispatchRequest, reason: str, usage: Usage | None) -> Finished:
        self.finished_sent = True
        if usage is not None:
            return Finished(reason, usage)
        prompt = len(request.generation.prompt_token_ids)  # our tokenizer's count of the prompt
        estimate = Usage(
            prompt_tokens=prompt,
            prompt_cache_hit_tokens=0,
            prompt_cache_miss_tokens=prompt,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )
        return Finished(reason, estimate, usage_source="estimated")


async def _rejected(url: str, response: Response) -> ReplicaError:
    raw = (await response.aread())[:2000]
    try:
        detail = _error_message(json.loads(raw))
    except ValueError:
        detail = raw[:300].decode(errors="replace")
    status = response.status_code
    retryable = status in RETRYABLE_STATUS
    message = f"upstream {url} answered HTTP {status}: {detail}"
    return ReplicaError(message, retryable=retryable, status=status, detail=detail)


def _error_message(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return str(data)[:300]
