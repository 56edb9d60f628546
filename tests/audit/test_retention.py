"""Retention: what each mode stores, redaction of expired texts, purges with signed checkpoints."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import delete, select, update

from gateway.audit.checkpoint_models import AuditCheckpoint
from gateway.audit.checkpoints import anchor
from gateway.audit.content import retention_fields, sha256_text
from gateway.audit.log import append_event, canonical_event_bytes
from gateway.audit.models import AuditEvent
from gateway.audit.retention import purge_before, redact_expired
from gateway.audit.verify import verify_chain
from gateway.errors import ConflictError
from policy.compliance_rules import load
from tests.audit.conftest import KEY, add_events, head, set_head

PROMPT = [{"role": "user", "content": "Patient 4711 reports chest pain"}]
ANSWER = "Seek emergency care."
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def stored(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True)


def test_retention_none_stores_nothing():
    fields = retention_fields(load("retention: {mode: none}"), PROMPT, ANSWER, now=NOW)
    assert fields == {"retention": {"mode": "none"}}


def test_retention_hash_stores_hashes_only():
    fields = retention_fields(load("retention: {mode: hash}"), PROMPT, ANSWER, now=NOW)
    prompt_json = json.dumps(PROMPT, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert fields == {
        "retention": {
            "mode": "hash",
            "prompt_sha256": hashlib.sha256(prompt_json.encode()).hexdigest(),
            "answer_sha256": hashlib.sha256(ANSWER.encode()).hexdigest(),
        }
    }
    assert "4711" not in stored(fields) and "emergency" not in stored(fields)


def test_default_profile_keeps_the_prompt_hash():
    fields = retention_fields(load(""), "hello", "hi", now=NOW)
    assert fields["retention"]["prompt_sha256"] == sha256_text("hello")
    assert "prompt_text" not in fields["retention"]


def test_retention_full_stores_text_with_expiry():
    fields = retention_fields(load("retention: {mode: full, days: 30}"), PROMPT, ANSWER, now=NOW)
    kept = fields["retention"]
    assert set(kept) == {"mode", "prompt_sha256", "answer_sha256", "expires_at", "prompt_text", "answer_text"}
    assert kept["answer_text"] == ANSWER and "4711" in kept["prompt_text"]
    assert dt.datetime.fromisoformat(kept["expires_at"]) == NOW + dt.timedelta(days=30)
    assert kept["prompt_sha256"] == sha256_text(kept["prompt_text"])


async def _request_event(session, mode: str, at: dt.datetime) -> AuditEvent:
    profile = load(
        f"retention: {{mode: {mode}, days: 1}}" if mode == "full" else f"retention: {{mode: {mode}}}"
    )
    payload = {"model": "deepseek-v4-flash", **retention_fields(profile, PROMPT, ANSWER, now=at)}
    return await append_event(session, kind="request.completed", actor="key:test", payload=payload, at=at)


async def test_expired_texts_are_redacted_and_the_chain_still_verifies(scratch):
    old = await _request_event(scratch, "full", NOW - dt.timedelta(days=2))
    fresh = await _request_event(scratch, "full", NOW)
    assert (await verify_chain(scratch, key=KEY, now=NOW)).ok
    assert await redact_expired(scratch, actor="test", now=NOW) >= 1
    table = AuditEvent.__table__
    rows = {r.seq: r.payload for r in (await scratch.execute(select(table.c.seq, table.c.payload))).all()}
    assert "prompt_text" not in rows[old.seq]["retention"]
    assert rows[old.seq]["retention"]["prompt_sha256"] == old.payload["retention"]["prompt_sha256"]
    assert rows[fresh.seq]["retention"]["prompt_text"] == fresh.payload["retention"]["prompt_text"]
    report = await verify_chain(scratch, key=KEY, now=NOW)
    assert report.ok, report.as_dict()


async def test_changed_or_early_removed_text_is_caught(scratch):
    a = await _request_event(scratch, "full", NOW)
    b = await _request_event(scratch, "full", NOW)
    changed = {**a.payload, "retention": {**a.payload["retention"], "answer_text": "Take aspirin."}}
    removed = {
        **b.payload,
        "retention": {k: v for k, v in b.payload["retention"].items() if not k.endswith("_text")},
    }
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == a.seq).values(payload=changed))
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == b.seq).values(payload=removed))
    report = await verify_chain(scratch, key=KEY, now=NOW)
    assert {(p.kind, p.seq) for p in report.problems} == {("modified", a.seq), ("modified", b.seq)}


async def test_purge_keeps_the_chain_verifiable(scratch, unique):
    """Purge everything written so far (the database may be shared: this rolls back)."""
    await add_events(scratch, 4, unique)
    last_seq, last_hash = await head(scratch)
    result = await purge_before(
        scratch, KEY, before=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), actor="test"
    )
    assert result.through_seq == last_seq and result.through_hash == last_hash and result.purged >= 4
    assert await scratch.scalar(select(AuditEvent.seq).where(AuditEvent.seq <= last_seq)) is None
    await add_events(scratch, 2, unique)
    report = await verify_chain(scratch, key=KEY)
    assert report.ok, report.as_dict()
    assert report.start_seq == last_seq and report.checked == 3  # audit.purged + 2


async def test_purge_by_date_deletes_only_the_oldest_prefix(sqlite_url, unique):
    from billing.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    async with transaction(sessions) as s:
        for i in range(3):
            await append_event(s, kind="test.old", actor="test", payload={"i": i}, at=old)
        await add_events(s, 2, unique)
    async with transaction(sessions) as s:
        result = await purge_before(s, KEY, before=old + dt.timedelta(days=1), actor="test")
    assert (result.purged, result.through_seq) == (3, 3)
    async with sessions() as s:
        assert (await verify_chain(s, key=KEY)).ok
        kinds = (await s.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq))).all()
    assert kinds == ["test.event", "test.event", "audit.purged"]
    await engine.dispose()


async def test_tampered_or_deleted_checkpoint_is_caught(scratch, unique):
    await add_events(scratch, 3, unique)
    await purge_before(scratch, KEY, before=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), actor="test")
    await add_events(scratch, 1, unique)
    cp = (await scratch.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()))).first()
    await scratch.execute(update(AuditCheckpoint).where(AuditCheckpoint.id == cp.id).values(seq=cp.seq - 1))
    report = await verify_chain(scratch, key=KEY)
    assert "checkpoint" in {p.kind for p in report.problems}
    assert not (await verify_chain(scratch, key=b"another key")).ok  # a signature by another key

    await scratch.execute(delete(AuditCheckpoint))
    report = await verify_chain(scratch, key=KEY)
    assert ("deleted", 1) in {(p.kind, p.seq) for p in report.problems}


async def test_purge_refuses_to_launder_tampering(scratch, unique):
    events = await add_events(scratch, 3, unique)
    await scratch.execute(update(AuditEvent).where(AuditEvent.seq == events[0].seq).values(payload={"x": 1}))
    with pytest.raises(ConflictError):
        await purge_before(scratch, KEY, before=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), actor="test")


async def test_signed_anchor_catches_a_full_rewrite(scratch, unique):
    """An attacker rewrites one event and recomputes every later hash and the head: only the
    signed anchor can tell."""
    events = await add_events(scratch, 4, unique)
    await anchor(scratch, KEY, actor="test")
    await add_events(scratch, 1, unique)
    table = AuditEvent.__table__
    rows = (
        await scratch.execute(select(table).where(table.c.seq >= events[1].seq).order_by(table.c.seq))
    ).all()
    prev = events[0].hash
    for r in rows:
        d = dict(r._mapping)
        d["prev_hash"] = prev
        if d["seq"] == events[1].seq:
            d["payload"] = {"i": 42}
        d.pop("hash")
        new = hashlib.sha256(canonical_event_bytes(**d)).hexdigest()
        await scratch.execute(
            update(table)
            .where(table.c.seq == d["seq"])
            .values(payload=d["payload"], prev_hash=prev, hash=new)
        )
        prev = new
    await set_head(scratch, rows[-1].seq, prev)
    report = await verify_chain(scratch, key=KEY)
    assert [p.kind for p in report.problems] == ["modified"], report.as_dict()
    assert report.problems[0].seq == events[-1].seq  # the anchored head differs


async def test_retention_job_redacts_then_purges(sqlite_url):
    from billing.db import make_engine, make_sessionmaker, transaction
    from gateway.audit.retention import retention_job

    engine = make_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        old = await _request_event(s, "full", NOW - dt.timedelta(days=100))
        await _request_event(s, "full", NOW)
    run = await retention_job(sessions, KEY, purge_after_days=None, now=NOW)
    assert run.redacted == 1 and run.purge is None and run.anchor_seq is not None  # the head is signed
    run = await retention_job(sessions, KEY, purge_after_days=30, now=NOW)
    assert run.redacted == 0 and run.purge is not None and run.purge.through_seq == old.seq
    async with sessions() as s:
        assert (await verify_chain(s, key=KEY, now=NOW)).ok
    await engine.dispose()


async def test_retention_loop_runs_until_cancelled(sqlite_url):
    import asyncio

    from billing.db import make_engine, make_sessionmaker
    from gateway.audit.retention import retention_loop

    engine = make_engine(sqlite_url)
    task = asyncio.create_task(retention_loop(make_sessionmaker(engine), KEY, interval_s=0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.dispose()
