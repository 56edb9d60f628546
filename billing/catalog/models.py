"""Database rows of the price catalog. Each row keeps its canonical document (JSON,
decimal strings) so that a row parses back into exactly the object that was stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class PriceVersionRow(Base):
    __tablename__ = "price_versions"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    effective_from: Mapped[dt.datetime] = mapped_column(UTCDateTime, unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="seed")


class PricePromotionRow(Base):
    __tablename__ = "price_promotions"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="seed")


class PriceComparatorRow(Base):
    __tablename__ = "price_comparators"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="seed")
