"""Verify the audit chain and say what was tampered with: modified, deleted, inserted or
reordered events (``gateway audit verify``).

The start of the chain is the genesis hash, or the latest signed purge checkpoint. Each
event must hash to its stored hash (recomputed at its stored seq; an event that hashes
correctly only at another seq was moved), link to its predecessor's hash, and the last
event must match the chain-head row. Signed anchor checkpoints pin the hash of an event,
so rewriting history before an anchor is caught even when every hash was recomputed.
Retained texts must match their (hashed) sha256 and must not vanish before they expire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.checkpoint_models import AuditCheckpoint
from gateway.audit.checkpoints import GENESIS_SIGNATURE, list_checkpoints, signature_ok
from gateway.audit.content import content_problems
from gateway.audit.log import GENESIS_HASH, canonical_event_bytes
from gateway.audit.models import AuditChainHead, AuditEvent

MOVE_WINDOW = 4  # how far from its stored seq a moved event's original seq is searched
GAP_SEARCH = 1000  # after a gap, how many seqs past the previous event are tried


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # modified | deleted | inserted | reordered | renumbered | head | checkpoint
    seq: int | None
    message: str
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "event_id": self.event_id, "message": self.message}


@dataclass
class VerifyReport:
    checked: int
    problems: list[Problem] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    start_seq: int = 0  # the chain starts after this seq (a purge checkpoint), 0 from genesis
    checkpoints: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.as_dict() for p in self.problems],
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "start_seq": self.start_seq,
            "checkpoints": self.checkpoints,
        }


def hash_at(e: Any, seq: int) -> str:  # an AuditEvent or a Core row of audit_events
    return hashlib.sha256(
        canonical_event_bytes(
            seq=seq,
            event_id=e.event_id,
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            tenant_id=e.tenant_id,
            request_id=e.request_id,
            payload=e.payload,
            prev_hash=e.prev_hash,
        )
    ).hexdigest()


def original_seq(e: Any, hints: Sequence[int] = (), after: int | None = None) -> int | None:
    """The seq at which the event's stored hash was computed, or None (content changed).

    Tried: the stored seq, ``hints`` (its predecessor's original seq + 1), seqs near the
    stored one, then (``after``: the previous event's original seq) the seqs just past the
    previous event, which finds events renumbered downwards to hide a deletion."""
    if hash_at(e, e.seq) == e.hash:
        return e.seq
    tried = {e.seq}
    near = [e.seq + s * d for d in range(1, MOVE_WINDOW + 1) for s in (-1, 1)]
    forward = range(after + 1, after + 1 + GAP_SEARCH) if after is not None else range(0)
    for cand in (*hints, *near, *forward):
        if cand > 0 and cand not in tried:
            tried.add(cand)
            if hash_at(e, cand) == e.hash:
                return cand
    return None


def _check_checkpoints(
    cps: Sequence[AuditCheckpoint], key: bytes | None, out: list[Problem]
) -> list[AuditCheckpoint]:
    """Problems of the checkpoint rows themselves; returns the trustworthy ones."""
    good: list[AuditCheckpoint] = []
    prev = GENESIS_SIGNATURE
    for cp in cps:
        if key is None:
            out.append(Problem("checkpoint", cp.seq, f"checkpoint {cp.id} cannot be checked: no audit key"))
        elif not signature_ok(key, cp):
            out.append(
                Problem(
                    "checkpoint",
                    cp.seq,
                    f"checkpoint {cp.id} ({cp.kind} at seq {cp.seq}) has an invalid signature: modified",
                )
            )
            prev = cp.signature
            continue
        if cp.prev_signature != prev:
            out.append(
                Problem(
                    "checkpoint",
                    cp.seq,
                    f"checkpoint {cp.id} does not follow the previous "
                    "checkpoint: a checkpoint was deleted or reordered",
                )
            )
        prev = cp.signature
        good.append(cp)
    return good


def verify_rows(
    events: Sequence[Any],  # AuditEvent objects or Core rows with the same columns
    head: tuple[int, str] | None,
    checkpoints: Sequence[AuditCheckpoint] = (),
    key: bytes | None = None,
    now: dt.datetime | None = None,
    anchors_until: int | None = None,
) -> VerifyReport:
    """Verify events (any order; sorted by seq here) against the head and checkpoints.

    ``anchors_until``: check only anchors up to this seq (when verifying a prefix)."""
    now = now or dt.datetime.now(dt.UTC)
    rows = sorted(events, key=lambda e: e.seq)
    problems: list[Problem] = []
    good_cps = _check_checkpoints(checkpoints, key, problems)
    purges = [cp for cp in good_cps if cp.kind == "purge"]
    start_seq, start_hash = (purges[-1].seq, purges[-1].hash) if purges else (0, GENESIS_HASH)
    if not purges and any(cp.kind == "purge" for cp in checkpoints):
        start_seq = max(cp.seq for cp in checkpoints if cp.kind == "purge")  # untrusted, but the best guess
    report = VerifyReport(
        checked=len(rows), problems=problems, start_seq=start_seq, checkpoints=len(checkpoints)
    )
    if rows:
        report.first_seq, report.last_seq = rows[0].seq, rows[-1].seq

    def add(kind: str, seq: int | None, message: str, e: AuditEvent | None = None) -> None:
        problems.append(Problem(kind, seq, message, e.event_id if e is not None else None))

    by_hash: dict[str, AuditEvent] = {e.hash: e for e in rows}
    orig: dict[int, int | None] = {}
    last_orig = start_seq
    for e in rows:  # stored order: a moved event's predecessor usually came just before
        pred = by_hash.get(e.prev_hash)
        hint = orig.get(id(pred)) if pred is not None else (start_seq if e.prev_hash == start_hash else None)
        # The forward search only where the predecessor is missing (a deletion was renumbered over).
        gap = pred is None and e.prev_hash != start_hash
        found = original_seq(e, (hint + 1,) if hint is not None else (), after=last_orig if gap else None)
        orig[id(e)] = found
        last_orig = found if found is not None else e.seq
    referenced: dict[str, list[AuditEvent]] = defaultdict(list)
    for e in rows:
        referenced[e.prev_hash].append(e)
    position = {id(e): i for i, e in enumerate(rows)}

    for e in rows:
        if e.seq <= start_seq:
            add(
                "inserted", e.seq, f"event seq {e.seq} lies before the purge checkpoint at seq {start_seq}", e
            )
        if orig[id(e)] is None:
            add("modified", e.seq, f"event seq {e.seq} ({e.kind}) does not match its hash: modified", e)
        for why in content_problems(e.payload, now):
            add("modified", e.seq, f"event seq {e.seq}: {why}", e)

    inserted: set[int] = set()
    for i, e in enumerate(rows):
        if e.seq <= start_seq:
            continue
        before = rows[i - 1] if i > 0 and rows[i - 1].seq > start_seq else None
        expected = before.hash if before is not None else start_hash
        if e.prev_hash == expected or orig[id(e)] is None:
            continue
        e_orig = orig[id(e)] or e.seq
        pred = by_hash.get(e.prev_hash)
        if pred is None and e.prev_hash != start_hash:
            prev_orig = (orig[id(before)] or before.seq) if before is not None else start_seq
            if e_orig == prev_orig + 1 and before is not None:
                add(
                    "modified",
                    before.seq,
                    f"event seq {before.seq} was rewritten (its hash was recomputed; "
                    f"event seq {e.seq} recorded a different one)",
                    before,
                )
            else:
                first, last = prev_orig + 1, e_orig - 1
                span = f"seq {first}" if first >= last else f"seqs {first}..{last}"
                add("deleted", first, f"event(s) {span} missing before event seq {e.seq}: deleted")
            continue
        pred_pos = position[id(pred)] if pred is not None else -1
        if pred_pos > i:
            continue  # e sits before its predecessor: reported below as reordered
        # Events the chain skips over: inserted, unless a genuine event links to them (then
        # they were moved, and are reported as reordered). Backwards, so that a run of
        # inserted events linked to each other is found whole.
        for between in reversed(rows[pred_pos + 1 : i]):
            linked = [r for r in referenced.get(between.hash, []) if id(r) not in inserted]
            if between.seq > start_seq and not linked and id(between) not in inserted:
                inserted.add(id(between))
                add(
                    "inserted",
                    between.seq,
                    f"event seq {between.seq} ({between.kind}) is not part of the chain: inserted",
                    between,
                )

    moved = [e for e in rows if orig[id(e)] not in (None, e.seq)]
    stored, original = {e.seq for e in moved}, {orig[id(e)] for e in moved}
    if moved and stored == original:
        for e in moved:
            add(
                "reordered",
                e.seq,
                f"event originally at seq {orig[id(e)]} is stored at seq {e.seq}: reordered",
                e,
            )
    elif moved:
        shift = sorted({e.seq - (orig[id(e)] or 0) for e in moved})
        add(
            "renumbered",
            moved[0].seq,
            f"{len(moved)} event(s) from seq {moved[0].seq} carry another seq "
            f"than they were written with (shifted by {shift}): renumbered to hide "
            "an insertion or deletion",
        )

    for cp in good_cps:
        if (
            cp.kind != "anchor"
            or cp.seq <= start_seq
            or (anchors_until is not None and cp.seq > anchors_until)
        ):
            continue
        pinned = next((e for e in rows if (orig[id(e)] or e.seq) == cp.seq), None)
        if pinned is None:
            add(
                "deleted",
                cp.seq,
                f"event seq {cp.seq}, pinned by signed checkpoint {cp.id}, is missing: deleted",
            )
        elif pinned.hash != cp.hash:
            add(
                "modified",
                cp.seq,
                f"event seq {cp.seq} differs from signed checkpoint {cp.id}: history before it was rewritten",
                pinned,
            )

    if head is not None:
        head_seq, head_hash = head
        tail = rows[-1] if rows else None
        last_seq = tail.seq if tail is not None else start_seq
        last_orig = (orig[id(tail)] or tail.seq) if tail is not None else start_seq
        last_hash = tail.hash if tail is not None else start_hash
        if last_hash == head_hash and head_seq in (last_seq, last_orig):
            pass  # the head matches the last event (renumbering, if any, is reported above)
        elif max(last_seq, last_orig) < head_seq:
            first = max(last_seq, last_orig) + 1
            span = f"seq {first}" if first == head_seq else f"seqs {first}..{head_seq}"
            add("deleted", first, f"event(s) {span} at the end of the chain are missing: deleted")
        elif last_seq > head_seq:
            beyond = [e for e in rows if e.seq > head_seq and (orig[id(e)] or e.seq) > head_seq]
            for e in beyond:
                if id(e) not in inserted:
                    add(
                        "inserted",
                        e.seq,
                        f"event seq {e.seq} lies beyond the chain head (seq {head_seq}): inserted",
                        e,
                    )
            if not beyond:
                add("head", head_seq, "the chain head does not match the last event: modified")
        else:
            add("head", head_seq, f"the last event (seq {head_seq}) does not match the chain head: modified")
    elif rows:
        add("head", None, "the chain-head row is missing: the end of the chain cannot be checked")
    problems.sort(key=lambda p: (p.seq if p.seq is not None else -1, p.kind))
    return report


async def _clean_pass(
    session: AsyncSession,
    head: tuple[int, str] | None,
    checkpoints: Sequence[AuditCheckpoint],
    key: bytes | None,
    now: dt.datetime,
    batch: int,
) -> VerifyReport | None:
    """One streaming pass in seq order, memory bounded by ``batch``: the report when the
    chain is intact, None at the first doubt (then the classifying analysis runs)."""
    if head is None or key is None and checkpoints:
        return None
    scratch: list[Problem] = []
    good = _check_checkpoints(checkpoints, key, scratch)
    if scratch:
        return None
    purges = [cp for cp in good if cp.kind == "purge"]
    start_seq, expected = (purges[-1].seq, purges[-1].hash) if purges else (0, GENESIS_HASH)
    anchors = {cp.seq: cp.hash for cp in good if cp.kind == "anchor" and cp.seq > start_seq}
    seq, first, checked = start_seq, None, 0
    table = AuditEvent.__table__
    result = await session.stream(select(table).order_by(table.c.seq).execution_options(yield_per=batch))
    async for e in result:
        if (
            e.seq != seq + 1
            or e.prev_hash != expected
            or hash_at(e, e.seq) != e.hash
            or anchors.get(e.seq, e.hash) != e.hash
            or content_problems(e.payload, now)
        ):
            await result.close()
            return None
        seq, expected, checked = e.seq, e.hash, checked + 1
        first = e.seq if first is None else first
    if (seq, expected) != head or any(s > seq for s in anchors):
        return None
    return VerifyReport(
        checked=checked,
        first_seq=first,
        last_seq=seq if checked else None,
        start_seq=start_seq,
        checkpoints=len(checkpoints),
    )


async def verify_chain(
    session: AsyncSession, *, key: bytes | None, now: dt.datetime | None = None, batch: int = 2000
) -> VerifyReport:
    """Verify the stored chain, head and checkpoints (read-only).

    An intact chain is checked in one streaming pass; if anything is off, every event is
    loaded and analysed to say what happened to which event."""
    now = now or dt.datetime.now(dt.UTC)
    head_row = (
        await session.execute(
            select(AuditChainHead.last_seq, AuditChainHead.last_hash).where(AuditChainHead.id == 1)
        )
    ).first()
    head = (int(head_row[0]), str(head_row[1])) if head_row is not None else None
    checkpoints = await list_checkpoints(session, fresh=True)
    clean = await _clean_pass(session, head, checkpoints, key, now, batch)
    if clean is not None:
        return clean
    # Core rows, not ORM objects: what is stored now, never a stale identity map.
    table = AuditEvent.__table__
    events = list((await session.execute(select(table).order_by(table.c.seq))).all())
    return verify_rows(events, head, checkpoints, key, now)
