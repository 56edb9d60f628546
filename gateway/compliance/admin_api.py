"""Admin API for the compliance room (register with ``handlers.append(compliance_router)``).

GET  /admin/compliance/artifacts | pools | deployments
POST /admin/compliance/artifacts | pools | deployments     (JSON bodies, audited with the admin)
GET  /admin/tenants/{name}/compliance/profile              (the active profile)
PUT  /admin/tenants/{name}/compliance/profile              (body: YAML or JSON text; 400 lists bad fields)
GET  /admin/tenants/{name}/compliance/report?from=&to=&format=json|csv
GET  /admin/audit/verify                                   (the `gateway audit verify --json` object)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post, put

from billing.db import transaction
from gateway.api.admin.tenants import tenant_id_of
from gateway.api.auth import require_admin
from gateway.audit.checkpoints import load_audit_key
from gateway.audit.verify import verify_chain
from gateway.compliance import profiles, registry
from gateway.compliance.reports import build_report, parse_period, report_csv
from gateway.errors import InvalidRequestError
from policy.errors import PolicyValidationError


def _invalidate(request: Request[Any, Any, Any], tenant_id: str | None = None) -> None:
    cache = getattr(request.app.state.services, "compliance", None)
    if cache is not None:
        cache.invalidate(tenant_id)


async def json_object_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001 - any parse failure is the client's
        raise InvalidRequestError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object")
    return body


def _fields(body: dict[str, Any], cls: Any, required: tuple[str, ...]) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequestError(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    missing = [k for k in required if not body.get(k)]
    if missing:
        raise InvalidRequestError(f"missing field(s): {', '.join(missing)}", param=missing[0])
    try:  # the field types (a number where a name goes is a 400, not a TypeError later)
        msgspec.convert(body, cls)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"Invalid request: {exc}") from None
    return body


@get("/compliance/artifacts")
async def list_artifacts(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        rows = [registry.artifact_dict(a) for a in await registry.list_artifacts(session)]
    return {"object": "list", "data": rows}


@post("/compliance/artifacts", status_code=201)
async def add_artifact(request: Request[Any, Any, Any]) -> dict[str, Any]:
    admin = await require_admin(request)
    body = _fields(
        await json_object_body(request), registry.ArtifactSpec, ("name", "kind", "license", "source")
    )
    async with transaction(request.app.state.services.sessions) as session:
        row = registry.artifact_dict(
            await registry.add_artifact(session, registry.ArtifactSpec(**body), actor=admin.actor)
        )
    _invalidate(request)
    return row


@get("/compliance/pools")
async def list_pools(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        rows = [registry.pool_dict(p) for p in await registry.list_pools(session)]
    return {"object": "list", "data": rows}


@post("/compliance/pools", status_code=201)
async def add_pool(request: Request[Any, Any, Any]) -> dict[str, Any]:
    admin = await require_admin(request)
    body = _fields(
        await json_object_body(request),
        registry.PoolSpec,
        ("name", "device_kind", "vendor", "software_stack", "region"),
    )
    async with transaction(request.app.state.services.sessions) as session:
        row = registry.pool_dict(
            await registry.add_pool(session, registry.PoolSpec(**body), actor=admin.actor)
        )
    _invalidate(request)
    return row


@get("/compliance/deployments")
async def list_deployments(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        return {"object": "list", "data": await registry.list_deployments(session)}


@post("/compliance/deployments", status_code=201)
async def add_deployment(request: Request[Any, Any, Any]) -> dict[str, Any]:
    admin = await require_admin(request)
    body = await json_object_body(request)
    keys = ("name", "model_id", "variant", "pool", "artifacts")
    texts = [body.get(k) for k in keys[:4]] + (
        body["artifacts"] if isinstance(body.get("artifacts"), list) else [0]
    )
    if set(body) != set(keys) or not all(isinstance(v, str) for v in texts):
        raise InvalidRequestError(f"the body needs exactly: {', '.join(keys)} (artifacts: a list of names)")
    async with transaction(request.app.state.services.sessions) as session:
        await registry.add_deployment(session, actor=admin.actor, **body)
    _invalidate(request)
    return {"name": body["name"], "model_id": body["model_id"], "pool": body["pool"]}


@get("/tenants/{name:str}/compliance/profile")
async def show_profile(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    async with services.sessions() as session:
        stored = await profiles.get_profile(session, tenant_id)
        versions = await profiles.list_versions(session, tenant_id)
    return {**stored.as_dict(), "source": stored.source, "versions": versions}


@put("/tenants/{name:str}/compliance/profile")
async def set_profile(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the profile document must be UTF-8 text") from None
    try:
        async with transaction(services.sessions) as session:
            stored = await profiles.set_profile(session, tenant_id, source, actor=admin.actor)
    except PolicyValidationError as exc:
        raise InvalidRequestError("; ".join(exc.errors), param=exc.rule, code=exc.code) from None
    _invalidate(request, tenant_id)
    return stored.as_dict()


@get("/tenants/{name:str}/compliance/report")
async def tenant_report(request: Request[Any, Any, Any], name: str) -> Response[Any]:
    await require_admin(request)
    services = request.app.state.services
    start, end = request.query_params.get("from"), request.query_params.get("to")
    fmt = request.query_params.get("format", "json")
    if not start or not end or fmt not in ("json", "csv"):
        raise InvalidRequestError("query parameters: from, to (YYYY-MM-DD or ISO datetime), format=json|csv")
    lo, hi = parse_period(start, end)
    tenant_id = await tenant_id_of(services, name)
    async with services.sessions() as session:
        report = await build_report(session, tenant_id, lo, hi)
    report["tenant"] = name
    if fmt == "csv":
        return Response(report_csv(report), media_type="text/csv; charset=utf-8")
    return Response(report)


@get("/audit/verify")
async def audit_verify(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    services = request.app.state.services
    settings = services.settings
    configured = getattr(settings, "audit_key", "") or os.environ.get("GATEWAY_AUDIT_KEY", "")
    key = load_audit_key(configured, settings.data_dir, create=False)
    async with services.sessions() as session:
        return (await verify_chain(session, key=key)).as_dict()


compliance_router = Router(
    path="/admin",
    route_handlers=[
        list_artifacts,
        add_artifact,
        list_pools,
        add_pool,
        list_deployments,
        add_deployment,
        show_profile,
        set_profile,
        tenant_report,
        audit_verify,
    ],
)
