"""The usage ledger: one record per request attempt."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("request_id", "attempt", name="uq_usage_records_request_attempt"),
        Index("ix_usage_records_tenant_started", "tenant_id", "started_at"),
        # The rollup job finds the hours to rebuild by ingestion time (late, replayed
        # records included) and rebuilds each hour by request start time.
        Index("ix_usage_records_ingested_at", "ingested_at"),
        Index("ix_usage_records_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
    )
    model: Mapped[str] = mapped_column(String(64))  # the model id the response names
    variant: Mapped[str] = mapped_column(String(16))  # flash | pro
    mode: Mapped[str] = mapped_column(String(16))  # non-think | think-high | think-max
    artifact_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # completed | cancelled | failed
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    stream: Mapped[bool] = mapped_column(default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_cache_hit_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_cache_miss_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Money in integer units of 1e-12 USD (see docs/billing.md); null until priced.
    price_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cost_cache_hit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_cache_miss: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_output: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the row reached the database (set by the ledger writer, also on spool replay).
    ingested_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )


# The other billing tables, imported here so that gateway/db_models.py sees them all.
from billing.budgets.models import BudgetRow  # noqa: E402
from billing.catalog.models import PriceComparatorRow, PricePromotionRow, PriceVersionRow  # noqa: E402
from billing.ledger.models import BillingJobState, Invoice, UsageDaily, UsageHourly  # noqa: E402

__all__ = [
    "BillingJobState",
    "BudgetRow",
    "Invoice",
    "PriceComparatorRow",
    "PricePromotionRow",
    "PriceVersionRow",
    "UsageDaily",
    "UsageHourly",
    "UsageRecord",
]
