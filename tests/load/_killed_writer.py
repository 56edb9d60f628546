"""A process that accepts usage records and audit events, then dies by SIGKILL before any
flush: what a gateway killed between its answers and its writers' next batch leaves behind.

    python -m tests.load._killed_writer DB_URL SPOOL_DIR TENANT_ID KEY_ID COUNT
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path

from billing.db import make_engine, make_sessionmaker
from billing.ledger import UsageSpool, UsageWriter
from gateway.audit.writer import AuditWriter
from tests.billing.conftest import entry


async def accept_and_die(url: str, spool: Path, tenant: str, key: str, count: int) -> None:
    sessions = make_sessionmaker(make_engine(url))
    # Never started: nothing is flushed, as if the kill came before the next batch.
    usage = UsageWriter(sessions, UsageSpool(spool), flush_interval=3600)
    audit = AuditWriter(sessions, spool / "audit", flush_interval=3600)
    at = dt.datetime.now(dt.UTC)
    for i in range(count):
        await usage.submit(entry(tenant, key, f"killed-{i}", at))
        audit.submit(kind="request", actor=key, payload={"n": i}, tenant_id=tenant, request_id=f"killed-{i}")
    print("accepted", count, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    url, spool, tenant, key, count = sys.argv[1:6]
    asyncio.run(accept_and_die(url, Path(spool), tenant, key, int(count)))
