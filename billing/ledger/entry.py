"""One usage record as a value: what the gateway hands to the ledger writer."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from billing.catalog.model import PriceQuote
from billing.cost import Cost, cost_of


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """A request attempt's usage and exact cost (units of 1e-12 USD).

    Identity is (request_id, attempt): writing the same entry twice stores one row.
    `completion_tokens` includes `reasoning_tokens` (DeepSeek usage semantics); output
    is billed on completion_tokens. Streaming and non-streaming requests with the same
    usage produce identical entries apart from `stream`.
    """

    request_id: str
    attempt: int
    tenant_id: str
    api_key_id: str | None
    model: str
    variant: str
    mode: str
    artifact_id: str
    status: str  # completed | cancelled | failed
    started_at: dt.datetime
    finished_at: dt.datetime
    prompt_cache_hit_tokens: int = 0
    prompt_cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    stream: bool = False
    price_version: str | None = None
    cost_cache_hit: int | None = None
    cost_cache_miss: int | None = None
    cost_output: int | None = None
    cost_total: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.prompt_cache_hit_tokens + self.prompt_cache_miss_tokens

    @property
    def cost(self) -> Cost | None:
        if self.cost_total is None:
            return None
        return Cost(
            self.cost_cache_hit or 0,
            self.cost_cache_miss or 0,
            self.cost_output or 0,
            self.price_version or "",
        )

    def priced(self, quote: PriceQuote) -> UsageEntry:
        """This entry with its cost at `quote` (the prices in force at `started_at`)."""
        c = cost_of(
            quote, self.prompt_cache_hit_tokens, self.prompt_cache_miss_tokens, self.completion_tokens
        )
        return self.with_cost(c)

    def with_cost(self, c: Cost) -> UsageEntry:
        return dataclasses.replace(
            self,
            price_version=c.price_version,
            cost_cache_hit=c.cache_hit,
            cost_cache_miss=c.cache_miss,
            cost_output=c.output,
            cost_total=c.total,
        )

    def _fields(self) -> dict[str, Any]:
        # Every field is immutable (str, int, datetime, None): a shallow dict equals
        # dataclasses.asdict, which deep-copies each value (a cost on every request).
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def to_row(self, ingested_at: dt.datetime) -> dict[str, Any]:
        row = self._fields()
        row["prompt_tokens"] = self.prompt_tokens
        row["ingested_at"] = ingested_at
        return row

    def to_json(self) -> dict[str, Any]:
        doc = self._fields()
        doc["started_at"] = self.started_at.isoformat()
        doc["finished_at"] = self.finished_at.isoformat()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> UsageEntry:
        doc = dict(doc)
        doc["started_at"] = dt.datetime.fromisoformat(doc["started_at"])
        doc["finished_at"] = dt.datetime.fromisoformat(doc["finished_at"])
        return cls(**doc)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(UsageEntry))
