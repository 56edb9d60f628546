"""Budget configuration rows (the live counters live in Redis or in process)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class BudgetRow(Base):
    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("scope", "scope_id", name="uq_budgets_scope_scope_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))  # tenant | key
    scope_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    limit_units: Mapped[int] = mapped_column(BigInteger)  # 1e-12 USD
    period: Mapped[str] = mapped_column(String(8))  # day | month | none
    mode: Mapped[str] = mapped_column(String(8))  # hard | soft
    alert_thresholds: Mapped[list[int]] = mapped_column(JSON, default=list)  # percents
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
