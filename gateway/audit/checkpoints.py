"""Signed checkpoints of the audit chain (see checkpoint_models.py) and the audit key.

The audit key is a server secret like the API-key pepper: ``GATEWAY_AUDIT_KEY`` when set,
else a random one created once in ``<data_dir>/secrets/audit_key``. Replicas must share it.
A signature covers every field of the checkpoint and the previous checkpoint's signature,
so deleting, editing or reordering checkpoints is detected as well.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from gateway.audit.checkpoint_models import AuditCheckpoint

GENESIS_SIGNATURE = "0" * 64
KEY_FILE = Path("secrets") / "audit_key"


def load_audit_key(configured: str, data_dir: Path, *, create: bool = True) -> bytes | None:
    """The audit HMAC key: the configured secret, else the one in data_dir (created if asked)."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / KEY_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    try:  # O_EXCL: two processes starting together must not write two different keys
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


def load_or_create_audit_key(configured: str, data_dir: Path) -> bytes:
    """The audit key for a server process (created in data_dir on first use)."""
    key = load_audit_key(configured, data_dir, create=True)
    assert key is not None
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"gateway-audit-key\x00" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CheckpointFields:
    kind: str
    seq: int
    hash: str
    purged_count: int
    actor: str
    created_at: dt.datetime
    prev_signature: str


def fields_of(row: AuditCheckpoint) -> CheckpointFields:
    return CheckpointFields(
        row.kind, row.seq, row.hash, row.purged_count, row.actor, row.created_at, row.prev_signature
    )


def sign(key: bytes, f: CheckpointFields) -> str:
    document = {
        "kind": f.kind,
        "seq": f.seq,
        "hash": f.hash,
        "purged_count": f.purged_count,
        "actor": f.actor,
        "created_at": f.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "prev_signature": f.prev_signature,
    }
    message = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, row: AuditCheckpoint) -> bool:
    return hmac.compare_digest(sign(key, fields_of(row)), row.signature)


async def lock_chain(session: AsyncSession) -> tuple[int, str]:
    """Take the chain-head lock (as append_event does) and return (last_seq, last_hash)."""
    row = (
        await session.execute(
            text("UPDATE audit_chain_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_hash")
        )
    ).one()
    return int(row[0]), str(row[1])


async def list_checkpoints(session: AsyncSession, *, fresh: bool = False) -> list[AuditCheckpoint]:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.id)
    if fresh:  # reload attributes of rows already in the session (verify must see what is stored)
        query = query.execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def write_checkpoint(
    session: AsyncSession, key: bytes, *, kind: str, seq: int, hash_: str, purged_count: int, actor: str
) -> AuditCheckpoint:
    """Append a signed checkpoint; the caller holds the chain lock (``lock_chain``)."""
    last = (
        await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
    ).first()
    f = CheckpointFields(
        kind,
        seq,
        hash_,
        purged_count,
        actor,
        utcnow(),
        last.signature if last is not None else GENESIS_SIGNATURE,
    )
    row = AuditCheckpoint(
        kind=f.kind,
        seq=f.seq,
        hash=f.hash,
        purged_count=f.purged_count,
        actor=f.actor,
        created_at=f.created_at,
        key_id=key_id(key),
        prev_signature=f.prev_signature,
        signature=sign(key, f),
    )
    session.add(row)
    await session.flush()
    return row


async def anchor(session: AsyncSession, key: bytes, *, actor: str) -> AuditCheckpoint | None:
    """Sign the current head of the chain, so that later rewrites of history before it are
    caught even if the rewriter recomputes every hash. None when the chain is empty."""
    from gateway.audit.log import append_event

    seq, hash_ = await lock_chain(session)
    if seq == 0:
        return None
    row = await write_checkpoint(
        session, key, kind="anchor", seq=seq, hash_=hash_, purged_count=0, actor=actor
    )
    await append_event(
        session,
        kind="audit.anchored",
        actor=actor,
        payload={"seq": seq, "hash": hash_, "signature": row.signature},
    )
    return row
