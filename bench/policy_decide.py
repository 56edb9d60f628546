"""Latency of policy.decide() for a typical policy; prints one JSON object.

    .venv/bin/python bench/policy_decide.py [--n 20000]

Times each call separately (perf_counter_ns) over a mix of requests: explicit models,
'auto' with a router score, use-case caps, a cost-ceiling downgrade and a cascade plan.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal

from policy import DecisionRequest, StaticCompliance, compile_policy, decide, load

POLICY = """\
variants: {allowed: [flash, pro], default: flash}
modes: {allowed: [non-think, think-high, think-max], default: non-think}
max_mode: think-high
cost: {max_request_usd: "0.05"}
cascade: {enabled: true, threshold: 0.6}
placement: {regions: [eu-west, eu-central], hardware: [gpu, npu]}
use_cases:
  faq: {max_mode: non-think, on_over_ask: downgrade, max_variant: flash}
  dispute: {max_mode: think-max, default_mode: think-max, max_request_usd: "0.50"}
  medical: {max_mode: think-high}
"""


@dataclass(frozen=True)
class Quote:
    version_id: str
    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal


PRICES = {
    "flash": Quote("v4-peak", Decimal("0.014"), Decimal("0.44"), Decimal("1.32")),
    "pro": Quote("v4-peak", Decimal("0.044"), Decimal("1.32"), Decimal("3.96")),
}
REQUESTS = [
    (DecisionRequest("deepseek-v4-flash", 800, max_tokens=1024), None),
    (DecisionRequest("deepseek-v4-pro", 1500, "enabled", "max", "dispute"), None),
    (DecisionRequest("deepseek-v4-pro", 1200, "enabled", "high", "faq", 512), None),
    (DecisionRequest("auto", 600, use_case="medical", max_tokens=2048), 0.42),
    (DecisionRequest("auto", 2000, max_tokens=4096), 0.91),
    (DecisionRequest("deepseek-v4-pro", 3000, "enabled", "max"), None),  # ceiling downgrade
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    policy = compile_policy(load(POLICY), "bench")
    compliance = StaticCompliance(regions=frozenset({"eu-west"}))
    for req, score in REQUESTS * 200:  # warm-up
        decide(policy, req, PRICES, score, compliance)
    samples: list[int] = []
    clock = time.perf_counter_ns
    for i in range(args.n):
        req, score = REQUESTS[i % len(REQUESTS)]
        t0 = clock()
        decide(policy, req, PRICES, score, compliance)
        samples.append(clock() - t0)
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print(
        json.dumps(
            {
                "bench": "policy.decide",
                "calls": args.n,
                "p50_us": round(samples[len(samples) // 2] / 1000, 2),
                "p90_us": round(q[89] / 1000, 2),
                "p99_us": round(q[98] / 1000, 2),
                "mean_us": round(statistics.fmean(samples) / 1000, 2),
                "python": platform.python_version(),
                "budget_p50_us": 50,
            }
        )
    )


if __name__ == "__main__":
    main()
