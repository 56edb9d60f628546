"""Monthly invoices per tenant: line items by variant, mode and token class.

Line amounts are exact (units of 1e-12 USD, shown as exact decimal strings); the invoice
total is the exact sum rounded once to whole cents, half-even. Rounded line amounts are
deliberately not shown, so the lines always add up to the exact total. A draft may be
regenerated any number of times; a final invoice never changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.cost import cents_to_usd_str, round_units_to_cents, units_to_usd_str
from billing.db import transaction, utcnow
from billing.ledger.models import Invoice
from billing.ledger.queries import tenants_with_usage, usage_by_variant_mode
from billing.ledger.rollup import rollup_period


def month_bounds(month: dt.date | dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def previous_month(now: dt.datetime) -> dt.date:
    first = now.astimezone(dt.UTC).date().replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    tenant_id: str
    period_start: dt.datetime
    period_end: dt.datetime
    lines: tuple[dict[str, Any], ...]
    total_units: int
    status: str = "draft"

    @property
    def total_cents(self) -> int:
        return round_units_to_cents(self.total_units)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "status": self.status,
            "currency": "USD",
            "lines": list(self.lines),
            "subtotal_exact_usd": units_to_usd_str(self.total_units),
            "total_usd": cents_to_usd_str(self.total_cents),
            "rounding": "total rounded once to cents, half-even",
        }


async def build_invoice(session: AsyncSession, tenant_id: str, month: dt.date) -> InvoiceDocument:
    """The invoice of `month` from the rollup (run the rollup for the month first)."""
    start, end = month_bounds(month)
    by_vm = await usage_by_variant_mode(session, tenant_id, start, end)
    lines: list[dict[str, Any]] = []
    total = 0
    for (variant, mode), t in sorted(by_vm.items()):
        for tc, tokens, units in t.line_items():
            if tokens == 0 and units == 0:
                continue
            lines.append(
                {
                    "variant": variant,
                    "mode": mode,
                    "token_class": str(tc),
                    "tokens": tokens,
                    "amount_units": units,
                    "amount_usd": units_to_usd_str(units),
                }
            )
            total += units
    return InvoiceDocument(tenant_id, start, end, tuple(lines), total)


async def generate_invoice(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, month: dt.date, *, finalize: bool = False
) -> InvoiceDocument:
    """Build and store (upsert) the tenant's invoice; a final invoice is returned unchanged."""
    async with transaction(sessions) as session:
        start, _ = month_bounds(month)
        row = (
            await session.scalars(
                select(Invoice)
                .where(Invoice.tenant_id == tenant_id, Invoice.period_start == start)
                .with_for_update()
            )
        ).one_or_none()
        if row is not None and row.status == "final":
            return _from_row(row)
        doc = await build_invoice(session, tenant_id, month)
        status = "final" if finalize else "draft"
        if row is None:
            session.add(
                Invoice(
                    tenant_id=tenant_id,
                    period_start=doc.period_start,
                    period_end=doc.period_end,
                    status=status,
                    total_units=doc.total_units,
                    total_cents=doc.total_cents,
                    lines=list(doc.lines),
                )
            )
        else:
            row.lines, row.total_units, row.total_cents = list(doc.lines), doc.total_units, doc.total_cents
            row.status, row.updated_at = status, utcnow()
    return InvoiceDocument(
        doc.tenant_id, doc.period_start, doc.period_end, doc.lines, doc.total_units, status
    )


async def generate_monthly_invoices(
    sessions: async_sessionmaker[AsyncSession], month: dt.date, *, finalize: bool = True
) -> list[InvoiceDocument]:
    """The monthly job: rebuild the month's rollup, then invoice every tenant with usage."""
    start, end = month_bounds(month)
    await rollup_period(sessions, start, end)
    async with sessions() as session:
        tenants = await tenants_with_usage(session, start, end)
    return [await generate_invoice(sessions, t, month, finalize=finalize) for t in tenants]


async def get_invoice(session: AsyncSession, tenant_id: str, month: dt.date) -> InvoiceDocument | None:
    start, _ = month_bounds(month)
    row = (
        await session.scalars(
            select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.period_start == start)
        )
    ).one_or_none()
    return _from_row(row) if row else None


def _from_row(row: Invoice) -> InvoiceDocument:
    return InvoiceDocument(
        row.tenant_id, row.period_start, row.period_end, tuple(row.lines), row.total_units, row.status
    )
