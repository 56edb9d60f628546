"""What served a tenant's traffic in a period: artifacts, licenses, regions, hardware.

Built from the tenant's request audit events (each records the deployment that served it;
events written before requests carried ``deployment`` are attributed through the registry
by artifact name), cross-checked against the usage records of the same period. Exported
as a JSON-ready dict (``build_report``) or CSV (``report_csv``), one row per deployment
artifact with the requests and tokens it served.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from billing.models import UsageRecord
from gateway.audit.models import AuditEvent
from gateway.compliance.registry import candidates
from gateway.errors import InvalidRequestError

CSV_COLUMNS = (
    "tenant_id",
    "period_start",
    "period_end",
    "model",
    "variant",
    "deployment",
    "pool",
    "region",
    "vendor",
    "device_kind",
    "software_stack",
    "sovereign",
    "artifact",
    "artifact_kind",
    "license",
    "patent_grant",
    "sha256",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_usd",
)
_UNKNOWN_POOL = {
    "name": "unknown",
    "region": "unknown",
    "vendor": "unknown",
    "device_kind": "unknown",
    "software_stack": "unknown",
    "sovereign": None,
}


def parse_period(start: str, end: str) -> tuple[dt.datetime, dt.datetime]:
    """``--from``/``--to`` as given on the CLI or API: dates are whole UTC days, ``to`` included;
    ISO datetimes are taken as they are (UTC when no offset), ``to`` excluded."""

    def one(value: str, *, upper: bool) -> dt.datetime:
        try:
            if len(value) == 10:
                day = dt.date.fromisoformat(value)
                return dt.datetime.combine(day + dt.timedelta(days=1 if upper else 0), dt.time(), dt.UTC)
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequestError(f"not a date or ISO datetime: {value!r}", param="from/to") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    lo, hi = one(start, upper=False), one(end, upper=True)
    if hi <= lo:
        raise InvalidRequestError("the period ends before it starts", param="to")
    return lo, hi


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


async def _fallback_deployments(session: AsyncSession) -> dict[tuple[str, str], dict[str, Any]]:
    """(model id, weights artifact name) -> deployment dict, from the current registry."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for c in await candidates(session):
        for a in c.artifacts:
            if a.kind == "model_weights":
                found.setdefault((c.model_id, a.name), c.audit_dict())
    return found


def _served_by(payload: dict[str, Any], fallback: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    deployment = payload.get("deployment")
    if isinstance(deployment, dict) and deployment.get("artifacts"):
        return deployment
    artifact = payload.get("artifact") or {}
    decision = payload.get("decision") or {}
    model = decision.get("model") or payload.get("model") or "unknown"
    known = fallback.get((model, artifact.get("name", "")))
    if known is not None:
        return {**known, "attributed": "registry"}
    return {
        "name": "unknown",
        "model_id": model,
        "variant": decision.get("variant") or payload.get("variant"),
        "pool": _UNKNOWN_POOL,
        "attributed": "event",
        "artifacts": [
            {
                "name": artifact.get("name", "unknown"),
                "kind": "model_weights",
                "license": artifact.get("license", "NOASSERTION"),
                "patent_grant": "unknown",
                "sha256": artifact.get("sha256"),
            }
        ],
    }


async def build_report(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> dict[str, Any]:
    """The report for one tenant and period [start, end) as a JSON-ready dict."""
    fallback = await _fallback_deployments(session)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    licenses: dict[str, int] = defaultdict(int)
    regions: dict[str, int] = defaultdict(int)
    hardware: dict[tuple[Any, ...], int] = defaultdict(int)
    requests = attributed_by_registry = unattributed = 0
    query = (
        select(AuditEvent.kind, AuditEvent.payload)
        .where(
            AuditEvent.tenant_id == tenant_id,
            AuditEvent.kind.like("request.%"),
            AuditEvent.at >= start,
            AuditEvent.at < end,
        )
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=1000)
    )
    async for _kind, payload in await session.stream(query):
        requests += 1
        served = _served_by(payload, fallback)
        attributed_by_registry += served.get("attributed") == "registry"
        unattributed += served.get("attributed") == "event"
        pool = served.get("pool") or _UNKNOWN_POOL
        usage = payload.get("usage") or {}
        cost = _decimal((payload.get("cost") or {}).get("cost_usd"))
        regions[str(pool.get("region") or "unknown")] += 1
        hardware[
            (
                pool.get("name"),
                pool.get("vendor"),
                pool.get("device_kind"),
                pool.get("software_stack"),
                pool.get("sovereign"),
                pool.get("region"),
            )
        ] += 1
        seen_licenses = set()
        for art in served.get("artifacts") or []:
            seen_licenses.add(art.get("license", "NOASSERTION"))
            key = (
                served.get("model_id"),
                served.get("variant"),
                served.get("name"),
                pool.get("name"),
                art.get("name"),
                art.get("sha256"),
            )
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "model": served.get("model_id"),
                    "variant": served.get("variant"),
                    "deployment": served.get("name"),
                    "pool": pool.get("name"),
                    "region": pool.get("region"),
                    "vendor": pool.get("vendor"),
                    "device_kind": pool.get("device_kind"),
                    "software_stack": pool.get("software_stack"),
                    "sovereign": pool.get("sovereign"),
                    "artifact": art.get("name"),
                    "artifact_kind": art.get("kind"),
                    "license": art.get("license"),
                    "patent_grant": art.get("patent_grant"),
                    "sha256": art.get("sha256"),
                    "requests": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "reasoning_tokens": 0,
                    "cost_usd": Decimal(0),
                }
            row["requests"] += 1
            for field in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
                row[field] += int(usage.get(field) or 0)
            row["cost_usd"] += cost
        for lic in seen_licenses:
            licenses[lic] += 1

    usage_records = await session.scalar(
        select(func.count())
        .select_from(UsageRecord)
        .where(
            UsageRecord.tenant_id == tenant_id, UsageRecord.started_at >= start, UsageRecord.started_at < end
        )
    )
    served_rows = sorted(
        rows.values(), key=lambda r: (str(r["model"]), str(r["deployment"]), str(r["artifact"]))
    )
    for r in served_rows:
        r["cost_usd"] = str(r["cost_usd"])
    artifacts: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in served_rows:
        a = artifacts.setdefault(
            (r["artifact"], r["sha256"]),
            {
                "name": r["artifact"],
                "kind": r["artifact_kind"],
                "license": r["license"],
                "patent_grant": r["patent_grant"],
                "sha256": r["sha256"],
                "requests": 0,
            },
        )
        a["requests"] += r["requests"]
    return {
        "tenant_id": tenant_id,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "generated_at": utcnow().isoformat(),
        "requests": requests,
        "usage_records": int(usage_records or 0),
        "attributed_by_registry": attributed_by_registry,
        "unattributed": unattributed,
        "artifacts": list(artifacts.values()),
        "licenses": dict(sorted(licenses.items())),
        "regions": dict(sorted(regions.items())),
        "hardware": [
            {
                "pool": k[0],
                "vendor": k[1],
                "device_kind": k[2],
                "software_stack": k[3],
                "sovereign": k[4],
                "region": k[5],
                "requests": n,
            }
            for k, n in sorted(hardware.items(), key=lambda kv: str(kv[0]))
        ],
        "served_by": served_rows,
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # keep spreadsheet programs from reading it as a formula
    return value


def report_csv(report: dict[str, Any]) -> str:
    """The report's ``served_by`` rows as CSV (header first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report["served_by"]:
        writer.writerow(
            {
                "tenant_id": report["tenant_id"],
                "period_start": report["period"]["start"],
                "period_end": report["period"]["end"],
                **{k: _cell(v) for k, v in row.items()},
            }
        )
    return out.getvalue()
