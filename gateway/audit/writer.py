"""The batched audit writer for request events: one transaction (one chain-head update) per
batch instead of one per request, off the response path.

    writer = AuditWriter(sessions, data_dir / "spool" / "audit")
    await writer.start()
    writer.submit(kind=..., actor=..., payload=..., tenant_id=..., request_id=...)  # at once
    await writer.stop()                      # flushes what is queued

Events keep their submission order in the chain. A batch the database does not take is
appended to a local spool (fsync'ed JSON lines) and replayed in order before newer events;
each event carries its event_id from submission, so a replay after an unacknowledged commit
skips the events already stored and nothing is appended twice. Admin and registry events are
still appended inside their own transactions (gateway.audit.log.append_event).

A killed process loses no event it accepted: `submit` first appends the event to a journal
(billing/ledger/journal.py: one write(), no fsync) in the spool directory, which a flush seals
and deletes once the events are committed or spooled; `start` moves an earlier process's
journals into the spool, in order, before the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from billing.ledger.journal import Journal
from gateway.audit.log import append_events
from gateway.audit.models import AuditEvent

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        spool_dir: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.02,
        replay_interval: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._spool = spool_dir
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.replay_interval = replay_interval
        self._queue: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._journal = Journal(spool_dir, "audit-journal")
        self._journal_failed = False
        self.written = 0
        self.spooled = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._spool.mkdir, parents=True, exist_ok=True)
        # An earlier process killed before its flush: its accepted events follow the spool's.
        for path in self._journal.leftovers():
            await self._adopt(path)
        with contextlib.suppress(Exception):  # the database may be down at start: the loop retries
            await self._replay()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    def submit(
        self,
        *,
        kind: str,
        actor: str,
        payload: dict[str, Any],
        tenant_id: str | None = None,
        request_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> str:
        """Queue one event; returns its event_id. Never blocks the request."""
        event_id = f"evt_{uuid.uuid4().hex}"
        event = {
            "event_id": event_id,
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "tenant_id": tenant_id,
            "request_id": request_id,
            "at": at or utcnow(),
        }
        # Journal and queue together, with no await between (see flush).
        try:
            self._journal.append(_line(event).encode())
            self._journal_failed = False
        except OSError as exc:  # still queued; only a kill before its flush would lose it
            if not self._journal_failed:
                log.error("audit journal write failed (%r): events are not kill-safe until it recovers", exc)
            self._journal_failed = True
        self._queue.append(event)
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return event_id

    async def flush(self) -> None:
        """Write everything queued so far (to the database, else the spool)."""
        async with self._lock:
            if self._has_spool():  # older events first: the chain keeps submission order
                try:
                    await self._replay_locked()
                except Exception as exc:
                    log.warning("audit spool replay deferred: %r", exc)
            # The events queued now are the ones in the journal being sealed.
            pending, self._queue = self._queue, []
            sealed = self._journal.seal()
            try:
                for i in range(0, len(pending), self.batch_size):
                    batch = pending[i : i + self.batch_size]
                    if self._has_spool():
                        await self._to_spool(batch)
                        continue
                    try:
                        await self._write(batch)
                    except Exception as exc:
                        log.warning("audit DB write failed (%r); spooling %d events", exc, len(batch))
                        await self._to_spool(batch)
            except BaseException:
                # The spool failed too, or the flush was cancelled: the sealed journal still
                # holds the events; the spool replays them (by event_id, so none twice).
                if sealed is not None:
                    with contextlib.suppress(OSError):
                        await self._adopt(sealed)
                raise
            Journal.discard(sealed)

    async def _run(self) -> None:
        idle = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            idle += self.flush_interval
            try:
                if self._queue or (self._has_spool() and idle >= self.replay_interval):
                    idle = 0.0
                    await self.flush()
            except Exception:  # never let the loop die; the next tick retries
                log.exception("audit writer tick failed")

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        async with transaction(self._sessions) as session:
            await append_events(session, batch)
        self.written += len(batch)

    # -- spool -------------------------------------------------------------------------------

    def _has_spool(self) -> bool:
        return any(self._spool.glob("*.jsonl"))

    async def _to_spool(self, batch: list[dict[str, Any]]) -> None:
        await self._append_spool("".join(_line(e) for e in batch))
        self.spooled += len(batch)

    async def _append_spool(self, lines: str) -> None:
        path = self._spool / "pending.jsonl"

        def append() -> None:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())

        await asyncio.to_thread(append)

    async def _adopt(self, journal: Path) -> None:
        """A journal's events go to the end of the spool (fsync'ed), then the journal goes."""
        text = await asyncio.to_thread(journal.read_text, encoding="utf-8")
        if text and not text.endswith("\n"):  # a torn last line: never acknowledged
            text = text[: text.rfind("\n") + 1]
        if text:
            await self._append_spool(text)
        await asyncio.to_thread(journal.unlink, True)

    async def _replay(self) -> None:
        async with self._lock:
            await self._replay_locked()

    async def _replay_locked(self) -> None:
        path = self._spool / "pending.jsonl"
        if not path.exists():
            return
        events = []
        seen: set[str] = set()
        for line in (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines():
            try:
                event = _from_json(json.loads(line))
            except ValueError:  # a torn last line: never fsynced, so never acknowledged
                log.warning("audit spool: skipped a torn line")
                continue
            if event["event_id"] not in seen:  # a journal adopted after its batch was spooled
                seen.add(event["event_id"])
                events.append(event)
        async with transaction(self._sessions) as session:
            ids = [e["event_id"] for e in events]
            stored: set[str] = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                stored |= set(
                    (
                        await session.scalars(
                            select(AuditEvent.event_id).where(AuditEvent.event_id.in_(chunk))
                        )
                    ).all()
                )
            await append_events(session, [e for e in events if e["event_id"] not in stored])
        await asyncio.to_thread(path.unlink)
        self.written += len(events) - len(stored)
        log.info("audit spool replayed: %d events", len(events) - len(stored))


def _json(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "at": event["at"].isoformat()}


def _line(event: dict[str, Any]) -> str:
    return json.dumps(_json(event), separators=(",", ":"), default=str) + "\n"


def _from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "at": dt.datetime.fromisoformat(data["at"])}
