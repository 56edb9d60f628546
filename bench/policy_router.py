"""Latency of the prompt router (policy.router) on the CPU; prints one JSON object.

    .venv/bin/python bench/policy_router.py [--n 300]

Prompts: a GSM8K-sized word problem (~60 tokens), an MMLU question (~65 tokens) and a
~2,000-token prompt (8,000 characters of distinct MMLU questions when the routing data is
present, else repeated text; tokens estimated as characters / 4).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

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
            }
        )
    )


if __name__ == "__main__":
    main()
