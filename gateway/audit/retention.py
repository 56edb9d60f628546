"""Retention jobs that keep the audit chain verifiable.

``purge_before`` deletes the oldest events (a prefix of the chain, never a hole), after
checking that prefix is intact, and writes a signed ``purge`` checkpoint with the seq and
hash of the last deleted event: the first remaining event links to it, so ``verify``
still proves the rest. The purge itself is an audit event (``audit.purged``).

``redact_expired`` removes retained prompt/answer texts whose time limit has passed; the
event hashes cover only their sha256 (gateway/audit/content.py), so the chain still
verifies. It records ``audit.redacted`` with the count.

Both run as periodic jobs (Celery beat, or in-process in embedded mode) or from the CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import String, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from gateway.audit.checkpoints import anchor, list_checkpoints, lock_chain, write_checkpoint
from gateway.audit.content import expires_at, has_text, redact
from gateway.audit.log import append_event
from gateway.audit.models import AuditEvent
from gateway.audit.verify import verify_rows
from gateway.errors import ConflictError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: int
    through_seq: int | None
    through_hash: str | None
    checkpoint_id: int | None


async def purge_before(
    session: AsyncSession, key: bytes, *, before: dt.datetime, actor: str, force: bool = False
) -> PurgeResult:
    """Delete the events written before ``before`` (the oldest prefix of the chain).

    Refuses (ConflictError) when the events to delete do not verify, unless ``force``:
    a purge must not launder tampering. Runs inside the caller's transaction.
    """
    head_seq, _ = await lock_chain(session)
    first_kept = await session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.at >= before))
    through = (first_kept - 1) if first_kept is not None else head_seq
    oldest = await session.scalar(select(func.min(AuditEvent.seq)))
    if oldest is None or through < oldest:
        return PurgeResult(0, None, None, None)
    doomed = list(
        (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.seq <= through).order_by(AuditEvent.seq)
            )
        ).all()
    )
    if not force:
        # Verify the prefix as a chain of its own, with the prefix's last event as its head.
        report = verify_rows(
            doomed,
            (doomed[-1].seq, doomed[-1].hash),
            await list_checkpoints(session),
            key,
            anchors_until=through,
        )
        if not report.ok:
            raise ConflictError(
                f"refusing to purge: the events to delete do not verify ({report.problems[0].message}); "
                "run `gateway audit verify`"
            )
    last = doomed[-1]
    await session.execute(delete(AuditEvent).where(AuditEvent.seq <= through))
    checkpoint = await write_checkpoint(
        session, key, kind="purge", seq=last.seq, hash_=last.hash, purged_count=len(doomed), actor=actor
    )
    await append_event(
        session,
        kind="audit.purged",
        actor=actor,
        payload={
            "before": before.isoformat(),
            "purged_count": len(doomed),
            "through_seq": last.seq,
            "through_hash": last.hash,
            "checkpoint_id": checkpoint.id,
            "checkpoint_signature": checkpoint.signature,
        },
    )
    return PurgeResult(len(doomed), last.seq, last.hash, checkpoint.id)


async def redact_expired(
    session: AsyncSession, *, actor: str, now: dt.datetime | None = None, batch: int = 1000
) -> int:
    """Remove retained texts past their expiry; returns how many events were redacted."""
    now = now or utcnow()
    count, after = 0, 0
    while True:
        # Cheap pre-filter on the JSON text; the exact check is has_text/expires_at below.
        rows = (
            await session.execute(
                select(AuditEvent.seq, AuditEvent.payload)
                .where(
                    AuditEvent.seq > after,
                    AuditEvent.kind.like("request.%"),
                    cast(AuditEvent.payload, String).like("%_text%"),
                )
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        ).all()
        if not rows:
            break
        for seq, payload in rows:
            expiry = expires_at(payload)
            if has_text(payload) and expiry is not None and expiry <= now:
                await session.execute(
                    update(AuditEvent).where(AuditEvent.seq == seq).values(payload=redact(payload))
                )
                count += 1
        after = rows[-1][0]
    if count:
        await append_event(
            session, kind="audit.redacted", actor=actor, payload={"redacted": count, "at": now.isoformat()}
        )
    return count


@dataclass(frozen=True, slots=True)
class RetentionRun:
    redacted: int
    purge: PurgeResult | None
    anchor_seq: int | None = None


async def retention_job(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    *,
    purge_after_days: int | None = None,
    actor: str = "system:retention",
    now: dt.datetime | None = None,
    anchor_head: bool = True,
) -> RetentionRun:
    """The periodic job (hourly is plenty): redact expired texts; when the operator set an
    audit retention period, purge events older than it; then sign an anchor checkpoint of
    the head (rewrites before it are caught by verify). Each step commits alone."""
    now = now or utcnow()
    async with transaction(sessions) as session:
        redacted = await redact_expired(session, actor=actor, now=now)
    purge = None
    if purge_after_days:
        async with transaction(sessions) as session:
            purge = await purge_before(
                session, key, before=now - dt.timedelta(days=purge_after_days), actor=actor
            )
    anchor_seq = None
    if anchor_head:
        async with transaction(sessions) as session:
            row = await anchor(session, key, actor=actor)
            anchor_seq = row.seq if row is not None else None
    return RetentionRun(redacted, purge, anchor_seq)


async def retention_loop(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    *,
    purge_after_days: int | None = None,
    interval_s: float = 3600.0,
) -> None:
    """Run ``retention_job`` every ``interval_s`` until cancelled (embedded mode; replicas may
    all run it: each step takes the chain lock and is idempotent)."""
    while True:
        try:
            run = await retention_job(sessions, key, purge_after_days=purge_after_days)
            if run.redacted or (run.purge and run.purge.purged):
                log.info(
                    "audit retention: %d redacted, %d purged",
                    run.redacted,
                    run.purge.purged if run.purge else 0,
                )
        except Exception:
            log.exception("audit retention job failed; retrying in %.0fs", interval_s)
        await asyncio.sleep(interval_s)
