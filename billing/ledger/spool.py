"""A durable local spool for usage records the database could not take.

Records are appended as JSON lines to ``<dir>/usage.jsonl`` and fsync'ed before
`append` returns. `take_batches` moves the live file aside atomically (rename) so that
new appends start a fresh file, and yields the pending files; the caller inserts a file's
records (idempotently) and then calls `done(file)`. A crash at any point either keeps the
file (it is replayed again: the insert is ON CONFLICT DO NOTHING, so every record ends up
stored exactly once) or has already removed it after the commit.

One spool directory belongs to one process (each replica has its own data directory).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from billing.ledger.entry import UsageEntry

log = logging.getLogger(__name__)

LIVE = "usage.jsonl"
PENDING_SUFFIX = ".replay"


class UsageSpool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = asyncio.Lock()

    @property
    def live_path(self) -> Path:
        return self.directory / LIVE

    async def append(self, entries: Iterable[UsageEntry]) -> int:
        """Append and fsync; returns the number of records written."""
        lines = [json.dumps(e.to_json(), separators=(",", ":")) + "\n" for e in entries]
        if not lines:
            return 0
        data = "".join(lines).encode()
        async with self._lock:
            await asyncio.to_thread(self._append_sync, data)
        return len(lines)

    def _append_sync(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.live_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.directory)

    async def pending_count(self) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._count_sync)

    def _count_sync(self) -> int:
        total = 0
        for path in self._pending_files(include_live=True):
            with path.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        return total

    async def take_files(self) -> list[Path]:
        """Seal the live file (rename) and return every file waiting for replay, oldest first."""
        async with self._lock:
            return await asyncio.to_thread(self._take_sync)

    def _take_sync(self) -> list[Path]:
        if self.live_path.exists() and self.live_path.stat().st_size > 0:
            sealed = self.directory / f"usage.{os.getpid()}.{uuid.uuid4().hex}{PENDING_SUFFIX}"
            os.replace(self.live_path, sealed)
            _fsync_dir(self.directory)
        return self._pending_files(include_live=False)

    def _pending_files(self, *, include_live: bool) -> list[Path]:
        if not self.directory.exists():
            return []
        files = sorted(self.directory.glob(f"usage.*{PENDING_SUFFIX}"), key=lambda p: p.stat().st_mtime)
        if include_live and self.live_path.exists():
            files.append(self.live_path)
        return files

    @staticmethod
    def read(path: Path) -> list[UsageEntry]:
        """Records of a sealed file. A torn last line (crash during append, never fsynced,
        so never acknowledged) is skipped with a warning."""
        entries: list[UsageEntry] = []
        lines = path.read_bytes().split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entries.append(UsageEntry.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError):
                if i == len(lines) - 1:
                    log.warning("skipping a torn last line in %s", path)
                    continue
                raise
        return entries

    async def adopt(self, path: Path) -> None:
        """Take a journal file (records accepted but perhaps not committed, see journal.py)
        as a sealed spool file: it is replayed like any other, idempotently."""
        async with self._lock:
            await asyncio.to_thread(self._adopt_sync, path)

    def _adopt_sync(self, path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.replace(path, self.directory / f"usage.{os.getpid()}.{uuid.uuid4().hex}{PENDING_SUFFIX}")
        _fsync_dir(self.directory)

    async def done(self, path: Path) -> None:
        async with self._lock:
            await asyncio.to_thread(path.unlink, True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
