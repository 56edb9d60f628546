"""A completed usage record with fixed token counts, for tests of usage and budget figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

from billing.db import transaction
from billing.models import UsageRecord


async def add_usage_row(
    sessions: Any,
    tenant_id: str,
    *,
    when: dt.datetime,
    cost_total: int,
    request_id: str,
    key_id: str | None = None,
) -> None:
    """One attempt of 1,000 prompt tokens (400 cache hits) and 200 output tokens costing
    `cost_total` (1e-12 USD), split a quarter / a quarter / the rest."""
    async with transaction(sessions) as s:
        s.add(
            UsageRecord(
                request_id=request_id,
                attempt=1,
                tenant_id=tenant_id,
                api_key_id=key_id,
                model="deepseek-v4-flash",
                variant="flash",
                mode="non-think",
                artifact_id="smollm2",
                status="completed",
                stream=False,
                prompt_tokens=1000,
                prompt_cache_hit_tokens=400,
                prompt_cache_miss_tokens=600,
                completion_tokens=200,
                reasoning_tokens=0,
                price_version="v",
                cost_cache_hit=cost_total // 4,
                cost_cache_miss=cost_total // 4,
                cost_output=cost_total - 2 * (cost_total // 4),
                cost_total=cost_total,
                started_at=when,
                finished_at=when,
            )
        )
