"""How far the few-rows (decode) linear kernel's numerics move the model from the many-rows
(prefill) GEMM's, on the real weights: teacher-forced next-token top-1 agreement and mean KL.

    .venv/bin/python bench/decode_numerics.py [--chunks 4] [--chunk 256]

A decode step's linear layers (1-4 rows) take torch's int4 kernel (bf16 scales), prefill the
bf16 GEMM over the dequantized weights. Here every linear layer of a held-out chunk's
forward runs the few-rows kernel over slices of 4 rows (it is row by row, so each row gets
what a decode step would compute for it; attention and the rest are the prefill's), against
the same forward with the prefill GEMM. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from efficiency import DATA, heldout_chunks  # noqa: E402

from inference import EmbeddedModel  # noqa: E402
from inference.hca.quality import chunk_logits  # noqa: E402
from inference.quant import QLinear  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = EmbeddedModel.load(threads=args.threads)
    lm = model.model
    prefill_call = QLinear.__call__

    def decode_call(self: QLinear, x: torch.Tensor) -> torch.Tensor:
        n = self.max_m
        if n <= 0 or x.shape[0] <= n:
            return prefill_call(self, x)
        return torch.cat([prefill_call(self, x[i : i + n].contiguous()) for i in range(0, x.shape[0], n)])

    agree, kl = [], []
    with torch.inference_mode():
        for ids in heldout_chunks(model, DATA, args.chunks, args.chunk):
            lp = F.log_softmax(chunk_logits(lm, ids), -1)
            QLinear.__call__ = decode_call  # type: ignore[method-assign]
            try:
                lq = F.log_softmax(chunk_logits(lm, ids), -1)
            finally:
                QLinear.__call__ = prefill_call  # type: ignore[method-assign]
            agree.append((lq.argmax(-1) == lp.argmax(-1)).float())
            kl.append((lp.exp() * (lp - lq)).sum(-1))
    print(
        json.dumps(
            {
                "few_rows_kernel": "torch int4" if lm.layers[0][1].packed is not None else "none (dense)",
                "top1_vs_prefill": round(torch.cat(agree).mean().item(), 4),
                "kl_vs_prefill": round(torch.cat(kl).mean().item(), 5),
                "heldout_tokens": args.chunks * args.chunk,
            }
        )
    )


if __name__ == "__main__":
    main()
