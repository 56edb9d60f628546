"""Helpers for billing tests: tenants/keys rows and usage entries."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog import seed_catalog
from billing.db import transaction
from billing.ledger import UsageEntry
from gateway.auth.models import ApiKey, Tenant

_seq = itertools.count()


async def create_tenant(sessions: async_sessionmaker[AsyncSession], name: str) -> tuple[str, str]:
    """A tenant and one API key; returns (tenant_id, key_id)."""
    async with transaction(sessions) as s:
        tenant = Tenant(name=name)
        s.add(tenant)
        await s.flush()
        key = ApiKey(tenant_id=tenant.id, display_prefix="sk-test", key_hash=f"h-{name}-{next(_seq)}")
        s.add(key)
        await s.flush()
        return tenant.id, key.id


def entry(
    tenant_id: str,
    key_id: str | None,
    request_id: str,
    started_at: dt.datetime,
    *,
    attempt: int = 1,
    variant: str = "flash",
    mode: str = "non-think",
    hit: int = 100,
    miss: int = 200,
    out: int = 300,
    reasoning: int = 0,
    stream: bool = False,
) -> UsageEntry:
    e = UsageEntry(
        request_id=request_id,
        attempt=attempt,
        tenant_id=tenant_id,
        api_key_id=key_id,
        model=f"deepseek-v4-{variant}",
        variant=variant,
        mode=mode,
        artifact_id="test-artifact",
        status="completed",
        started_at=started_at,
        finished_at=started_at + dt.timedelta(seconds=2),
        prompt_cache_hit_tokens=hit,
        prompt_cache_miss_tokens=miss,
        completion_tokens=out,
        reasoning_tokens=reasoning,
        finish_reason="stop",
        stream=stream,
    )
    return e.priced(seed_catalog().prices_at(variant, started_at))


@pytest.fixture
def catalog():
    return seed_catalog()


async def purge_redis_prefix(url: str, prefix: str) -> None:
    """Delete the keys a test created under its own prefix."""
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await r.delete(*keys)
    await r.aclose()
