"""Latency of the prompt router (policy.router) on the CPU; prints one JSON object.

    .venv/bin/python bench/policy_router.py [--n 300]

Prompts: a GSM8K-sized word problem (~60 tokens), an MMLU question (~65 tokens) and a
~2,000-token prompt (8,000 characters of distinct MMLU questions when the routing data is
present, else repeated text; tokens estimated as characters / 4).

``decide_auto``: policy.decide for a ``model: auto`` request with a cascade, without and
with a tenant's router calibration (tiers by tenant percentile, direct-or-cascade), the two
interleaved in one loop: medians and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from policy import DecisionRequest, compile_policy, decide, load
from policy.router.calibration import Calibration, Observation, fit_calibration
from policy.router.scorer import DEFAULT_PATH, Router

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/routing/mmlu.csv"

SHORT = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day?"
)
MCQ = (
    "Statement 1 | Every homomorphic image of a group G is isomorphic to a factor group of G. "
    "Statement 2 | The homomorphic images of a group G are the same (up to isomorphism) as the "
    "factor groups of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:"
)


def _time(router: Router, prompt: str, n: int) -> dict[str, float]:
    for _ in range(20):
        router.score(prompt)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        router.score(prompt)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return {
        "p50_us": round(samples[len(samples) // 2] / 1000, 1),
        "p90_us": round(samples[int(len(samples) * 0.9)] / 1000, 1),
        "est_tokens": len(prompt) // 4,
    }


@dataclass(frozen=True)
class _Quote:
    version_id: str
    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal


_POLICY = """
router:
  tiers:
    - {below: 0.5, variant: flash, mode: non-think}
    - {below: 0.8, variant: flash, mode: think-high}
    - {variant: pro, mode: think-high}
cascade: {enabled: true, threshold: 0.6, models: [auto]}
"""


def _decide_auto(n: int) -> dict[str, Any]:
    policy = compile_policy(load(_POLICY), "1")
    prices = {
        "flash": _Quote("peak", Decimal("0.014"), Decimal("0.44"), Decimal("1.32")),
        "pro": _Quote("peak", Decimal("0.044"), Decimal("1.32"), Decimal("3.96")),
    }
    rng = random.Random(0)
    history = [Observation(s, rng.random() < s) for s in (rng.random() for _ in range(2000))]
    cal = Calibration.from_document(fit_calibration(history), version=1)
    request = DecisionRequest(model="auto", prompt_tokens=1000, max_tokens=256)
    scores = [k / n for k in range(n)]
    plain: list[int] = []
    calibrated: list[int] = []
    for score in scores * 2:
        t0 = time.perf_counter_ns()
        decide(policy, request, prices, router_score=score)
        t1 = time.perf_counter_ns()
        decide(policy, request, prices, router_score=score, calibration=cal)
        t2 = time.perf_counter_ns()
        plain.append(t1 - t0)
        calibrated.append(t2 - t1)
    plain.sort()
    calibrated.sort()
    p50, c50 = plain[len(plain) // 2] / 1000, calibrated[len(calibrated) // 2] / 1000
    return {"p50_us": round(p50, 1), "calibrated_p50_us": round(c50, 1), "ratio": round(c50 / p50, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    t0 = time.perf_counter()
    router = Router.load()
    load_ms = (time.perf_counter() - t0) * 1000
    long = ""
    if DATA.exists():  # distinct real questions: many distinct n-grams (the slow case)
        with open(DATA, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                long += row["prompt"] + "\n\n"
                if len(long) >= 8000:
                    break
    while len(long) < 8000:
        long += MCQ + "\n\n" + SHORT + "\n\n"
    print(
        json.dumps(
            {
                "bench": "policy.router.score",
                "file_bytes": Path(DEFAULT_PATH).stat().st_size,
                "terms": len(router.idf),
                "load_ms": round(load_ms, 1),
                "gsm8k_like": _time(router, SHORT, args.n),
                "mmlu_like": _time(router, MCQ, args.n),
                "prompt_2000_tokens": _time(router, long[:8000], args.n),
                "prompt_2000_tokens_source": "mmlu.csv" if DATA.exists() else "repeated",
                "budget_p50_us": 2000,
                "decide_auto": _decide_auto(args.n),
            }
        )
    )


if __name__ == "__main__":
    main()
