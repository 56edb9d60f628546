"""The router's transfer protocol on the routing data; prints one JSON object (last line).

    .venv/bin/python bench/router_transfer.py [--fold NAME ...] [--no-heldout] [--nested]

Retrains the router's recipe (policy.router.train.RECIPE) and the baselines on every fold
of policy.router.transfer (gsm8k->mmlu, mmlu->gsm8k, leave one MMLU area out, held-out)
and reports APGR, the strong-call and cost shares at 95% of the strong model's quality
and the spread across folds. Needs scikit-learn (the `train` extra) and
../shared/data/routing/{gsm8k,mmlu}.csv. Takes a few minutes on 2 cores.

``--nested``: the router column is the recipe chosen per fold by inner cross-validation on
that fold's training rows (policy.router.selection); the report adds each fold's choice and
inner figures under "selection". About 15 fits per fold: tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from policy.router.data import read_csv
from policy.router.selection import Choice, groups_by_source, nested_fit
from policy.router.transfer import folds, transfer_report

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/routing"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--fold", action="append", default=[])
    parser.add_argument("--no-heldout", action="store_true")
    parser.add_argument("--nested", action="store_true", help="choose the recipe by inner CV per fold")
    args = parser.parse_args()
    t0 = time.perf_counter()
    heldout, only = not args.no_heldout, tuple(args.fold)
    if not args.nested:
        report = transfer_report(args.data, heldout=heldout, only=only)
    else:
        gsm8k, mmlu = read_csv(Path(args.data) / "gsm8k.csv"), read_csv(Path(args.data) / "mmlu.csv")
        log: dict[int, Choice] = {}
        report = transfer_report(
            args.data, router_fit=nested_fit(groups_by_source(gsm8k, mmlu), log), heldout=heldout, only=only
        )
        report["selection"] = {
            f.name: log[hash(tuple(f.train.prompts))].as_dict()
            for f in folds(gsm8k, mmlu, heldout=heldout)
            if (not only or f.name in only) and hash(tuple(f.train.prompts)) in log
        }
    report["bench"] = "policy.router.transfer"
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
