"""Fixtures of the policy tests: published prices and a typical tenant policy."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from policy import CompiledPolicy, compile_policy, load


@dataclass(frozen=True)
class Quote:
    version_id: str
    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal


# Peak prices from 2026-08-16 (USD per 1M tokens).
PRICES = {
    "flash": Quote("2026-08-16-peak", Decimal("0.014"), Decimal("0.44"), Decimal("1.32")),
    "pro": Quote("2026-08-16-peak", Decimal("0.044"), Decimal("1.32"), Decimal("3.96")),
}

TYPICAL_YAML = """\
variants: {allowed: [flash, pro], default: flash}
modes: {allowed: [non-think, think-high, think-max], default: non-think}
max_mode: think-high
on_over_ask: downgrade
cost:
  max_request_usd: "0.50"
router:
  tiers:
    - {below: 0.5, variant: flash, mode: non-think}
    - {below: 0.8, variant: flash, mode: think-high}
    - {variant: pro, mode: think-high}
cascade:
  enabled: true
  threshold: 0.6
  models: [auto]
placement: {regions: [eu-west, eu-central], hardware: [gpu, npu]}
use_cases:
  faq: {max_mode: non-think, on_over_ask: reject, max_variant: flash, cascade: false}
  dispute: {max_mode: think-max, default_mode: think-max}
  chat: {max_mode: think-high, on_over_ask: downgrade, max_request_usd: "0.01"}
"""


@pytest.fixture
def prices() -> dict[str, Quote]:
    return dict(PRICES)


@pytest.fixture
def typical() -> CompiledPolicy:
    return compile_policy(load(TYPICAL_YAML), "7")
