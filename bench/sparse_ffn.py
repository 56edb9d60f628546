"""The routed modes' sparse FFN kernel against the dense FFN, per layer, on the real model.

    .venv/bin/python bench/sparse_ffn.py [--fractions 0.35 0.6 0.92 1.0] [--calls 100] [--repeats 5]

Each layer's FFN input is the real one (the last token of a prompt, teacher-forced), and the
calls cycle through all layers as a decode step does (so the weights come from memory, not
from a cache warmed by repeating one layer). Per fraction, microseconds per layer-call
(medians over repeats, each repeat `calls` passes over the layers, configurations
interleaved): `dense` is the engine's dense FFN (int4 gate-up, fused silu, int4 down),
`kernel_<f>` one `kernels/cpu/sparse_ffn.cpp` call per layer keeping f of the neurons,
`twin_<f>` the PyTorch twin at `--rows` rows (the prefill / large-batch path) beside
`dense_<rows>`. Bytes a kernel call reads per layer are reported with the ratios. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import EmbeddedModel  # noqa: E402
from inference.moe import experts_for  # noqa: E402
from inference.moe.forward import DenseCapture, chunk_logits  # noqa: E402
from inference.moe.neurons import candidates_for  # noqa: E402

PROMPT = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


def kernel_bytes(ex, k: int) -> int:
    """What one kernel call reads of a layer's weights keeping k neurons."""
    lay = ex.layers[0]
    n = ex.n_experts
    row = lay.gate.shape[1]
    down_row = lay.down_q.shape[1]
    return n * row + candidates_for(k, n) * row + k * down_row + lay.down_dm.numel() * 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.35, 0.6, 0.92, 1.0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = EmbeddedModel.load(threads=args.threads)
    ex = model.enable_experts()
    lm = model.model
    cap = DenseCapture(lm)
    chunk_logits(lm, model.encode_chat([{"role": "user", "content": PROMPT}]), cap)
    inputs = [torch.cat(x) for x in cap.inputs]
    one = [x[-1:].contiguous() for x in inputs]
    many = [x[-args.rows :].contiguous() for x in inputs]
    layers = range(len(one))
    n = ex.n_experts
    runs = {"dense": lambda: [ex.dense(li, one[li]) for li in layers]}
    for f in args.fractions:
        k = experts_for(f, n)
        c = candidates_for(k, n)
        runs[f"kernel_{f}"] = lambda k=k, c=c: [ex.sparse(li, one[li], [k], [c]) for li in layers]
    rows = many[0].shape[0]
    runs[f"dense_{rows}"] = lambda: [ex.dense(li, many[li]) for li in layers]
    for f in args.fractions:
        k = experts_for(f, n)
        if k < n:
            kt = torch.full((rows,), k, dtype=torch.long)
            ct = torch.full((rows,), candidates_for(k, n), dtype=torch.long)
            runs[f"twin_{f}"] = lambda kt=kt, ct=ct: [ex.twin(li, many[li], kt, ct) for li in layers]
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            times[name].append((time.perf_counter() - t0) / (args.calls * len(one)) * 1e6)
    us = {name: round(statistics.median(v), 1) for name, v in times.items()}
    res: dict = {"us_per_layer": us, "kernel": ex.kernel, "rows": rows, "threads": args.threads}
    res["vs_dense"] = {k: round(v / us["dense"], 3) for k, v in us.items() if k.startswith("kernel_")}
    res["vs_dense_rows"] = {
        k: round(v / us[f"dense_{rows}"], 3) for k, v in us.items() if k.startswith("twin_")
    }
    dense_bytes = sum(lm.layers[0][i].packed.numel() + lm.layers[0][i].sz.numel() * 2 for i in (4, 5))
    res["bytes_per_layer"] = {"dense_int4": dense_bytes}
    for f in args.fractions:
        res["bytes_per_layer"][f"kernel_{f}"] = kernel_bytes(ex, experts_for(f, n))
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
