"""An instant OpenAI-compatible upstream for the gateway-overhead benchmark.

A raw asyncio HTTP/1.1 server (uvloop when installed) that answers every
`POST /v1/chat/completions` with one fixed completion and its usage, at once: non-streaming
as one JSON body, streaming (`"stream": true`) as SSE chunks with the usage in the last chunk
(as vLLM does with `stream_options.include_usage`). `GET /v1/models` answers the model list
(the gateway's health check), `GET /stats` the connections and completions served so far.
Keep-alive and pipelined requests are served on one connection.
It does no work per request beyond finding the request's end and one `json.loads`, so it is
far faster than anything in front of it and the difference measures the proxy.

    python bench/instant_upstream.py --port 18001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import cast

CONTENT = "Paris is the capital of France."
PROMPT_TOKENS = 24
CACHED_TOKENS = 16
COMPLETION_TOKENS = 8
_USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: bytes) -> bytes:
    head = (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: keep-alive\r\n\r\n"
    )
    return head + body


def _answer(model: str) -> bytes:
    body = {
        "id": "chatcmpl-instant",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _USAGE,
    }
    return _response("200 OK", _dump(body), b"application/json")


def _stream(model: str) -> bytes:
    base = {
        "id": "chatcmpl-instant",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    words = CONTENT.split(" ")
    chunks = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    ]
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": _USAGE})
    body = b"".join(b"data: " + _dump(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return _response("200 OK", body, b"text/event-stream")


_MODELS = _response(
    "200 OK",
    _dump({"object": "list", "data": [{"id": "instant", "object": "model", "owned_by": "bench"}]}),
    b"application/json",
)
_NOT_FOUND = _response(
    "404 Not Found",
    _dump({"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": None}}),
    b"application/json",
)
_BAD = _response(
    "400 Bad Request",
    _dump(
        {
            "error": {
                "message": "body is not JSON",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    ),
    b"application/json",
)


class _Cache:
    """The answers per (model, stream), built once: the upstream costs nothing per request.
    Also counts connections and completions (GET /stats), to see whether callers keep alive."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, bool], bytes] = {}
        self.connections = 0
        self.completions = 0

    def get(self, model: str, stream: bool) -> bytes:
        key = (model, stream)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = _stream(model) if stream else _answer(model)
        return answer


class InstantHTTP(asyncio.Protocol):
    def __init__(self, cache: _Cache) -> None:
        self._cache = cache
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._cache.connections += 1

    def data_received(self, data: bytes) -> None:
        self._buf += data
        out = []
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self._buf[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)].strip())
            total = end + 4 + length
            if len(self._buf) < total:
                break
            body = self._buf[end + 4 : total]
            self._buf = self._buf[total:]
            out.append(self._handle(head, body))
        if out and self._transport is not None:
            self._transport.write(b"".join(out))

    def _handle(self, head: bytes, body: bytes) -> bytes:
        line = head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        method, path = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        if method == b"GET" and path.endswith(b"/models"):
            return _MODELS
        if method == b"GET" and path == b"/stats":
            stats = {"connections": self._cache.connections, "completions": self._cache.completions}
            return _response("200 OK", _dump(stats), b"application/json")
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            return _NOT_FOUND
        try:
            request = json.loads(body)
        except ValueError:
            return _BAD
        if not isinstance(request, dict):
            return _BAD
        self._cache.completions += 1
        return self._cache.get(str(request.get("model", "instant")), bool(request.get("stream")))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    cache = _Cache()
    server = await loop.create_server(
        lambda: InstantHTTP(cache), host, port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"instant upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18001)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
