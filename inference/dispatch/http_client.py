"""A small HTTP/1.1 client for the replicas: pool workers and upstream engines.

The dispatch hop is one POST per attempt to a known host, over keep-alive connections. httpx
cost about a quarter of the gateway's CPU per request there (its pool checked every idle
connection with a select() call per request, anyio wrapped every read and write), so this
client does only what that hop needs, on asyncio streams:

- one pool per replica: idle connections reused last-in first-out, at most `max_connections`
  open; a connection the server closed is seen by the event loop and dropped, not reused;
- a request goes out in one write (head and body); the answer is framed by Content-Length,
  chunked transfer coding, or the connection's end (then the connection is not reused);
- timeouts as the dispatcher needs them: connect, each read (a first token slower than that
  is a dead replica), each write, and the wait for a free connection;
- a request that fails on a reused connection before any byte of the answer came (the server
  closed it while idle, just as we sent) is sent once more on a new connection;
- http and https (the system's CA store); no proxies, redirects or cookies.

Every failure is an `HttpError`, named by its kind (ConnectError, ReadTimeout, ...); its
message never carries a header, so a credential cannot leak into an error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024


class HttpError(Exception):
    """Any failure to get an answer over HTTP (the replica is unreachable or misbehaved)."""


class ConnectError(HttpError):
    pass


class ConnectTimeout(HttpError):
    pass


class PoolTimeout(HttpError):
    pass


class WriteError(HttpError):
    pass


class WriteTimeout(HttpError):
    pass


class ReadError(HttpError):
    pass


class ReadTimeout(HttpError):
    pass


class RemoteProtocolError(HttpError):
    pass


@dataclass(frozen=True)
class Timeouts:
    connect: float = 2.0
    read: float = 120.0
    write: float = 10.0
    pool: float = 2.0


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def idle_usable(self) -> bool:
        # The event loop reads idle sockets too: a close by the server shows as EOF here,
        # without a system call per check.
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Response:
    """An answer whose body is read as it arrives (`aiter_raw`, `aiter_lines`) or whole
    (`aread`). Only valid inside the `stream()` block that produced it."""

    def __init__(
        self,
        status_code: int,
        headers: dict[str, str],
        conn: _Connection,
        framing: str,
        length: int,
        read_s: float,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self._conn = conn
        self._framing = framing  # "length", "chunked", "close" or "none"
        self._remaining = length
        self._read_s = read_s
        self._body: bytes | None = None
        self.complete = framing == "none"  # the whole body was read

    async def _read(self, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self._read_s):
                return await awaitable
        except TimeoutError:
            raise ReadTimeout(f"no data for {self._read_s:g} s") from None
        except asyncio.IncompleteReadError:
            raise RemoteProtocolError("the connection closed before the answer ended") from None
        except asyncio.LimitOverrunError:
            raise RemoteProtocolError("a chunk header is too long") from None
        except (ConnectionError, OSError) as exc:
            raise ReadError(type(exc).__name__) from None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        if self._framing == "length":
            while self._remaining > 0:
                data = await self._read(reader.read(min(self._remaining, READ_SIZE)))
                if not data:
                    raise RemoteProtocolError("the connection closed before the answer ended")
                self._remaining -= len(data)
                yield data
        elif self._framing == "chunked":
            while True:
                line = await self._read(reader.readuntil(b"\r\n"))
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise RemoteProtocolError("malformed chunk size") from None
                if size == 0:
                    while await self._read(reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailer fields
                    break
                data = await self._read(reader.readexactly(size + 2))
                yield data[:-2]
        elif self._framing == "close":
            while data := await self._read(reader.read(READ_SIZE)):
                yield data
        self.complete = True

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines, without their line ends (\\n or \\r\\n)."""
        pending = b""
        async for data in self.aiter_raw():
            pending += data
            if b"\n" not in data:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    async def aread(self) -> bytes:
        if self._body is None:
            self._body = b"".join([data async for data in self.aiter_raw()])
        return self._body

    def json(self) -> Any:
        if self._body is None:
            raise RuntimeError("the body was not read (await aread() first)")
        return json.loads(self._body)


def _parse_head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    """Status, headers (names lower-cased; repeated ones joined) and whether the connection
    may stay open after the answer."""
    try:
        lines = raw.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
    except (ValueError, IndexError):
        raise RemoteProtocolError("malformed status line") from None
    if not version.startswith("HTTP/1."):
        raise RemoteProtocolError("not an HTTP/1.x answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError("malformed header line")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return status, headers, keep_alive


class ReplicaHttpClient:
    """Keep-alive connections to one replica (`base_url`, whose path prefixes every request)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen, shared
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: for https, instead of the system's CA store (a private CA)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"replica URL must be http(s)://host[:port][/path], not {base_url!r}")
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        fields = {"host": host if default_port else f"{host}:{self._port}", **(headers or {})}
        for name, value in fields.items():
            if any(c in f"{name}{value}" for c in "\r\n"):
                raise ValueError("header names and values may not contain line breaks")
        self._fields = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")
        self._timeouts = timeouts
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def _connect(self, connect_s: float) -> _Connection:
        try:
            async with asyncio.timeout(connect_s):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                    limit=MAX_HEAD_BYTES,
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {connect_s:g} s") from None
        except OSError as exc:  # refused, unreachable, TLS failures (ssl.SSLError)
            raise ConnectError(type(exc).__name__) from None
        return _Connection(reader, writer)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_usable():
                return conn
            conn.close()
        return None

    async def _send(self, conn: _Connection, data: bytes, write_s: float) -> None:
        try:
            conn.writer.write(data)
            if conn.writer.transport.get_write_buffer_size():
                async with asyncio.timeout(write_s):
                    await conn.writer.drain()
        except TimeoutError:
            raise WriteTimeout(f"could not send within {write_s:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise WriteError(type(exc).__name__) from None

    async def _read_head(self, conn: _Connection, read_s: float) -> bytes:
        try:
            async with asyncio.timeout(read_s):
                while True:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                    # 1xx answers (100 Continue and the like) come before the real one.
                    if not raw.startswith(b"HTTP/1.1 1") or raw.startswith(b"HTTP/1.1 101"):
                        return raw
        except TimeoutError:
            raise ReadTimeout(f"no answer for {read_s:g} s") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise RemoteProtocolError("the connection closed inside the answer's head") from None
            raise ReadError("the server closed the connection without answering") from None
        except asyncio.LimitOverrunError:
            raise RemoteProtocolError("the answer's head is too long") from None
        except (ConnectionError, OSError) as exc:
            raise ReadError(type(exc).__name__) from None

    async def _exchange(self, request: bytes, timeouts: Timeouts) -> tuple[_Connection, bytes]:
        """Send on a reused connection or a new one; a reused one that fails before any byte
        of the answer is retried once on a new connection."""
        conn = self._take_idle()
        if conn is not None:
            try:
                await self._send(conn, request, timeouts.write)
                return conn, await self._read_head(conn, timeouts.read)
            except (WriteError, ReadError):
                conn.close()  # closed by the server while idle: nothing was answered
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(timeouts.connect)
        try:
            await self._send(conn, request, timeouts.write)
            return conn, await self._read_head(conn, timeouts.read)
        except BaseException:
            conn.close()
            raise

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, content: bytes = b"", timeout_s: float | None = None
    ) -> AsyncIterator[Response]:
        """Send one request; the block reads the answer. The connection goes back to the pool
        only when the block read the whole body."""
        if self._closed:
            raise RuntimeError("the client is closed")
        timeouts = self._timeouts
        if timeout_s is not None:
            timeouts = Timeouts(timeout_s, timeout_s, timeout_s, timeout_s)
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise PoolTimeout(f"no free connection within {timeouts.pool:g} s") from None
        else:
            await self._slots.acquire()
        try:
            request = b"%s %s%s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
                method.encode(),
                self._prefix.encode(),
                path.encode(),
                self._fields,
                len(content),
                content,
            )
            conn, raw = await self._exchange(request, timeouts)
            reusable = False
            try:
                status, headers, keep_alive = _parse_head(raw)
                if method == "HEAD" or status in (204, 304):
                    framing, length = "none", 0
                elif "chunked" in headers.get("transfer-encoding", "").lower():
                    framing, length = "chunked", 0
                elif "content-length" in headers:
                    try:
                        length = int(headers["content-length"])
                    except ValueError:
                        raise RemoteProtocolError("malformed content-length") from None
                    framing = "length" if length else "none"
                else:
                    framing, length, keep_alive = "close", 0, False
                response = Response(status, headers, conn, framing, length, timeouts.read)
                yield response
                reusable = keep_alive and response.complete and not self._closed
            finally:
                if reusable:
                    self._idle.append(conn)
                else:
                    conn.close()
        finally:
            self._slots.release()

    async def request(
        self, method: str, path: str, *, content: bytes = b"", timeout_s: float | None = None
    ) -> Response:
        """Send one request and read its whole answer."""
        async with self.stream(method, path, content=content, timeout_s=timeout_s) as response:
            await response.aread()
        return response

    async def get(self, path: str, *, timeout_s: float | None = None) -> Response:
        return await self.request("GET", path, timeout_s=timeout_s)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
