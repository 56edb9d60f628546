"""The batched usage and audit writers lose nothing they accepted when the process is
SIGKILLed before their next flush: a new process on the same spool directory stores every
record and event exactly once, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from billing.db import make_engine, make_sessionmaker
from billing.ledger import UsageSpool, UsageWriter
from billing.models import UsageRecord
from gateway.audit.models import AuditEvent
from gateway.audit.verify import verify_chain
from gateway.audit.writer import AuditWriter
from tests.billing.conftest import create_tenant, entry

COUNT = 40


async def test_records_accepted_before_a_sigkill_are_stored_once(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    try:
        tenant, key = await create_tenant(sessions, "killed")
        spool = tmp_path / "spool"
        argv = [sys.executable, "-m", "tests.load._killed_writer", sqlite_url, str(spool), tenant, key]
        child = await asyncio.to_thread(
            subprocess.run, [*argv, str(COUNT)], capture_output=True, text=True, timeout=120
        )
        assert child.returncode == -9, child.stderr
        assert f"accepted {COUNT}" in child.stdout
        async with sessions() as s:  # the killed process wrote nothing to the database
            assert await s.scalar(select(func.count()).select_from(UsageRecord)) == 0
            assert await s.scalar(select(func.count()).select_from(AuditEvent)) == 0
        assert list(spool.glob("usage-journal.*.wal")) and list((spool / "audit").glob("audit-journal.*.wal"))

        for _ in range(2):  # a second restart replays nothing twice
            usage = UsageWriter(sessions, UsageSpool(spool))
            audit = AuditWriter(sessions, spool / "audit")
            await usage.start()
            await audit.start()
            await usage.stop()
            await audit.stop()

        async with sessions() as s:
            ids = (await s.scalars(select(UsageRecord.request_id))).all()
            assert sorted(ids) == sorted(f"killed-{i}" for i in range(COUNT))
            events = (await s.scalars(select(AuditEvent.request_id).order_by(AuditEvent.seq))).all()
            assert list(events) == [f"killed-{i}" for i in range(COUNT)]  # submission order kept
            report = await verify_chain(s, key=None)
            assert report.ok, report.problems
        assert not list(spool.rglob("*.wal")) and not list(spool.rglob("*.replay"))
    finally:
        await engine.dispose()


async def test_a_flush_removes_its_journal(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    try:
        tenant, key = await create_tenant(sessions, "flushed")
        usage = UsageWriter(sessions, UsageSpool(tmp_path / "spool"), flush_interval=3600)
        await usage.submit(entry(tenant, key, "one", dt.datetime.now(dt.UTC)))
        assert len(list((tmp_path / "spool").glob("*.wal"))) == 1
        await usage.flush()
        assert not list((tmp_path / "spool").glob("*.wal"))
        await usage.submit(entry(tenant, key, "two", dt.datetime.now(dt.UTC)))
        await usage.stop()
        assert not list((tmp_path / "spool").glob("*.wal"))
        async with sessions() as s:
            assert await s.scalar(select(func.count()).select_from(UsageRecord)) == 2
    finally:
        await engine.dispose()
