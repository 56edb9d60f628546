"""Serves the operators' web console: one HTML page, two scripts, one stylesheet.

The files are package data (gateway/console/static/), read once when the app is built.
They carry no data: the page calls the admin API with the operator's key, so serving them
without authentication is fine. Every response carries a strict Content-Security-Policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from litestar import Response, Router, get

from gateway.errors import NotFoundError

# No inline script or style anywhere; the page only talks to its own origin and cannot be
# framed. form-action 'none': a form submitted before the script loads goes nowhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}

# name -> media type (Litestar appends "; charset=utf-8" to text types); nothing else under
# /console is served.
ASSETS = {
    "console-core.js": "text/javascript",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
INDEX = "index.html"


@dataclass(frozen=True)
class ConsoleFile:
    body: bytes
    media_type: str
    cache_control: str

    def response(self) -> Response[bytes]:
        headers = {**SECURITY_HEADERS, "cache-control": self.cache_control}
        return Response(self.body, media_type=self.media_type, headers=headers)


def load_files() -> dict[str, ConsoleFile]:
    static = resources.files("gateway.console").joinpath("static")
    files = {INDEX: ConsoleFile(static.joinpath(INDEX).read_bytes(), "text/html", "no-store")}
    for name, media_type in ASSETS.items():
        files[name] = ConsoleFile(static.joinpath(name).read_bytes(), media_type, "no-cache")
    return files


def console_router() -> Router:
    """The /console routes (GET /console and GET /console/{asset})."""
    files = load_files()

    @get("/", include_in_schema=False, sync_to_thread=False)
    def console_index() -> Response[bytes]:
        return files[INDEX].response()

    @get("/{asset:str}", include_in_schema=False, sync_to_thread=False)
    def console_asset(asset: str) -> Response[bytes]:
        file = files.get(asset) if asset in ASSETS else None
        if file is None:
            raise NotFoundError(f"no console file {asset!r}", param="asset")
        return file.response()

    handlers: list[Any] = [console_index, console_asset]
    return Router(path="/console", route_handlers=handlers)
