"""The property behind mHC: the composite mixing gain of the residual streams through L
randomly initialised hyper-connected layers (fixed seed), with the doubly-stochastic
projection (mHC) and without it (HC). Prints JSON, the last line one object.

    .venv/bin/python bench/mhc_gain.py [--layers 64] [--seeds 0 1 2]

The gain of the composite `H_res^(L) ... H_res^(1)` is the larger of its largest absolute row
sum (forward signal) and column sum (backward gradient), max over tokens; see
inference/v4/mhc.py. `mhc_gain_<L>` / `hc_gain_<L>` are seed 0's; `by_depth` the gain after
1, 2, 4, ... L layers; `seeds` the spread over the other seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.v4.mhc import mixing_gain_curve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    depths = [d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256) if d <= args.layers]
    if args.layers not in depths:
        depths.append(args.layers)
    per_seed = {}
    for seed in args.seeds:
        mhc = mixing_gain_curve(args.layers, constrained=True, seed=seed)
        hc = mixing_gain_curve(args.layers, constrained=False, seed=seed)
        per_seed[seed] = {"mhc": {d: mhc[d - 1] for d in depths}, "hc": {d: hc[d - 1] for d in depths}}
    first = per_seed[args.seeds[0]]
    out = {
        f"mhc_gain_{args.layers}": first["mhc"][args.layers],
        f"hc_gain_{args.layers}": first["hc"][args.layers],
        "by_depth": first,
        "seeds": {s: {"mhc": v["mhc"][args.layers], "hc": v["hc"][args.layers]} for s, v in per_seed.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
