"""A write-ahead journal that outlives the process: what a batched writer has accepted but
not yet committed.

A batching writer answers the caller before its batch reaches the database; if the process
is killed (SIGKILL, the OOM killer, a crash) in that window, the queued records would be lost
although their answers were already sent. `append` hands each record's line to the kernel with
one `write()` before the caller goes on, so the page cache holds it even if the process dies the
next instant. There is no fsync per line: a crash of the whole machine (not of the process) may
lose the lines of the last flush interval, the same window a database without synchronous
commit has.

    journal = Journal(directory, "usage")
    journal.append(line)            # before the record's answer is sent
    sealed = journal.seal()         # at flush: later appends go to a new file
    ... commit the records ...
    journal.discard(sealed)         # they are in the database (or in the fsync'ed spool)

Files left by an earlier process (`leftovers()`) hold records that may or may not have been
committed; the writers replay them idempotently (usage by request and attempt, audit by
event_id). Processes that share a data directory (two `gateway serve` on one host) leave
each other's live journals alone: a file whose writer (the pid in its name) still runs is not
a leftover.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SUFFIX = ".wal"


class Journal:
    def __init__(self, directory: str | Path, prefix: str) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self._fd: int | None = None
        self._path: Path | None = None
        self._written = False

    def append(self, line: bytes) -> None:
        """One write() of one whole line (O_APPEND): a killed process leaves whole lines."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # time_ns first: the names sort in the order the files were started
            self._path = self.directory / f"{self.prefix}.{time.time_ns():020d}.{os.getpid()}{SUFFIX}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        view = memoryview(line)
        while view:  # a regular file takes it in one call; loop for the rare short write
            view = view[os.write(self._fd, view) :]
        self._written = True

    def seal(self) -> Path | None:
        """Close the current file and return it (None if nothing was appended since the last
        seal); the next append starts a new file."""
        fd, path, written = self._fd, self._path, self._written
        self._fd, self._path, self._written = None, None, False
        if fd is None:
            return None
        os.close(fd)
        if not written and path is not None:
            path.unlink(missing_ok=True)
            return None
        return path

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """Journal files not open in this process (an earlier run's), oldest first."""
        if not self.directory.exists():
            return []
        files = sorted(self.directory.glob(f"{self.prefix}.*{SUFFIX}"))
        return [f for f in files if f != self._path and not _writer_alive(f)]

    def close(self) -> None:
        """Seal and drop the current file: the caller has committed every record in it."""
        self.discard(self.seal())


def _writer_alive(path: Path) -> bool:
    """Whether the process that named this journal file runs (its pid is the name's last part)."""
    try:
        pid = int(path.name[: -len(SUFFIX)].rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # ours from before a fork or an earlier writer object: not live here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
