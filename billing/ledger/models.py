"""Ledger tables besides usage_records: the hourly rollup, invoices, job state."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class UsageSums:
    """The summed columns shared by the rollup levels (tokens and exact cost units)."""

    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hit_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_miss_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_cache_hit: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_cache_miss: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_output: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_total: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageHourly(UsageSums, Base):
    """Usage summed per tenant, key, UTC hour (by request start), variant and mode.

    Rebuilt hour by hour from usage_records by the rollup job (idempotent); a tenant's
    month is at most 744 hours x keys x 6 rows, read through the primary key prefix.
    `api_key_id` is '' for requests without a key.
    """

    __tablename__ = "usage_hourly"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    variant: Mapped[str] = mapped_column(String(16), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), primary_key=True)


class UsageDaily(UsageSums, Base):
    """usage_hourly summed per tenant, UTC day, variant and mode (all keys together):
    a tenant's month is at most 31 x 6 rows. Rebuilt from usage_hourly with it."""

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)  # 00:00 UTC
    variant: Mapped[str] = mapped_column(String(16), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), primary_key=True)


class Invoice(Base):
    """A tenant's monthly invoice. Lines are exact (units of 1e-12 USD); only the total is
    rounded, once, to cents half-even (see docs/billing.md)."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "period_start", name="uq_invoices_tenant_period"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | final
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    total_units: Mapped[int] = mapped_column(BigInteger, default=0)
    total_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BillingJobState(Base):
    """Small key/value state of the background jobs (e.g. the rollup's last run)."""

    __tablename__ = "billing_job_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
