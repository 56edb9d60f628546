"""The OpenAPI 3.1 document at /schema/openapi.json and its interactive page at /schema.

Litestar generates the paths, operation ids and the parameters its handler signatures
declare; `complete()` then adds, once per app, what the handlers do not declare because
they parse their own bodies (to answer in the OpenAI error shape): the request and
response bodies from the real msgspec types (JSON Schema 2020-12, the dialect of OpenAPI
3.1), the error shape on every operation, and the two bearer-key schemes.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.types import Method

from gateway.api.openapi.operations import ALL_TYPES, OPERATIONS, Doc

TITLE = "DeepSeek gateway API"
REF = "#/components/schemas/{name}"
ERROR = {"$ref": "#/components/schemas/Error"}
SECURITY_SCHEMES = {
    "tenantKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant API key (`sk-gw-...`): `Authorization: Bearer KEY`.",
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator's admin key (`sk-gwa-...`, `gateway admin key create`). "
        "Tenant keys are refused (401).",
    },
}
_ERRORS = {
    "400": "Invalid request (the body, a parameter, or the context length)",
    "401": "Missing, unknown, expired or revoked key",
    "403": "Refused by the tenant's policy or compliance profile",
    "404": "Unknown path, tenant, key or object",
    "429": "Rate limit or budget exceeded (`retry-after` says when to retry)",
}


def operation_id(handler: HTTPRouteHandler, method: Method, path: list[str | Any]) -> str:
    """`admin_<handler>` for admin routes, the handler's name otherwise (unique)."""
    first = next((p for p in path if isinstance(p, str) and p), "")
    name = handler.handler_name
    return f"admin_{name}" if first == "admin" else name


class _Completer:
    """Completes the app's cached schema dict once (the render plugins share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: set[int] = set()

    def __call__(self, schema: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if id(schema) not in self._done:
                complete(schema)
                self._done.add(id(schema))
        return schema


class _Json(JsonRenderPlugin):
    def __init__(self, completer: _Completer) -> None:
        super().__init__()
        self._complete = completer

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self._complete(openapi_schema))


class _Scalar(ScalarRenderPlugin):
    """The interactive page (Scalar, loaded by the browser from its CDN); it reads
    /schema/openapi.json."""

    def __init__(self, completer: _Completer) -> None:
        super().__init__(path="/")
        self._complete = completer

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self._complete(openapi_schema))


def openapi_config(enabled: bool, version: str) -> OpenAPIConfig | None:
    """The config for Litestar(openapi_config=...); None when GATEWAY_OPENAPI=false."""
    if not enabled:
        return None
    completer = _Completer()
    return OpenAPIConfig(
        title=TITLE,
        version=version,
        path="/schema",
        description="OpenAI/DeepSeek-compatible chat completions with policy routing, exact "
        "metering and audit; and the operators' admin API. Errors always have the shape "
        '`{"error": {"message", "type", "param", "code"}}`; money is exact decimal strings.',
        render_plugins=[_Scalar(completer), _Json(completer)],
        operation_id_creator=operation_id,
        use_handler_docstrings=True,
    )


def components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(ALL_TYPES, ref_template=REF)
    return schemas


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _schema_of(type_: Any) -> dict[str, Any]:
    (schema,), _ = msgspec.json.schema_components([type_], ref_template=REF)
    return dict(schema)


def _success(doc: Doc | None, status: str, media: dict[str, Any]) -> dict[str, Any]:
    if doc is None or doc.response is None:
        return {"description": "Success", "content": media or _json({"type": "object"})}
    content = _json(_schema_of(doc.response))
    if doc.stream:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "Server-sent events: `data: <ChatCompletionChunk JSON>` events "
                "(components/schemas/ChatCompletionChunk), then `data: [DONE]`.",
            },
        }
    if doc.csv:
        content["text/csv"] = {"schema": {"type": "string", "description": "format=csv"}}
    return {"description": "Success" if status != "201" else "Created", "content": content}


def _complete_operation(path: str, method: str, op: dict[str, Any]) -> None:
    doc = OPERATIONS.get((method.upper(), path))
    admin = path.startswith("/admin")
    op["tags"] = ["admin"] if admin else ["public"]
    op["security"] = [{"adminKey": []}] if admin else [{"tenantKey": []}]
    if doc is not None and doc.summary:
        op["summary"] = doc.summary
    params = [p for p in op.get("parameters", []) if p.get("in") != "header" or p["name"] != "authorization"]
    for p in params:
        if p.get("in") == "query" and p.get("name") == "format":  # json | csv (checked: 400)
            p["schema"] = {"enum": ["json", "csv"], "default": "json"}
    for q in doc.query if doc else ():
        params.append(
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "schema": q.schema,
                "description": q.description,
            }
        )
    for h in doc.headers if doc else ():
        params.append(
            {
                "name": h.name,
                "in": "header",
                "required": False,
                "schema": h.schema,
                "description": h.description,
            }
        )
    if params:
        op["parameters"] = params
    if doc is not None and doc.request is not None:
        op["requestBody"] = {"required": True, "content": _json(_schema_of(doc.request))}
    elif doc is not None and doc.text_body:
        text = {"schema": {"type": "string"}}
        op["requestBody"] = {
            "required": True,
            "description": doc.text_body,
            "content": {"application/yaml": text, "application/json": text, "text/plain": text},
        }
    generated = op.get("responses", {})
    status = next((s for s in generated if s.startswith("2")), "200")
    media = generated.get(status, {}).get("content", {})
    responses: dict[str, Any] = {status: _success(doc, status, media)}
    for code, meaning in _ERRORS.items():
        responses[code] = {"description": meaning, "content": _json(ERROR)}
    responses["default"] = {"description": "Any other error, in the same shape", "content": _json(ERROR)}
    op["responses"] = responses


def complete(schema: dict[str, Any]) -> None:
    """Add bodies, errors and auth schemes to Litestar's generated document (in place)."""
    schema["openapi"] = "3.1.0"
    comps = schema.setdefault("components", {})
    comps["schemas"] = {**comps.get("schemas", {}), **components()}
    comps["securitySchemes"] = SECURITY_SCHEMES
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                _complete_operation(path, method, op)
