"""Signed checkpoints of the audit chain.

A ``purge`` checkpoint records the seq and hash of the last event a retention purge
deleted, so the first remaining event still links to something verifiable. An ``anchor``
checkpoint records the head of the chain at some moment, so that rewriting history before
it (even with recomputed hashes) is caught. Each row is HMAC-SHA256-signed with the
server's audit key and carries the previous checkpoint's signature (checkpoints chain too).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # purge | anchor
    seq: Mapped[int] = mapped_column(BigInteger)  # purge: last purged seq; anchor: head seq
    hash: Mapped[str] = mapped_column(String(64))  # the hash of the event at seq
    purged_count: Mapped[int] = mapped_column(BigInteger, default=0)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    key_id: Mapped[str] = mapped_column(String(16))  # fingerprint of the signing key
    prev_signature: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))
