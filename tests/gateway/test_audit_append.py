import asyncio

from sqlalchemy import select

from billing.db import transaction
from gateway.audit.log import GENESIS_HASH, append_event, event_hash
from gateway.audit.models import AuditEvent


async def test_events_form_a_hash_chain_under_concurrency(sessions, unique) -> None:
    async def one(i: int) -> None:
        async with transaction(sessions) as s:
            await append_event(s, kind="test.event", actor=f"test:{unique}", payload={"i": i, "u": unique})

    await asyncio.gather(*(one(i) for i in range(20)))
    async with sessions() as s:
        events = (await s.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all()
    mine = [e for e in events if e.actor == f"test:{unique}"]
    assert sorted(e.payload["i"] for e in mine) == list(range(20))
    prev = GENESIS_HASH
    for expected_seq, event in enumerate(events, start=1):
        assert event.seq == expected_seq
        assert event.prev_hash == prev
        assert event.hash == event_hash(event)  # recomputed from the stored row
        prev = event.hash


async def test_rolled_back_append_leaves_no_gap(sessions, unique) -> None:
    class Boom(Exception):
        pass

    try:
        async with transaction(sessions) as s:
            await append_event(s, kind="test.rollback", actor="test", payload={})
            raise Boom
    except Boom:
        pass
    async with transaction(sessions) as s:
        event = await append_event(s, kind="test.after", actor="test", payload={"u": unique})
    async with sessions() as s:
        seqs = (await s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq))).all()
    assert seqs == list(range(1, len(seqs) + 1))
    assert event.seq == seqs[-1]
