"""The seed catalog: the published DeepSeek-V4 price history and comparator list prices
(shared DESIGN.md). Applied to an empty catalog on first use (see store.py)."""

from __future__ import annotations

from typing import Any

from billing.catalog.io import parse_catalog
from billing.catalog.model import PriceCatalog

SEED_DOCUMENT: dict[str, Any] = {
    "format": "gateway-price-catalog/1",
    "versions": [
        {
            "id": "v4-launch",
            "effective_from": "2026-04-24T00:00:00Z",
            "prices": {
                "flash": {"cache_hit": "0.028", "cache_miss": "0.14", "output": "0.28"},
                "pro": {"cache_hit": "0.145", "cache_miss": "1.74", "output": "3.48"},
            },
            "note": "DeepSeek-V4 launch prices",
        },
        {
            "id": "v4-hit-cut",
            "effective_from": "2026-04-26T12:15:00Z",
            "prices": {
                "flash": {"cache_hit": "0.0028", "cache_miss": "0.14", "output": "0.28"},
                "pro": {"cache_hit": "0.0145", "cache_miss": "1.74", "output": "3.48"},
            },
            "note": "cache-hit input price cut to one tenth",
        },
        {
            "id": "v4-peak",
            "effective_from": "2026-08-16T16:00:00Z",
            "prices": {
                "flash": {"cache_hit": "0.014", "cache_miss": "0.44", "output": "1.32"},
                "pro": {"cache_hit": "0.044", "cache_miss": "1.32", "output": "3.96"},
            },
            "time_of_day": {
                "off_peak_multiplier": "0.5",
                "peak": [
                    {"start": "01:00", "end": "04:00", "weekdays": [1, 2, 3, 4, 5]},
                    {"start": "06:00", "end": "10:00", "weekdays": [1, 2, 3, 4, 5]},
                ],
            },
            "note": "peak prices listed; off-peak (outside the windows and on weekends) is half",
        },
    ],
    "promotions": [],
    "comparators": [
        {
            "id": "claude-opus-4.7",
            "name": "Claude Opus 4.7",
            "input": "5",
            "output": "25",
            "note": "list price; savings reports only",
        },
        {
            "id": "gpt-5.5",
            "name": "GPT-5.5",
            "input": "35",
            "output": "35",
            "note": "about $35 per 1M tokens blended (published enterprise comparisons)",
        },
    ],
}


def seed_catalog() -> PriceCatalog:
    return parse_catalog(SEED_DOCUMENT)
