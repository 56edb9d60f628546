"""A real HTTP server that speaks an upstream engine's OpenAI-compatible dialect, for tests.

One `FakeUpstream` is one replica: uvicorn on 127.0.0.1 (a free port) in a thread of its own,
serving `POST /v1/chat/completions` (also `/chat/completions`, as the DeepSeek API does) and
`GET /v1/models`. It speaks the dialect it is started with:

- vllm:     usage `prompt_tokens_details.cached_tokens` + `completion_tokens_details.
            reasoning_tokens`; reasoning in `reasoning_content` (or `reasoning`, as newer vLLM
            names it); thinking from `chat_template_kwargs`; the prefix cache keyed by `cache_salt`.
- sglang:   the same, plus `separate_reasoning` (without it the reasoning stays inline in the
            content between <think> tags, as SGLang does).
- deepseek: usage `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`; `reasoning_content`;
            thinking from `thinking: {type}` + `reasoning_effort`; the cache keyed by `user_id`.

Each dialect refuses (400) the fields that belong to another one, so a request mapped for the
wrong engine shows up as an error rather than passing silently.

Tokens are whitespace words (each role marker is one more); the prefix cache remembers every
prompt per salt and reports the longest common prefix with one seen before under the same
salt, so a second tenant sending the same prompt gets 0 cached tokens. Streaming sends one
word a chunk (leading space, like real BPE tokens) and the usage in a last chunk with no
choices, only when `stream_options.include_usage` is set.

Faults are scripted per request (`script(...)`, consumed in order; `always` for every one):
HTTP errors before the first token, a slow answer (before the headers or before the first
chunk), a connection dropped or an error chunk after N words, and no usage at all. Every
request is recorded (path, headers, raw and parsed body) with the usage the server sent back.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn

DIALECTS = ("vllm", "sglang", "deepseek")
DEFAULT_REASONING = "The user asks which city is the capital of France. That is Paris."
DEFAULT_ANSWER = "The capital of France is Paris."
# Fields another dialect sends that this one does not take.
FOREIGN_FIELDS = {
    "vllm": {"user_id", "thinking", "separate_reasoning"},
    "sglang": {"user_id", "thinking"},
    "deepseek": {"cache_salt", "chat_template_kwargs", "separate_reasoning", "top_k"},
}
# What each server's request schema accepts: vLLM's ChatCompletionRequest has
# Literal["low", "medium", "high"] (a pydantic 400 otherwise); SGLang adds "none" and "max".
EFFORTS = {
    "vllm": {"low", "medium", "high"},
    "sglang": {"none", "low", "medium", "high", "max"},
    "deepseek": {"low", "medium", "high", "max", "xhigh"},
}


@dataclass(frozen=True)
class Fault:
    """What to do wrong with one request.

    kind: "status" (answer `status` with an error body, before anything else),
    "slow_headers" / "slow_first_chunk" (sleep `delay_s` before the response / its first
    chunk), "drop" (close the connection after `after_words` words), "error_chunk" (an error
    event after `after_words` words), "no_usage" (answer normally without any usage).
    """

    kind: str
    status: int = 500
    delay_s: float = 0.0
    after_words: int = 0
    message: str = "scripted failure"


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    status: int = 0
    usage_sent: dict[str, Any] | None = None  # the usage object this server answered with
    salt: str = ""
    at: float = field(default_factory=time.monotonic)  # when it arrived (orders several servers)


@dataclass
class _Answer:
    reasoning: list[str]
    content: list[str]
    finish: str


@dataclass
class FakeUpstream:
    dialect: str
    api_key: str | None = None  # when set, requests without `Bearer <key>` get 401
    reasoning_field: str = "reasoning_content"  # vllm: also "reasoning"
    answer: str = DEFAULT_ANSWER
    reasoning: str = DEFAULT_REASONING
    models: tuple[str, ...] = ("deepseek-v4-flash", "deepseek-v4-pro")
    always: Fault | None = None
    healthy: bool = True
    concurrent: int = 0  # chat requests being answered now, and the most at once
    max_concurrent: int = 0
    received: list[Received] = field(default_factory=list)
    _faults: deque[Fault] = field(default_factory=deque)
    _cache: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    port: int = 0

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}")

    # -- control -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *faults: Fault) -> None:
        """Faults for the next requests, one each, in order."""
        self._faults.extend(faults)

    def reset(self) -> None:
        self._faults.clear()
        self._cache.clear()
        self.received.clear()
        self.always = None
        self.healthy = True
        self.concurrent = 0
        self.max_concurrent = 0

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions")]

    def start(self) -> FakeUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="critical",
            interface="asgi3",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"fake-{self.dialect}"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        return self

    def request_stop(self) -> None:
        """Ask the server to exit without waiting (stop() several at once: ask each, then stop)."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for keep-alive or scripted-slow requests

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self.request_stop()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the dialect -------------------------------------------------------------------------

    @staticmethod
    def tokens(messages: list[dict[str, Any]]) -> tuple[str, ...]:
        out: list[str] = []
        for m in messages:
            out.append(f"<{m.get('role')}>")
            out.extend(re.findall(r"\S+", str(m.get("content") or "")))
        return tuple(out)

    def _cached(self, salt: str, prompt: tuple[str, ...]) -> int:
        seen = self._cache.setdefault(salt, [])
        best = 0
        for old in seen:
            n = 0
            for a, b in zip(old, prompt, strict=False):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        seen.append(prompt)
        return min(best, len(prompt) - 1) if prompt else 0  # the last token is always computed

    def _salt(self, body: dict[str, Any]) -> str:
        key = "user_id" if self.dialect == "deepseek" else "cache_salt"
        return str(body.get(key) or "")

    def _thinking(self, body: dict[str, Any]) -> bool:
        if self.dialect == "deepseek":
            return (body.get("thinking") or {}).get("type") == "enabled"
        kwargs = body.get("chat_template_kwargs") or {}
        return bool(kwargs.get("thinking") or kwargs.get("enable_thinking"))

    def _problem(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return "the body must be a JSON object with `messages`"
        if body.get("model") not in self.models:
            return f"The model `{body.get('model')}` does not exist."
        foreign = sorted(set(body) & FOREIGN_FIELDS[self.dialect])
        if foreign:
            return f"Unsupported parameter for {self.dialect}: {foreign[0]}"
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in EFFORTS[self.dialect]:
            return f"reasoning_effort must be one of {sorted(EFFORTS[self.dialect])}"
        mt = body.get("max_tokens")
        if mt is not None and (not isinstance(mt, int) or mt < 1):
            return "max_tokens must be a positive integer"
        return None

    def _answer(self, body: dict[str, Any]) -> _Answer:
        budget = body.get("max_tokens") or 10_000
        reasoning = self.reasoning.split() if self._thinking(body) else []
        content = self.answer.split()
        finish = "stop"
        if len(reasoning) + len(content) > budget:
            finish = "length"
            reasoning = reasoning[:budget]
            content = content[: budget - len(reasoning)]
        return _Answer(_spaced(reasoning), _spaced(content), finish)

    def _usage(self, prompt: int, cached: int, answer: _Answer) -> dict[str, Any]:
        completion = len(answer.reasoning) + len(answer.content)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.dialect == "deepseek":
            usage["prompt_cache_hit_tokens"] = cached
            usage["prompt_cache_miss_tokens"] = prompt - cached
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        usage["completion_tokens_details"] = {"reasoning_tokens": len(answer.reasoning)}
        return usage

    def _inline(self, body: dict[str, Any]) -> bool:
        """SGLang without separate_reasoning keeps the reasoning in the content."""
        return self.dialect == "sglang" and not body.get("separate_reasoning")

    # -- ASGI --------------------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Received(scope["path"], scope["method"], headers, raw, body)
        self.received.append(rec)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            await _json(
                send, rec, 401, _error("Authentication Fails (no such API key)", "authentication_error")
            )
            return
        if scope["method"] == "GET" and scope["path"] in ("/v1/models", "/models"):
            if not self.healthy:
                await _json(send, rec, 503, _error("not ready", "server_error"))
                return
            data = [{"id": m, "object": "model", "owned_by": self.dialect} for m in self.models]
            await _json(send, rec, 200, {"object": "list", "data": data})
            return
        if scope["method"] != "POST" or scope["path"] not in ("/v1/chat/completions", "/chat/completions"):
            await _json(send, rec, 404, _error(f"no route {scope['path']}", "not_found"))
            return
        fault = self._faults.popleft() if self._faults else self.always
        if fault is not None and fault.kind == "status":
            await _json(send, rec, fault.status, _error(fault.message, "server_error", code=fault.status))
            return
        problem = self._problem(body)
        if problem is not None:
            await _json(send, rec, 400, _error(problem, "invalid_request_error", code=400))
            return
        if fault is not None and fault.kind == "slow_headers":
            await asyncio.sleep(fault.delay_s)
        prompt = self.tokens(body["messages"])
        rec.salt = self._salt(body)
        cached = self._cached(rec.salt, prompt)
        answer = self._answer(body)
        usage = (
            None
            if fault is not None and fault.kind == "no_usage"
            else self._usage(len(prompt), cached, answer)
        )
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if body.get("stream"):
                await self._stream(send, rec, body, answer, usage, fault)
            else:
                if fault is not None and fault.kind == "slow_words":
                    await asyncio.sleep(fault.delay_s * (len(answer.reasoning) + len(answer.content)))
                await self._whole(send, rec, body, answer, usage)
        finally:
            self.concurrent -= 1

    async def _whole(
        self, send: Any, rec: Received, body: dict[str, Any], answer: _Answer, usage: dict[str, Any] | None
    ) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.content)}
        if answer.reasoning:
            if self._inline(body):
                message["content"] = f"<think>{''.join(answer.reasoning)}</think>{message['content']}"
            else:
                message[self.reasoning_field] = "".join(answer.reasoning)
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": answer.finish}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [_logprob(w) for w in answer.content]}
        out: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
        }
        if usage is not None:
            out["usage"] = usage
        rec.usage_sent = usage
        await _json(send, rec, 200, out)

    async def _stream(
        self,
        send: Any,
        rec: Received,
        body: dict[str, Any],
        answer: _Answer,
        usage: dict[str, Any] | None,
        fault: Fault | None,
    ) -> None:
        rec.status = 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        if fault is not None and fault.kind == "slow_first_chunk":
            await asyncio.sleep(fault.delay_s)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

        async def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": extra.get("logprobs"), "finish_reason": finish}
                ],
            }
            await send({"type": "http.response.body", "body": _sse(data), "more_body": True})

        await chunk({"role": "assistant", "content": ""})
        inline = self._inline(body)
        pieces: list[tuple[str, str]] = []
        if answer.reasoning:
            if inline:
                pieces.append(("content", "<think>"))
                pieces += [("content", w) for w in answer.reasoning]
                pieces.append(("content", "</think>"))
            else:
                pieces += [(self.reasoning_field, w) for w in answer.reasoning]
        pieces += [("content", w) for w in answer.content]
        words = 0
        for i, (key, text) in enumerate(pieces):
            if fault is not None and fault.kind in ("drop", "error_chunk") and words == fault.after_words:
                await self._fail_mid_stream(send, fault)
                return
            lp = {"content": [_logprob(text)]} if body.get("logprobs") and key == "content" else None
            last = i == len(pieces) - 1
            await chunk({key: text}, answer.finish if last else None, logprobs=lp)
            words += 1
            await asyncio.sleep(fault.delay_s if fault is not None and fault.kind == "slow_words" else 0)
        if fault is not None and fault.kind in ("drop", "error_chunk") and words <= fault.after_words:
            await self._fail_mid_stream(send, fault)
            return
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        if usage is not None and include:
            rec.usage_sent = usage
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [],
                "usage": usage,
            }
            await send({"type": "http.response.body", "body": _sse(data), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _fail_mid_stream(self, send: Any, fault: Fault) -> None:
        if fault.kind == "error_chunk":
            err = _error(fault.message, "internal_error", code=500)
            await send({"type": "http.response.body", "body": _sse(err), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            return
        # An exception after the response started: uvicorn closes the connection without
        # the chunked body's terminator, as a crashed engine would.
        raise ConnectionAbortedError("scripted drop mid-stream")


def _spaced(words: list[str]) -> list[str]:
    """Stream pieces as BPE tokens come: the first word bare, the rest with a leading space."""
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.05, "bytes": list(token.encode()), "top_logprobs": []}


def _error(message: str, type_: str, *, code: int | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def _json(send: Any, rec: Received, status: int, data: dict[str, Any]) -> None:
    rec.status = status
    payload = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
