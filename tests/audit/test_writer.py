"""The batched audit writer: submission order kept in the chain, one chain-head update per
batch, a spool when the database is away, replays that never append an event twice."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker
from gateway.audit.models import AuditEvent
from gateway.audit.verify import verify_chain
from gateway.audit.writer import AuditWriter
from tests.audit.conftest import KEY


async def _events(sessions: async_sessionmaker[AsyncSession], tag: str) -> list[AuditEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.actor == tag).order_by(AuditEvent.seq)
        )
        return list(rows.all())


async def test_batches_keep_submission_order_and_the_chain_verifies(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, unique: str
) -> None:
    writer = AuditWriter(sessions, tmp_path / "spool", batch_size=7)
    await writer.start()
    ids = [writer.submit(kind="request.completed", actor=unique, payload={"i": i}) for i in range(30)]
    await writer.stop()
    rows = await _events(sessions, unique)
    assert [r.event_id for r in rows] == ids
    assert [r.payload["i"] for r in rows] == list(range(30))
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    async with sessions() as session:
        report = await verify_chain(session, key=KEY)
    assert report.ok, report.as_dict()


async def test_a_database_outage_spools_and_the_replay_appends_each_event_once(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, unique: str
) -> None:
    spool = tmp_path / "spool"
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'no.db'}")  # directory absent
    try:
        down = AuditWriter(make_sessionmaker(broken), spool)
        await down.start()
        for i in range(5):
            down.submit(kind="request.completed", actor=unique, payload={"i": i})
        await down.stop()
    finally:
        await broken.dispose()
    assert down.spooled == 5 and (spool / "pending.jsonl").exists()
    # A crash after a commit but before the spool was removed: the same events spooled again.
    lines = (spool / "pending.jsonl").read_text().splitlines()
    writer = AuditWriter(sessions, spool)
    await writer.start()  # replays the spool first
    (spool / "pending.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:20])  # torn last line
    writer.submit(kind="request.completed", actor=unique, payload={"i": 5})
    await writer.stop()
    rows = await _events(sessions, unique)
    assert [r.payload["i"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert not (spool / "pending.jsonl").exists()
    assert len({json.loads(line)["event_id"] for line in lines}) == 5
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.actor == unique)
        )
    assert stored == 6
