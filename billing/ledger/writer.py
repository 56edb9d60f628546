"""The batched usage writer: idempotent inserts, a durable spool when the DB is down.

    writer = UsageWriter(sessions, UsageSpool(data_dir / "spool"))
    await writer.start()
    await writer.submit(entry)        # returns at once; flushed by size or interval
    ...
    await writer.stop()               # flushes what is queued

Every batch is one ``INSERT ... ON CONFLICT (request_id, attempt) DO NOTHING``. When the
insert fails for any reason other than bad data, the batch goes to the spool (fsync'ed)
and is replayed later; replays are idempotent, so each record is stored exactly once.
Rows that violate a constraint (unknown tenant, say) are written one by one and the
failing ones are kept in ``rejected.jsonl`` next to the spool, never dropped silently.

A killed process loses nothing it accepted: `submit` first appends the record to a journal
(billing/ledger/journal.py: one write(), no fsync) in the spool directory; a flush seals the
journal and deletes it once its records are committed or spooled. `start` takes the journals
an earlier process left into the spool, and replays them (idempotently) before serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from billing.errors import LedgerError
from billing.ledger.entry import UsageEntry
from billing.ledger.journal import Journal
from billing.ledger.spool import UsageSpool
from billing.models import UsageRecord
from billing.sql import dialect_of, insert_ignore

log = logging.getLogger(__name__)

_BAD_DATA = (sa_exc.IntegrityError, sa_exc.DataError)


@dataclass
class WriterStats:
    submitted: int = 0
    written: int = 0  # rows newly inserted (duplicates are not counted)
    duplicates: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0


class UsageWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        spool: UsageSpool,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.25,
        replay_interval: float = 30.0,
        max_queue: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.replay_interval = replay_interval
        self._queue: asyncio.Queue[UsageEntry] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._last_replay = 0.0
        self._spool_dirty = True  # replay leftovers of an earlier run on the first success
        self._journal = Journal(spool.directory, "usage-journal")
        self._journal_failed = False
        self.stats = WriterStats()

    async def start(self) -> None:
        if self._task is None:
            # An earlier process killed before its flush left its accepted records here.
            for path in self._journal.leftovers():
                await self.spool.adopt(path)
            try:
                await self.replay_spool()
            except Exception:  # the database may be down at start: the loop retries
                log.exception("usage spool replay at start failed")
            self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Stop the loop and flush everything queued (to the DB or the spool)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def submit(self, entry: UsageEntry) -> None:
        """Queue one record. If the queue is full the caller waits for a flush (backpressure)."""
        self.stats.submitted += 1
        if self._queue.full():
            await self.flush()
        # Journal and queue together, with no await between: a flush seals the journal and
        # takes exactly the queued records, so each sealed file matches what it committed.
        self._journal_append(entry)
        self._queue.put_nowait(entry)
        if self._queue.qsize() >= self.batch_size:
            self._wake.set()

    async def write_now(self, entries: Sequence[UsageEntry]) -> None:
        """Write synchronously (no queue): DB, else spool. For callers that must know."""
        async with self._flush_lock:
            await self._write_batch(list(entries))

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._flush_lock:
            # The records queued now are the ones in the journal being sealed; later ones go
            # to the next journal and the next flush.
            pending = self._queue.qsize()
            sealed = self._journal.seal()
            try:
                while pending > 0:
                    batch = [self._queue.get_nowait() for _ in range(min(self.batch_size, pending))]
                    pending -= len(batch)
                    await self._write_batch(batch)
            except BaseException:
                # Neither DB nor spool took a batch (or the flush was cancelled): the sealed
                # journal still holds its records; hand it to the spool for replay.
                if sealed is not None:
                    with contextlib.suppress(OSError):
                        await self.spool.adopt(sealed)
                        self._spool_dirty = True
                raise
            Journal.discard(sealed)

    def _journal_append(self, entry: UsageEntry) -> None:
        line = (json.dumps(entry.to_json(), separators=(",", ":")) + "\n").encode()
        try:
            self._journal.append(line)
            self._journal_failed = False
        except OSError as exc:  # the record is still queued; only a kill before its flush loses it
            if not self._journal_failed:
                log.error("usage journal write failed (%r): records are not kill-safe until it recovers", exc)
            self._journal_failed = True

    async def replay_spool(self) -> int:
        """Insert every spooled record (idempotently); returns rows newly inserted.
        Files stay in the spool if the database is still unavailable."""
        inserted = 0
        for path in await self.spool.take_files():
            entries = UsageSpool.read(path)
            try:
                inserted += await self._insert_all_or_reject(entries)
            except Exception as exc:  # still unavailable: keep the file for the next replay
                log.warning("usage spool replay deferred: %r", exc)
                self._spool_dirty = True
                return inserted
            await self.spool.done(path)
        self.stats.replayed += inserted
        self._spool_dirty = False
        self._last_replay = time.monotonic()
        return inserted

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
                if self._spool_dirty and time.monotonic() - self._last_replay >= self.replay_interval:
                    await self.replay_spool()
            except Exception:  # never let the loop die; the next tick retries
                log.exception("usage writer tick failed")

    async def _write_batch(self, batch: list[UsageEntry]) -> None:
        if not batch:
            return
        try:
            await self._insert_all_or_reject(batch)
            if self._spool_dirty:
                # The database takes writes again: replay the spool on this tick, not a
                # replay interval after the last failure.
                self._last_replay = time.monotonic() - self.replay_interval
        except Exception as exc:
            log.warning("usage DB write failed (%r); spooling %d records", exc, len(batch))
            try:
                self.stats.spooled += await self.spool.append(batch)
            except OSError as spool_exc:
                raise LedgerError(f"usage records lost neither DB nor spool: {spool_exc}") from exc
            self._spool_dirty = True
            self._last_replay = time.monotonic()  # don't hammer a DB that just failed

    async def _insert_all_or_reject(self, entries: list[UsageEntry]) -> int:
        try:
            return await self._insert(entries)
        except _BAD_DATA:
            if len(entries) == 1:
                await self._reject(entries[0])
                return 0
        inserted = 0
        for entry in entries:  # isolate the bad rows
            try:
                inserted += await self._insert([entry])
            except _BAD_DATA:
                await self._reject(entry)
        return inserted

    async def _insert(self, entries: list[UsageEntry]) -> int:
        now = utcnow()
        table = UsageRecord.__table__
        async with transaction(self._sessions) as session:
            # executemany through SQLAlchemy's "insertmanyvalues" batches (one compiled
            # statement, cached); RETURNING yields only the rows really inserted.
            stmt = insert_ignore(dialect_of(session), table, ["request_id", "attempt"])  # type: ignore[arg-type]
            result = await session.execute(stmt.returning(table.c.id), [e.to_row(now) for e in entries])
            inserted = len(result.all())
        self.stats.written += inserted
        self.stats.duplicates += len(entries) - inserted
        return inserted

    async def _reject(self, entry: UsageEntry) -> None:
        self.stats.rejected += 1
        log.error("usage record %s/%s rejected by the database", entry.request_id, entry.attempt)
        path = self.spool.directory / "rejected.jsonl"
        line = json.dumps(entry.to_json(), separators=(",", ":")) + "\n"

        def _write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()

        await asyncio.to_thread(_write)
