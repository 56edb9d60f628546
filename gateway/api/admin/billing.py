"""Admin API: usage, invoices, savings, budgets, prices and on-demand billing jobs."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put

from billing.budgets.types import BudgetScope, BudgetStatus
from billing.catalog.io import render_catalog
from billing.cost import units_to_usd_str
from billing.db import utcnow
from billing.jobs import TASKS, JobContext
from billing.ledger.invoices import generate_invoice
from billing.ledger.savings import savings_report
from gateway.api.admin.tenants import tenant_id_of
from gateway.api.auth import require_admin
from gateway.api.periods import day_range, parse_month
from gateway.api.schemas import decode_body
from gateway.api.usage import FormatParam, usage_report
from gateway.auth import budgets
from gateway.auth import service as auth
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.service.recording import record_billing_events

# Budget limits are stored in integer units of 1e-12 USD in a signed 64-bit column.
MAX_LIMIT_USD = Decimal(2**63 - 1).scaleb(-12)


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    limit_usd: Annotated[str, msgspec.Meta(pattern=r"^\d+(\.\d+)?$")]
    period: Literal["day", "month", "none"] = "month"
    mode: Literal["hard", "soft"] = "hard"
    alert_thresholds: list[Annotated[int, msgspec.Meta(gt=0, le=1000)]] = msgspec.field(
        default_factory=lambda: [50, 80, 100]
    )


@get("/tenants/{name:str}/usage")
async def tenant_usage(
    request: Request[Any, Any, Any],
    name: str,
    fmt: FormatParam = "json",
    start: str | None = None,
    end: str | None = None,
) -> Response[Any]:
    await require_admin(request)
    services = request.app.state.services
    return await usage_report(services, await tenant_id_of(services, name), start, end, fmt)


@get("/tenants/{name:str}/invoices/{month:str}")
async def tenant_invoice(request: Request[Any, Any, Any], name: str, month: str) -> dict[str, Any]:
    """The month's invoice (a draft until the monthly job finalises it)."""
    await require_admin(request)
    services = request.app.state.services
    document = await generate_invoice(
        services.sessions, await tenant_id_of(services, name), parse_month(month)
    )
    return document.to_json()


@get("/tenants/{name:str}/savings")
async def tenant_savings(
    request: Request[Any, Any, Any], name: str, start: str | None = None, end: str | None = None
) -> dict[str, Any]:
    """What the tenant's traffic would have cost at the comparator list prices."""
    await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    first, last = day_range(start, end)
    await services.metering.writer.flush()  # exact up to the last settled request
    async with services.sessions() as session:
        report = await savings_report(session, services.metering.catalog, tenant_id, first, last)
    return report.to_json()


def budget_json(status: BudgetStatus) -> dict[str, Any]:
    """A budget in the PUT's shape, plus its current period's counters (1e-12 USD units,
    and the same amounts as exact USD decimal strings)."""
    b = status.budget
    return {
        "scope": str(b.scope),
        "scope_id": b.scope_id,
        "limit_usd": units_to_usd_str(b.limit_units),
        "period": str(b.period),
        "mode": str(b.mode),
        "alert_thresholds": list(b.alert_thresholds),
        "limit_units": b.limit_units,
        "current_period": status.period,
        "spent_usd": units_to_usd_str(status.spent_units),
        "spent_units": status.spent_units,
        "reserved_usd": units_to_usd_str(status.reserved_units),
        "reserved_units": status.reserved_units,
        "remaining_usd": units_to_usd_str(status.remaining_units),
        "remaining_units": status.remaining_units,
    }


@get("/tenants/{name:str}/budget")
async def show_budget(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """The tenant's budget (`budget` is null when it has none) and its keys' budgets, each
    with what is spent and held by requests in flight in the current period."""
    await require_admin(request)
    services = request.app.state.services
    async with services.sessions() as session:
        tenant = await auth.get_tenant_by_name(session, name)
        prefixes = {k.id: k.display_prefix for k in await auth.list_keys(session, tenant.id)}
    metering = services.metering
    at = utcnow()
    own: dict[str, Any] | None = None
    keys: list[dict[str, Any]] = []
    for budget in await metering.budget_store.of_tenant(tenant.id):
        shown = budget_json(await metering.budget_status(budget, at))
        if budget.scope is BudgetScope.TENANT:
            own = shown
        else:
            keys.append({**shown, "key_prefix": prefixes.get(budget.scope_id)})
    return {
        "tenant": tenant.name,
        "tenant_id": tenant.id,
        "as_of": at.isoformat(),
        "budget": own,
        "key_budgets": keys,
    }


async def put_budget(
    services: Any, actor: str, body: BudgetBody, scope: BudgetScope, scope_id: str, tenant_id: str
) -> dict[str, Any]:
    """Set a tenant's or a key's budget from a PUT body (audited); this process forgets its
    cached copy at once."""
    if Decimal(body.limit_usd) > MAX_LIMIT_USD:  # the BIGINT column of 1e-12 USD units
        raise InvalidRequestError(f"limit_usd must be at most {MAX_LIMIT_USD}", param="limit_usd")
    payload = await budgets.set_budget(
        services.metering.budget_store,
        services.sessions,
        scope=scope,
        scope_id=scope_id,
        tenant_id=tenant_id,
        limit_usd=Decimal(body.limit_usd),
        period=body.period,
        mode=body.mode,
        alert_thresholds=body.alert_thresholds,
        actor=actor,
    )
    services.metering.forget_budgets(tenant_id)
    return payload


async def delete_budget(services: Any, actor: str, scope: BudgetScope, scope_id: str, tenant_id: str) -> bool:
    """Remove a tenant's or a key's budget (audited); False when there was none."""
    removed = await budgets.clear_budget(
        services.metering.budget_store, services.sessions, scope=scope, scope_id=scope_id, actor=actor
    )
    services.metering.forget_budgets(tenant_id)
    return removed


@put("/tenants/{name:str}/budget")
async def set_budget(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body(), BudgetBody)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    return await put_budget(services, admin.actor, body, BudgetScope.TENANT, tenant_id, tenant_id)


@delete("/tenants/{name:str}/budget", status_code=200)
async def clear_budget(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """Remove the tenant's budget (its keys' own budgets stay); `removed` is false when it
    had none."""
    admin = await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    removed = await delete_budget(services, admin.actor, BudgetScope.TENANT, tenant_id, tenant_id)
    return {"tenant": name, "tenant_id": tenant_id, "removed": removed}


@get("/prices")
async def export_prices(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    return render_catalog(await request.app.state.services.metering.reload_catalog())


@post("/prices", status_code=200)
async def import_prices(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Import versions, promotions and comparators (JSON body in the export's shape)."""
    admin = await require_admin(request)
    document = decode_body(await request.body(), dict[str, Any])
    services = request.app.state.services
    change = await services.metering.catalog_store.import_document(document, actor=admin.actor)
    await record_billing_events(services.sessions, [change.event])
    await services.metering.reload_catalog()
    return render_catalog(change.catalog)


@post("/jobs/{task:str}", status_code=200)
async def run_job(request: Request[Any, Any, Any], task: str) -> dict[str, Any]:
    """Run a billing job now (for example `billing.hourly_rollup` before reading usage)."""
    await require_admin(request)
    job = TASKS.get(task)
    if job is None:
        raise NotFoundError(f"no job {task!r}; jobs: {', '.join(sorted(TASKS))}", param="task")
    services = request.app.state.services
    try:
        result = await job(JobContext(sessions=services.sessions, budgets=services.metering.budgets))
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    return {"task": task, "result": result}


billing_router = Router(
    path="/admin",
    route_handlers=[
        tenant_usage,
        tenant_invoice,
        tenant_savings,
        show_budget,
        set_budget,
        clear_budget,
        export_prices,
        import_prices,
        run_job,
    ],
)
