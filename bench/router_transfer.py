"""The router's transfer protocol on the routing data; prints one JSON object (last line).

    .venv/bin/python bench/router_transfer.py [--fold NAME ...] [--no-heldout]

Retrains the router's recipe (policy.router.train.RECIPE) and the baselines on every fold
of policy.router.transfer (gsm8k->mmlu, mmlu->gsm8k, leave one MMLU area out, held-out)
and reports APGR, the strong-call and cost shares at 95% of the strong model's quality
and the spread across folds. Needs scikit-learn (the `train` extra) and
../shared/data/routing/{gsm8k,mmlu}.csv. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from policy.router.transfer import transfer_report

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/routing"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--fold", action="append", default=[])
    parser.add_argument("--no-heldout", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    report = transfer_report(args.data, heldout=not args.no_heldout, only=tuple(args.fold))
    report["bench"] = "policy.router.transfer"
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
