"""Top-k block-sparse attention (CSA shape) on the real SmolLM2 weights: teacher-forced
next-token agreement with dense attention, keys attended per query and prefill seconds at
growing context. Prints JSON, the last line one object.

    .venv/bin/python bench/sparse_attention.py [--contexts 1024 4096 8192] [--rows 128]
        [--block 64] [--top-k 8] [--window 128] [--threads 1]

Text: MMLU prompts (../shared/data/routing/mmlu.csv, every 7th, in file order) joined into
one document; nothing is fit on it (the indexer has no parameters), so it is held out by
construction. For each context n the model prefills the first n tokens once with dense
attention and once with `inference.v4.csa_eval.sparse_prefill`; the last `rows` positions'
next-token distributions are compared (top-1 agreement, mean KL in nats). `control` repeats
the smallest context with k covering every block (must agree fully: the numerics baseline).
fp32, so the only difference is the attention pattern.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.embedded import EmbeddedModel  # noqa: E402
from inference.v4.csa_eval import sparse_attention_report  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "routing" / "mmlu.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--sink-blocks", type=int, default=1, help="first blocks always attended")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    em = EmbeddedModel.load(dtype="float32", threads=args.threads)
    with args.data.open(newline="") as f:
        prompts = [r["prompt"] for r in csv.DictReader(f)]
    ids = em.encode("\n\n".join(prompts[::7][:600]))

    def progress(line: str) -> None:  # partial results survive an interrupted run
        print(line, file=sys.stderr, flush=True)

    rep = sparse_attention_report(
        em.model,
        ids,
        tuple(args.contexts),
        args.block,
        args.top_k,
        args.window,
        args.rows,
        progress,
        args.sink_blocks,
    )
    smallest = min(args.contexts)
    control = sparse_attention_report(em.model, ids, (smallest,), args.block, 10**6, args.window, args.rows)
    rep["control_all_blocks"] = control[str(smallest)]
    rep["text_tokens"] = len(ids)
    rep["threads"] = args.threads
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
