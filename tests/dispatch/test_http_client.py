"""The replicas' HTTP/1.1 client against real sockets: a scripted asyncio server that answers
each request with the bytes a test gives (framings, closes, stalls, malformed answers)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from inference.dispatch.http_client import (
    ConnectError,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    ReplicaHttpClient,
    Timeouts,
)

Answer = Callable[[bytes], bytes | None]  # the request (head + body) -> bytes to send, None: close


class ScriptedServer:
    """Answers each request on a connection with `answer(request)`; counts connections and
    keeps every request it read."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        self.answer = answer
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out = self.answer(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close_idle(self) -> None:
        for w in self.writers:
            w.close()

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.close_idle()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"


def fixed(status: int, body: bytes, *extra: str) -> Answer:
    head = "".join(f"{h}\r\n" for h in extra)
    out = b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), head.encode(), body)
    return lambda request: out


def chunked(*parts: bytes) -> Answer:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nx-trailer: 1\r\n\r\n"
    return lambda request: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., ReplicaHttpClient]]:
    clients: list[ReplicaHttpClient] = []

    def make(url: str, **kw: object) -> ReplicaHttpClient:
        client = ReplicaHttpClient(url, headers={"authorization": "Bearer sk-secret"}, **kw)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    async with ScriptedServer(fixed(200, b'{"ok": true}')) as server:
        client = client_for(server.url)
        for _ in range(5):
            response = await client.request("POST", "/chat/completions", content=b'{"a":1}')
            assert response.status_code == 200 and response.json() == {"ok": True}
        assert server.connections == 1 and len(server.requests) == 5
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nauthorization: Bearer sk-secret\r\n" in first
        assert b"\r\nhost: 127.0.0.1:" in first and first.endswith(b'\r\n\r\n{"a":1}')


async def test_chunked_answers_stream_as_lines(client_for: Callable[..., ReplicaHttpClient]) -> None:
    # Lines split across chunks (and a multi-byte character split between two), \r\n ends.
    async with ScriptedServer(
        chunked(b'data: {"x": "Par', b"is \xc3", b'\xa9"}\r\n\r\ndata: [DONE]\n')
    ) as server:
        client = client_for(server.url)
        for _ in range(2):
            async with client.stream("POST", "/chat/completions") as response:
                lines = [line async for line in response.aiter_lines()]
            assert lines == ['data: {"x": "Paris é"}', "", "data: [DONE]"]
        assert server.connections == 1  # read whole: back in the pool


async def test_an_answer_delimited_by_the_close_is_read_whole_and_not_reused(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 200_000
    async with ScriptedServer(lambda r: answer, close_after_answer=True) as server:
        client = client_for(server.url)
        for _ in range(2):
            assert len(await (await client.request("GET", "/models")).aread()) == 200_000
        assert server.connections == 2


async def test_connection_close_header_and_unread_bodies_do_not_return_to_the_pool(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    async with ScriptedServer(fixed(200, b"{}", "connection: close")) as server:
        client = client_for(server.url)
        await client.request("GET", "/models")
        await client.request("GET", "/models")
        assert server.connections == 2
    async with ScriptedServer(chunked(b"a" * 10, b"b" * 10)) as server:
        client = client_for(server.url)
        async with client.stream("POST", "/x") as response:
            assert response.status_code == 200  # body left unread
        await client.request("POST", "/x")
        assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    async with ScriptedServer(fixed(200, b"{}")) as server:
        client = client_for(server.url)
        await client.request("GET", "/models")
        server.close_idle()
        await asyncio.sleep(0.05)  # the event loop sees the close
        assert (await client.request("GET", "/models")).status_code == 200
        assert server.connections == 2


async def test_a_reused_connection_closed_just_as_the_request_went_out_is_retried_once(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", None])

    def first_then_close(request: bytes) -> bytes | None:
        return next(answers, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    async with ScriptedServer(first_then_close) as server:
        client = client_for(server.url)
        await client.request("POST", "/x", content=b"1")
        # The server reads the next request on the kept connection and closes without answering.
        assert (await client.request("POST", "/x", content=b"2")).status_code == 200
        assert server.connections == 2 and len(server.requests) == 3


async def test_timeouts_and_failures_are_named(client_for: Callable[..., ReplicaHttpClient]) -> None:
    async with ScriptedServer(lambda r: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{") as server:
        client = client_for(server.url, timeouts=Timeouts(read=0.2))
        with pytest.raises(ReadTimeout):  # the body stalls
            await client.request("GET", "/models")
    async with ScriptedServer(lambda r: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
        with pytest.raises(RemoteProtocolError):
            await client_for(server.url).request("GET", "/models")
    async with ScriptedServer(lambda r: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{") as server:
        server.close_after_answer = True
        with pytest.raises(RemoteProtocolError, match="closed before the answer ended"):
            await client_for(server.url).request("GET", "/models")
    async with ScriptedServer(fixed(200, b"")) as server:
        url = server.url
    with pytest.raises(ConnectError) as err:
        await client_for(url).request("GET", "/models")
    assert "sk-secret" not in str(err.value)


async def test_at_most_max_connections_then_a_pool_timeout(
    client_for: Callable[..., ReplicaHttpClient],
) -> None:
    release = asyncio.Event()

    async def slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_server, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = client_for(url, max_connections=2, timeouts=Timeouts(pool=0.2))
        running = [asyncio.create_task(client.request("GET", "/")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout):
            await client.request("GET", "/")
        release.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
    finally:
        server.close()


def test_urls_and_headers_are_checked() -> None:
    with pytest.raises(ValueError, match="http"):
        ReplicaHttpClient("ftp://example.com")
    with pytest.raises(ValueError, match="line breaks"):
        ReplicaHttpClient("http://example.com", headers={"authorization": "Bearer x\r\nhost: evil"})


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_with_a_private_ca(tmp_path: Path, client_for: Callable[..., ReplicaHttpClient]) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"hello"')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        trusting = ssl.create_default_context(cafile=str(cert))
        client = client_for(f"https://localhost:{port}", ssl_context=trusting)
        assert (await client.request("GET", "/")).json() == "hello"
        with pytest.raises(ConnectError):  # the system's CA store does not know this certificate
            await client_for(f"https://localhost:{port}").request("GET", "/")
    finally:
        server.close()
