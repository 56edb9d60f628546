"""`verify` finds each kind of tampering and says which (SQLite, and PostgreSQL when set)."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, insert, select, update

from gateway.audit.log import canonical_event_bytes
from gateway.audit.models import AuditEvent
from gateway.audit.verify import verify_chain
from tests.audit.conftest import KEY, add_events, head, set_head


def kinds(report, seq=None):
    return {p.kind for p in report.problems if seq is None or p.seq == seq}


async def test_intact_chain_verifies(scratch, unique):
    await add_events(scratch, 5, unique)
    report = await verify_chain(scratch, key=KEY)
    assert report.ok, report.as_dict()
    assert report.checked >= 5
    assert report.as_dict()["ok"] is True and report.as_dict()["problems"] == []


async def test_modified_event(scratch, unique):
    events = await add_events(scratch, 5, unique)
    target = events[2].seq
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == target).values(payload={"i": 999}))
    report = await verify_chain(scratch, key=KEY)
    assert not report.ok
    assert [(p.kind, p.seq) for p in report.problems] == [("modified", target)]


async def test_modified_event_with_recomputed_hash(scratch, unique):
    events = await add_events(scratch, 5, unique)
    e = events[2]
    forged = hashlib.sha256(
        canonical_event_bytes(
            seq=e.seq,
            event_id=e.event_id,
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            tenant_id=e.tenant_id,
            request_id=e.request_id,
            payload={"i": 999},
            prev_hash=e.prev_hash,
        )
    ).hexdigest()
    await scratch.execute(
        update(AuditEvent).where(AuditEvent.seq == e.seq).values(payload={"i": 999}, hash=forged)
    )
    report = await verify_chain(scratch, key=KEY)
    assert ("modified", e.seq) in [(p.kind, p.seq) for p in report.problems]


async def test_deleted_event(scratch, unique):
    events = await add_events(scratch, 5, unique)
    target = events[2].seq
    await scratch.execute(delete(AuditEvent).where(AuditEvent.seq == target))
    report = await verify_chain(scratch, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", target)]


async def test_deleted_last_event(scratch, unique):
    events = await add_events(scratch, 3, unique)
    await scratch.execute(delete(AuditEvent).where(AuditEvent.seq == events[-1].seq))
    report = await verify_chain(scratch, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", events[-1].seq)]


async def forge(session, seq: int, prev_hash: str, like: AuditEvent, tag: str = "") -> None:
    """Insert a well-formed event (its own hash is right) as an attacker with SQL access would."""
    row = dict(
        seq=seq,
        event_id="evt_forged" + tag + like.event_id[-8:],
        at=like.at,
        kind="key.created",
        actor="cli",
        tenant_id=None,
        request_id=None,
        payload={"forged": True},
        prev_hash=prev_hash,
    )
    row["hash"] = hashlib.sha256(canonical_event_bytes(**row)).hexdigest()
    await session.execute(insert(AuditEvent).values(**row))


async def test_inserted_event_in_the_middle(scratch, unique):
    """The attacker makes room by renumbering the later events, inserts a well-formed event
    that links to its predecessor, and moves the chain head on."""
    events = await add_events(scratch, 5, unique)
    k = events[1].seq
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq > k).values(seq=AuditEvent.seq + 1_000_000))
    await scratch.execute(
        update(AuditEvent).where(AuditEvent.seq > k + 1_000_000).values(seq=AuditEvent.seq - 999_999)
    )
    await forge(scratch, k + 1, events[1].hash, events[1])
    seq, hash_ = await head(scratch)
    await set_head(scratch, seq + 1, hash_)
    report = await verify_chain(scratch, key=KEY)
    assert ("inserted", k + 1) in [(p.kind, p.seq) for p in report.problems]
    assert kinds(report) <= {"inserted", "renumbered"}, report.as_dict()


async def test_inserted_event_after_the_head(scratch, unique):
    events = await add_events(scratch, 3, unique)
    await forge(scratch, events[-1].seq + 1, events[-1].hash, events[-1])
    report = await verify_chain(scratch, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("inserted", events[-1].seq + 1)]


async def test_reordered_events(scratch, unique):
    events = await add_events(scratch, 5, unique)
    a, b = events[1].seq, events[2].seq
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == a).values(seq=-1))
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == b).values(seq=a))
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == -1).values(seq=b))
    report = await verify_chain(scratch, key=KEY)
    assert sorted((p.kind, p.seq) for p in report.problems) == [("reordered", a), ("reordered", b)]


async def test_verify_reads_from_the_database_not_the_session(scratch, unique):
    """The report is built from rows as stored (the session's identity map is bypassed)."""
    await add_events(scratch, 2, unique)
    rows = (await scratch.scalars(select(AuditEvent))).all()
    assert rows


async def test_missing_chain_head_row(scratch, unique):
    from gateway.audit.models import AuditChainHead

    await add_events(scratch, 2, unique)
    await scratch.execute(delete(AuditChainHead))
    report = await verify_chain(scratch, key=KEY)
    assert [p.kind for p in report.problems] == ["head"]


async def test_deleted_run_of_events_is_one_problem(scratch, unique):
    events = await add_events(scratch, 6, unique)
    gone = [events[2].seq, events[3].seq, events[4].seq]
    await scratch.execute(delete(AuditEvent).where(AuditEvent.seq.in_(gone)))
    report = await verify_chain(scratch, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", gone[0])]
    assert f"seqs {gone[0]}..{gone[-1]}" in report.problems[0].message


async def test_deleted_first_event(sqlite_url, unique):
    from billing.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        await add_events(s, 3, unique)
    async with transaction(sessions) as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.seq == 1))
    async with sessions() as s:
        report = await verify_chain(s, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", 1)]
    await engine.dispose()


async def test_purge_while_others_append_keeps_the_chain_whole(sqlite_url, unique):
    import asyncio
    import datetime as dt

    from billing.db import make_engine, make_sessionmaker, transaction
    from gateway.audit.log import append_event
    from gateway.audit.retention import purge_before

    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)

    async def writer(i: int) -> None:
        async with transaction(sessions) as s:
            await append_event(s, kind="test.event", actor="test", payload={"i": i})

    async def purger() -> None:
        async with transaction(sessions) as s:
            await purge_before(s, KEY, before=dt.datetime.now(dt.UTC), actor="test")

    await asyncio.gather(*(writer(i) for i in range(10)), purger(), *(writer(i) for i in range(10, 20)))
    async with sessions() as s:
        report = await verify_chain(s, key=KEY)
    assert report.ok, report.as_dict()
    await engine.dispose()


async def test_deletion_hidden_by_renumbering(scratch, unique):
    """Ten events deleted and every later event renumbered down to close the gap."""
    events = await add_events(scratch, 16, unique)
    first, last = events[3].seq, events[12].seq
    await scratch.execute(delete(AuditEvent).where(AuditEvent.seq.between(first, last)))
    await scratch.execute(
        update(AuditEvent).where(AuditEvent.seq > last).values(seq=AuditEvent.seq + 1_000_000)
    )
    await scratch.execute(
        update(AuditEvent).where(AuditEvent.seq > 1_000_000).values(seq=AuditEvent.seq - 1_000_000 - 10)
    )
    seq, hash_ = await head(scratch)
    await set_head(scratch, seq - 10, hash_)
    report = await verify_chain(scratch, key=KEY)
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", first), ("renumbered", first)]
    assert f"seqs {first}..{last}" in report.problems[0].message


async def test_insertions_hidden_by_renumbering(scratch, unique):
    events = await add_events(scratch, 4, unique)
    k = events[1].seq
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq > k).values(seq=AuditEvent.seq + 1_000_000))
    await scratch.execute(
        update(AuditEvent).where(AuditEvent.seq > 1_000_000).values(seq=AuditEvent.seq - 1_000_000 + 6)
    )
    prev = events[1].hash
    for i in range(6):  # six forged events, each linked to the one before
        await forge(scratch, k + 1 + i, prev, events[1], tag=str(i))
        prev = (
            await scratch.execute(select(AuditEvent.hash).where(AuditEvent.seq == k + 1 + i))
        ).scalar_one()
    report = await verify_chain(scratch, key=KEY)
    inserted = sorted(p.seq for p in report.problems if p.kind == "inserted")
    assert inserted == list(range(k + 1, k + 7)), report.as_dict()
    assert {p.kind for p in report.problems} == {"inserted", "renumbered"}
