"""The batched writer: idempotency, flush by size and interval, spool and exactly-once replay."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from billing.db import make_engine, make_sessionmaker
from billing.ledger import UsageSpool, UsageWriter
from billing.models import UsageRecord
from tests.billing.conftest import create_tenant, entry

T0 = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)


async def _count(sessions, tenant_id: str) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).where(UsageRecord.tenant_id == tenant_id)))


async def test_idempotent_by_request_and_attempt(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"w-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    e1 = entry(tenant, key, f"r1-{unique}", T0)
    await writer.write_now([e1, e1, entry(tenant, key, f"r1-{unique}", T0, attempt=2)])
    await writer.write_now([e1])
    assert await _count(sessions, tenant) == 2
    assert writer.stats.written == 2 and writer.stats.duplicates == 2
    async with sessions() as s:
        row = (
            await s.scalars(
                select(UsageRecord).where(UsageRecord.request_id == f"r1-{unique}", UsageRecord.attempt == 1)
            )
        ).one()
    assert (row.cost_total, row.price_version, row.prompt_tokens) == (e1.cost_total, "v4-peak@off-peak", 300)
    assert row.cost_total == row.cost_cache_hit + row.cost_cache_miss + row.cost_output


async def test_streaming_and_non_streaming_records_match(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"s-{unique}")
    a = entry(tenant, key, f"a-{unique}", T0, stream=False, reasoning=120, out=300)
    b = entry(tenant, key, f"b-{unique}", T0, stream=True, reasoning=120, out=300)
    assert a.cost == b.cost and a.price_version == b.price_version


async def test_flush_by_size_and_interval(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"f-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"), batch_size=10, flush_interval=0.05)
    await writer.start()
    try:
        for i in range(25):
            await writer.submit(entry(tenant, key, f"f{i}-{unique}", T0))
        for _ in range(100):
            if await _count(sessions, tenant) == 25:
                break
            await asyncio.sleep(0.02)
        assert await _count(sessions, tenant) == 25
    finally:
        await writer.stop()


async def test_spool_when_db_down_then_replay_exactly_once(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"sp-{unique}")
    spool = UsageSpool(tmp_path / "spool")
    dead = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/gw.db")  # cannot be opened
    down = UsageWriter(make_sessionmaker(dead), spool)
    entries = [entry(tenant, key, f"sp{i}-{unique}", T0) for i in range(20)]
    for e in entries:
        await down.submit(e)
    await down.stop()
    await dead.dispose()
    assert down.stats.spooled == 20 and await spool.pending_count() == 20

    up = UsageWriter(sessions, spool)
    await up.write_now(entries[:5])  # some records reached the DB another way before replay
    # A crash after committing a replay but before deleting the file: the file is replayed again.
    files = await spool.take_files()
    assert len(files) == 1
    await up.write_now(UsageSpool.read(files[0]))  # committed, file not removed ("crash")
    assert await up.replay_spool() == 0
    assert await _count(sessions, tenant) == 20
    assert await spool.pending_count() == 0
    assert await up.replay_spool() == 0


async def test_replay_inserts_spooled_records(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"rp-{unique}")
    spool = UsageSpool(tmp_path / "spool")
    await spool.append([entry(tenant, key, f"rp{i}-{unique}", T0) for i in range(7)])
    # a torn last line (crash mid-append, never acknowledged) is skipped
    with spool.live_path.open("a") as fh:
        fh.write('{"request_id": "torn')
    writer = UsageWriter(sessions, spool)
    assert await writer.replay_spool() == 7
    assert await _count(sessions, tenant) == 7
    assert await writer.replay_spool() == 0


async def test_bad_rows_are_rejected_not_lost(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"bad-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    good = [entry(tenant, key, f"g{i}-{unique}", T0) for i in range(3)]
    bad = entry("ten_does_not_exist", None, f"bad-{unique}", T0)
    await writer.write_now([good[0], bad, *good[1:]])
    assert await _count(sessions, tenant) == 3
    assert writer.stats.rejected == 1
    assert f"bad-{unique}" in (tmp_path / "spool" / "rejected.jsonl").read_text()
