"""``evaluate(csv_path)``: router quality and savings on a labelled CSV, as one dict.

Keys: ``apgr``, ``cpt50``, ``cpt80`` (strong-call share needed for 50% / 80% of the
performance gap), ``strong_share_at_95`` (share needed to reach 95% of the strong
model's accuracy) and ``cost_saving_at_95`` (saving at that share versus sending every
prompt to Pro). Costs use the published peak prices from 2026-08-16 (Flash 0.44 / 1.32,
Pro 1.32 / 3.96 USD per 1M cache-miss input / output tokens; off-peak halves both, so the
saving is the same), every prompt token a cache miss (prompt tokens estimated as
characters / 4) and ``output_tokens`` output tokens per answer. Prompts the router was
trained on are left out by default (see ``evaluate``).
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from policy.router.data import read_csv
from policy.router.metrics import apgr, cpt, curve, share_at_quality
from policy.router.scorer import Router, default_router

PUBLISHED_PRICES = {  # USD per 1M tokens: (cache miss, output)
    "flash": (Decimal("0.44"), Decimal("1.32")),
    "pro": (Decimal("1.32"), Decimal("3.96")),
}
PRICE_SOURCE = "published peak prices from 2026-08-16"


def _cost(prices: tuple[Decimal, Decimal], prompt_tokens: int, output_tokens: int) -> Decimal:
    return (prompt_tokens * prices[0] + output_tokens * prices[1]) / Decimal(1_000_000)


def cost_share(
    scores: np.ndarray,
    prompts: list[str],
    strong_share: float,
    prices: dict[str, tuple[Decimal, Decimal]] | None = None,
    output_tokens: int = 256,
) -> float:
    """Routed cost / always-Pro cost when the top ``strong_share`` of prompts go to Pro."""
    prices = prices or PUBLISHED_PRICES
    order = np.argsort(-np.asarray(scores), kind="stable")
    tokens = [max(1, math.ceil(len(p) / 4)) for p in prompts]
    pro = [_cost(prices["pro"], t, output_tokens) for t in tokens]
    flash = [_cost(prices["flash"], t, output_tokens) for t in tokens]
    to_pro = set(order[: round(strong_share * len(order))].tolist())
    routed = sum((pro[i] if i in to_pro else flash[i]) for i in range(len(tokens)))
    return float(routed / sum(pro))


def evaluate(
    csv_path: str | Path,
    *,
    router: Router | None = None,
    include_trained: bool = False,
    output_tokens: int = 256,
    prices: dict[str, tuple[Decimal, Decimal]] | None = None,
) -> dict[str, Any]:
    """Score the prompts of ``csv_path`` and report the metrics.

    Prompts the shipped router was trained on are left out (counted in
    ``left_out_trained``) unless ``include_trained``: on the routing data files this leaves
    exactly the held-out split, so the figures are never in-sample by accident.
    """
    data = read_csv(csv_path)
    router = router or default_router()
    total = len(data.prompts)
    if not include_trained:
        data = data.subset([not router.was_trained_on(p) for p in data.prompts])
    if not data.prompts:
        raise ValueError(f"{csv_path}: no rows to evaluate (all {total} were training prompts)")
    prices = prices or PUBLISHED_PRICES
    scores = np.array([router.raw(p) for p in data.prompts])
    c = curve(scores, data.weak, data.strong)
    share95 = share_at_quality(c, 0.95)

    saving = 1 - cost_share(scores, data.prompts, share95, prices, output_tokens)
    return {
        "apgr": round(apgr(c), 4),
        "cpt50": round(cpt(c, 0.5), 4),
        "cpt80": round(cpt(c, 0.8), 4),
        "strong_share_at_95": round(share95, 4),
        "cost_saving_at_95": round(saving, 4),
        "n": len(data.prompts),
        "left_out_trained": total - len(data.prompts),
        "weak_accuracy": round(c.weak, 4),
        "strong_accuracy": round(c.strong, 4),
        "prices": PRICE_SOURCE,
        "output_tokens": output_tokens,
    }
