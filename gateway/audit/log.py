"""Appending to the hash-chained audit log.

Each event's hash covers its own fields and the previous event's hash, so editing,
deleting, inserting or reordering events breaks the chain. Appends serialise on the single
chain-head row: its UPDATE takes the row lock on PostgreSQL and the write lock on SQLite
before anything is read, so concurrent writers (also in other processes) queue up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from gateway.audit.content import hashed_payload
from gateway.audit.models import AuditEvent

GENESIS_HASH = "0" * 64


def canonical_event_bytes(
    *,
    seq: int,
    event_id: str,
    at: dt.datetime,
    kind: str,
    actor: str,
    tenant_id: str | None,
    request_id: str | None,
    payload: dict[str, Any],
    prev_hash: str,
) -> bytes:
    document = {
        "seq": seq,
        "event_id": event_id,
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "actor": actor,
        "tenant_id": tenant_id,
        "request_id": request_id,
        # Redactable texts (retained prompts/answers) are covered through their sha256 only.
        "payload": hashed_payload(payload),
        "prev_hash": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(
        canonical_event_bytes(
            seq=event.seq,
            event_id=event.event_id,
            at=event.at,
            kind=event.kind,
            actor=event.actor,
            tenant_id=event.tenant_id,
            request_id=event.request_id,
            payload=event.payload,
            prev_hash=event.prev_hash,
        )
    ).hexdigest()


async def append_event(
    session: AsyncSession,
    *,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    tenant_id: str | None = None,
    request_id: str | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event inside the caller's transaction (commit makes it visible)."""
    head = (
        await session.execute(
            text(
                "UPDATE audit_chain_head SET last_seq = last_seq + 1 WHERE id = 1 "
                "RETURNING last_seq, last_hash"
            )
        )
    ).one()
    seq, prev_hash = int(head[0]), str(head[1])
    # Round-trip the payload through JSON so the stored value hashes the same when read back.
    payload = json.loads(json.dumps(payload, sort_keys=True, default=str))
    event = AuditEvent(
        seq=seq,
        event_id=f"evt_{uuid.uuid4().hex}",
        at=at or utcnow(),
        kind=kind,
        actor=actor,
        tenant_id=tenant_id,
        request_id=request_id,
        payload=payload,
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = event_hash(event)
    session.add(event)
    await session.flush()
    await session.execute(text("UPDATE audit_chain_head SET last_hash = :h WHERE id = 1"), {"h": event.hash})
    return event


async def append_events(session: AsyncSession, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append several events in order inside the caller's transaction, claiming their
    sequence numbers with one UPDATE of the chain head (the batched writer's group commit).
    Each dict has kind, actor, payload and optionally tenant_id, request_id, at, event_id.
    The rows go in by one Core executemany (the ORM's unit of work cost more per event than
    the insert itself on the gateway's hot path); returns them as column dicts."""
    if not events:
        return []
    head = (
        await session.execute(
            text(
                "UPDATE audit_chain_head SET last_seq = last_seq + :n WHERE id = 1 "
                "RETURNING last_seq, last_hash"
            ),
            {"n": len(events)},
        )
    ).one()
    seq, prev_hash = int(head[0]) - len(events), str(head[1])
    rows: list[dict[str, Any]] = []
    for spec in events:
        seq += 1
        row = {
            "seq": seq,
            "event_id": spec.get("event_id") or f"evt_{uuid.uuid4().hex}",
            "at": spec.get("at") or utcnow(),
            "kind": spec["kind"],
            "actor": spec["actor"],
            "tenant_id": spec.get("tenant_id"),
            "request_id": spec.get("request_id"),
            # what the JSON column gives back when read, so the hash is checked as written
            "payload": json.loads(json.dumps(spec["payload"], sort_keys=True, default=str)),
            "prev_hash": prev_hash,
        }
        row["hash"] = prev_hash = hashlib.sha256(canonical_event_bytes(**row)).hexdigest()
        rows.append(row)
    # a Core executemany on the table (no ORM bulk path: measured faster, docs/benchmarks.md)
    await session.execute(insert(cast(Table, AuditEvent.__table__)), rows)
    await session.execute(text("UPDATE audit_chain_head SET last_hash = :h WHERE id = 1"), {"h": prev_hash})
    return rows
