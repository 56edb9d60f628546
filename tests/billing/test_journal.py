"""The journal's leftovers: files of dead writers only (two processes may share a data dir)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from billing.ledger.journal import SUFFIX, Journal


def _file(directory: Path, pid: int) -> Path:
    path = directory / f"usage-journal.{time.time_ns():020d}.{pid}{SUFFIX}"
    path.write_bytes(b'{"x":1}\n')
    return path


def test_a_live_writers_journal_is_not_a_leftover(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_file = _file(tmp_path, live.pid)
        dead_file = _file(tmp_path, dead.pid)
        own_earlier = _file(tmp_path, os.getpid())  # a restarted container reuses the pid
        journal = Journal(tmp_path, "usage-journal")
        journal.append(b'{"y":2}\n')  # the file this writer has open is never a leftover
        assert journal.leftovers() == sorted([dead_file, own_earlier])
        live.kill()
        live.wait()
        assert journal.leftovers() == sorted([live_file, dead_file, own_earlier])
    finally:
        live.kill()
        journal.close()
