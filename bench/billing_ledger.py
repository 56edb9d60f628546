"""Ledger benchmark on PostgreSQL: 10M usage records, the hourly rollup, and a tenant's
month of usage by day and line item.

    BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/gw_billing_bench \
        .venv/bin/python bench/billing_ledger.py [--rows 10000000]

DESTROYS AND RECREATES the public schema of the target database. Prints one JSON object.
Seeds with generate_series (secondary indexes are dropped during the load and rebuilt
after, FK triggers skipped: the load is a fixture, not the measured path). Records span
September 2026 evenly; one "big" tenant has 10% of all rows over 20 API keys, 1,000 small
tenants share the rest; costs are the v4-peak prices (peak/off-peak by hour and weekday).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from billing.catalog import seed_catalog  # noqa: E402
from billing.db import make_engine, make_sessionmaker  # noqa: E402
from billing.ledger import (  # noqa: E402
    UsageEntry,
    UsageSpool,
    UsageWriter,
    build_invoice,
    rollup_period,
    run_rollup,
    usage_by_day,
)
from billing.ledger.queries import unrolled_hours  # noqa: E402
from gateway import migrate  # noqa: E402

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/gw_billing_bench")
SEP = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
OCT = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
SECONDARY = {
    "ix_usage_records_tenant_started": "(tenant_id, started_at)",
    "ix_usage_records_ingested_at": "(ingested_at)",
    "ix_usage_records_started_at": "(started_at)",
}

SEED_SQL = """
INSERT INTO usage_records (request_id, attempt, tenant_id, api_key_id, model, variant, mode,
  artifact_id, status, finish_reason, stream, prompt_tokens, prompt_cache_hit_tokens,
  prompt_cache_miss_tokens, completion_tokens, reasoning_tokens, price_version,
  cost_cache_hit, cost_cache_miss, cost_output, cost_total, started_at, finished_at, ingested_at)
SELECT 'req-' || g, 1, t.tenant, t.key, 'deepseek-v4-' || v.variant, v.variant, m.mode,
  'bench', 'completed', 'stop', (g % 2 = 0), k.hit + k.miss, k.hit, k.miss, k.out,
  CASE WHEN m.mode = 'non-think' THEN 0 ELSE k.out / 2 END,
  'v4-peak@' || CASE WHEN k.pk THEN 'peak' ELSE 'off-peak' END,
  k.hit * p.u_hit * f, k.miss * p.u_miss * f, k.out * p.u_out * f,
  (k.hit * p.u_hit + k.miss * p.u_miss + k.out * p.u_out) * f,
  ts, ts + interval '3 seconds', ts + interval '4 seconds'
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
CROSS JOIN LATERAL (SELECT CAST(:start AS timestamptz)
    + (g::numeric * CAST(:span AS bigint) / CAST(:n AS bigint))::bigint * interval '1 microsecond' AS ts) AS s
CROSS JOIN LATERAL (SELECT
    (g * 7) % 2000 AS hit, (g * 13) % 3000 + 1 AS miss, (g * 11) % 1500 + 1 AS out,
    extract(isodow FROM ts AT TIME ZONE 'UTC') <= 5
      AND extract(hour FROM ts AT TIME ZONE 'UTC')::int IN (1, 2, 3, 6, 7, 8, 9) AS pk) AS k
CROSS JOIN LATERAL (SELECT CASE WHEN k.pk THEN 2 ELSE 1 END AS f) AS ff
CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'ten_big' ELSE 'ten_' || (g % 1000) END AS tenant,
    CASE WHEN g % 10 = 0 THEN 'key_big_' || ((g / 10) % 20) ELSE 'key_' || (g % 1000) END AS key) AS t
CROSS JOIN LATERAL (SELECT CASE WHEN g % 4 = 0 THEN 'pro' ELSE 'flash' END AS variant) AS v
CROSS JOIN LATERAL (SELECT (ARRAY['non-think', 'think-high', 'think-max'])[g % 3 + 1] AS mode) AS m
CROSS JOIN LATERAL (SELECT
    CASE WHEN v.variant = 'pro' THEN 22000 ELSE 7000 END::bigint AS u_hit,
    CASE WHEN v.variant = 'pro' THEN 660000 ELSE 220000 END::bigint AS u_miss,
    CASE WHEN v.variant = 'pro' THEN 1980000 ELSE 660000 END::bigint AS u_out) AS p
"""


async def timed_runs(fn: Any, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (n - 1))], 2),
        "min_ms": round(times[0], 2),
        "runs": n,
    }


async def explain_ms(conn: Any, sql: str, params: dict[str, Any]) -> float:
    rows = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)).scalar()
    plan = rows[0] if isinstance(rows, list) else json.loads(rows)[0]
    return round(float(plan["Execution Time"]), 2)


async def main(rows: int, skip_seed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "billing_ledger", "rows": rows}
    engine = make_engine(URL)
    sessions = make_sessionmaker(engine)
    if not skip_seed:
        await seed(engine, sessions, rows, out)
    await measure(engine, sessions, out)
    await engine.dispose()
    return out


async def seed(engine: Any, sessions: Any, rows: int, out: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await asyncio.to_thread(migrate.upgrade, URL)

    async with engine.begin() as conn:
        out["postgres"] = (await conn.execute(text("SHOW server_version"))).scalar()
        out["shared_buffers"] = (await conn.execute(text("SHOW shared_buffers"))).scalar()
        await conn.execute(
            text(
                "INSERT INTO tenants (id, name, active, created_at) "
                "SELECT 'ten_' || i, 'tenant ' || i, true, now() "
                "FROM generate_series(0, 999) i UNION ALL SELECT 'ten_big', 'big tenant', true, now()"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, name, display_prefix, key_hash, scopes, created_at) "
                "SELECT 'key_' || i, 'ten_' || i, '', 'sk', 'h' || i, 'inference', now() "
                "FROM generate_series(0, 999) i "
                "UNION ALL SELECT 'key_big_' || i, 'ten_big', '', 'sk', 'hb' || i, 'inference', now() "
                "FROM generate_series(0, 19) i"
            )
        )
        for name in SECONDARY:
            await conn.execute(text(f"DROP INDEX {name}"))

    t0 = time.perf_counter()
    chunk = 1_000_000
    span_us = int((OCT - SEP).total_seconds() * 1_000_000)
    for lo in range(0, rows, chunk):
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))  # skip FK triggers
            await conn.execute(text("SET LOCAL synchronous_commit = off"))
            await conn.execute(
                text(SEED_SQL),
                {"lo": lo, "hi": min(lo + chunk, rows) - 1, "start": SEP, "span": span_us, "n": rows},
            )
    out["seed_insert_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execute(text("SET maintenance_work_mem = '512MB'"))
        for name, cols in SECONDARY.items():
            await conn.execute(text(f"CREATE INDEX {name} ON usage_records {cols}"))
        await conn.commit()
    out["seed_index_build_s"] = round(time.perf_counter() - t0, 1)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        t0 = time.perf_counter()
        await conn.execute(text("VACUUM ANALYZE usage_records"))
        out["vacuum_analyze_s"] = round(time.perf_counter() - t0, 1)
        out["usage_records_size"] = (
            await conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('usage_records'))"))
        ).scalar()

    # The rollup job's first run rebuilds every hour of the month.
    t0 = time.perf_counter()
    first = await run_rollup(sessions)
    out["rollup_full_month"] = {
        "seconds": round(time.perf_counter() - t0, 1),
        "hours_rebuilt": first.hours_rebuilt,
        "rollup_rows": first.rows_written,
    }
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE usage_hourly"))
        await conn.execute(text("VACUUM ANALYZE usage_daily"))


async def measure(engine: Any, sessions: Any, out: dict[str, Any]) -> None:
    run = f"{time.time_ns()}"
    # A --skip-seed run starts from the seeded state: earlier runs' incremental records go.
    async with engine.begin() as conn:
        gone = await conn.execute(text("DELETE FROM usage_records WHERE request_id LIKE 'new-%'"))
    if gone.rowcount:
        await rollup_period(sessions, dt.datetime(2026, 9, 30, 19, tzinfo=dt.UTC), OCT)

    # Incremental: 10,000 new records through the batched writer, then the job again.
    catalog = seed_catalog()
    now = dt.datetime(2026, 9, 30, 20, tzinfo=dt.UTC)
    entries = [
        UsageEntry(
            f"new-{run}-{i}",
            1,
            "ten_big",
            f"key_big_{i % 20}",
            "deepseek-v4-flash",
            "flash",
            "think-high",
            "bench",
            "completed",
            now - dt.timedelta(seconds=i % 3600),
            now,
            prompt_cache_hit_tokens=500,
            prompt_cache_miss_tokens=100,
            completion_tokens=400,
            reasoning_tokens=200,
        ).priced(catalog.prices_at("flash", now - dt.timedelta(seconds=i % 3600)))
        for i in range(10_000)
    ]
    writer = UsageWriter(sessions, UsageSpool("/tmp/billing-bench-spool"), batch_size=500)
    await writer.start()
    t0 = time.perf_counter()
    for e in entries:
        await writer.submit(e)
    await writer.stop()
    secs = time.perf_counter() - t0
    out["writer"] = {
        "records": len(entries),
        "seconds": round(secs, 2),
        "records_per_s": round(len(entries) / secs),
        "batch_size": 500,
        "duplicates": writer.stats.duplicates,
        "spooled": writer.stats.spooled,
    }
    t0 = time.perf_counter()
    inc = await run_rollup(sessions)
    out["rollup_incremental"] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "hours_rebuilt": inc.hours_rebuilt,
    }

    # The query that GET /v1/usage runs: a tenant's month by day and line item.
    async def big() -> None:
        async with sessions() as s:
            assert len(await usage_by_day(s, "ten_big", SEP, OCT)) == 30 * 6

    async def small() -> None:
        async with sessions() as s:
            assert await usage_by_day(s, "ten_7", SEP, OCT)

    # The same query reading the rollup alone (what it did before issue 18: as fresh as
    # the last rollup run). The 10,000 records above were ingested within the rollup's
    # overlap, so the exact query reads their two hours from usage_records.
    async def big_rollup_only() -> None:
        async with sessions() as s:
            assert len(await usage_by_day(s, "ten_big", SEP, OCT, include_fresh=False)) == 30 * 6

    async def small_rollup_only() -> None:
        async with sessions() as s:
            assert await usage_by_day(s, "ten_7", SEP, OCT, include_fresh=False)

    async with sessions() as s:
        out["unrolled_hours_big_tenant"] = len(await unrolled_hours(s, "ten_big", SEP, OCT) or [])
        out["unrolled_hours_small_tenant"] = len(await unrolled_hours(s, "ten_7", SEP, OCT) or [])
    for label, exact_fn, rollup_fn in (("big", big, big_rollup_only), ("small", small, small_rollup_only)):
        exact_runs: list[float] = []
        rollup_runs: list[float] = []
        for _ in range(30):  # alternated, side by side
            for fn, times in ((exact_fn, exact_runs), (rollup_fn, rollup_runs)):
                t0 = time.perf_counter()
                await fn()
                times.append((time.perf_counter() - t0) * 1000)
        out[f"usage_by_day_side_by_side_{label}_tenant"] = {
            "exact_median_ms": round(statistics.median(exact_runs), 2),
            "rollup_only_median_ms": round(statistics.median(rollup_runs), 2),
            "ratio": round(statistics.median(exact_runs) / statistics.median(rollup_runs), 2),
            "runs": 30,
        }
    out["load_average_1m"] = round(os.getloadavg()[0], 2)

    async def invoice() -> None:
        async with sessions() as s:
            assert (await build_invoice(s, "ten_big", SEP.date())).total_units > 0

    await big()
    out["usage_by_day_month_big_tenant"] = await timed_runs(big, 30)
    out["usage_by_day_month_small_tenant"] = await timed_runs(small, 30)
    out["invoice_build_big_tenant"] = await timed_runs(invoice, 10)

    daily_sql = (
        "SELECT to_char(timezone('UTC', day), 'YYYY-MM-DD') d, variant, mode, sum(requests), "
        "sum(cost_total) FROM usage_daily WHERE tenant_id = :t AND day >= :a AND day < :b "
        "GROUP BY 1, 2, 3"
    )
    hourly_sql = (
        "SELECT to_char(timezone('UTC', hour), 'YYYY-MM-DD') d, variant, mode, sum(requests), "
        "sum(cost_total) FROM usage_hourly WHERE tenant_id = :t AND hour >= :a AND hour < :b "
        "AND api_key_id = :k GROUP BY 1, 2, 3"
    )
    raw_sql = (
        "SELECT to_char(timezone('UTC', started_at), 'YYYY-MM-DD') d, variant, mode, count(*), "
        "sum(cost_total) FROM usage_records WHERE tenant_id = :t AND started_at >= :a AND started_at < :b "
        "GROUP BY 1, 2, 3"
    )
    async with engine.connect() as conn:
        params = {"t": "ten_big", "a": SEP, "b": OCT}
        out["explain_ms"] = {
            "big_month_usage_daily": await explain_ms(conn, daily_sql, params),
            "big_month_one_key_usage_hourly": await explain_ms(conn, hourly_sql, dict(params, k="key_big_3")),
            "big_month_raw_usage_records": await explain_ms(conn, raw_sql, params),
            "small_month_usage_daily": await explain_ms(conn, daily_sql, dict(params, t="ten_7")),
            "small_month_raw_usage_records": await explain_ms(conn, raw_sql, dict(params, t="ten_7")),
        }
        out["usage_daily_rows"] = (await conn.execute(text("SELECT count(*) FROM usage_daily"))).scalar()
        out["usage_hourly_rows"] = (await conn.execute(text("SELECT count(*) FROM usage_hourly"))).scalar()
        out["usage_records_rows"] = (await conn.execute(text("SELECT count(*) FROM usage_records"))).scalar()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--skip-seed", action="store_true", help="measure an already seeded database")
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(main(args.rows, args.skip_seed))
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
