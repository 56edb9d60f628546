"""Audit test helpers: a session whose work is always rolled back (the PostgreSQL database
is shared by the whole test session, so tampering and purges must never be committed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.log import append_event
from gateway.audit.models import AuditChainHead, AuditEvent
from tests.conftest import AUDIT_KEY

KEY = AUDIT_KEY.encode()


@pytest.fixture
async def scratch(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        try:
            yield session
        finally:
            await session.rollback()


async def add_events(session: AsyncSession, n: int, tag: str, **kw: object) -> list[AuditEvent]:
    out = []
    for i in range(n):
        out.append(
            await append_event(session, kind="test.event", actor=f"test:{tag}", payload={"i": i, **kw})
        )
    return out


async def head(session: AsyncSession) -> tuple[int, str]:
    row = (await session.execute(select(AuditChainHead.last_seq, AuditChainHead.last_hash))).one()
    return int(row[0]), str(row[1])


async def set_head(session: AsyncSession, seq: int, hash_: str) -> None:
    await session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(last_seq=seq, last_hash=hash_)
    )
