"""What int8 (VNNI) linear layers would cost in quality, against the fp32 reference (JSON):

    .venv/bin/python bench/quant_quality.py [--prompts 40] [--threads 2]

Runs prompts from ../shared/data/routing (MMLU and GSM8K questions, up to 400 tokens each)
through the fp32 reference and through candidate numerics of the decoder's linear layers,
and reports per variant: perplexity of the prompt text, mean and max KL(fp32 || variant) of
the next-token distributions, and how often the variant's top token is the reference's.
Variants: `bf16` (the engine's numerics), `w8` (int8 per-channel weights, bf16 inputs),
`w8a8` (int8 weights and per-token int8 inputs, what int8 VNNI GEMMs compute),
`w8a8_smooth` (w8a8 after SmoothQuant-style scaling of the input channels, alpha 0.7,
calibrated on other prompts), `q4_a8_g32` (the file's exact Q4_1 weights with inputs in
int8 per token and group of 32 channels, as a Q4_1 x Q8 integer kernel would compute) and,
where the AVX2 kernels run, `bf16_weights_fp32_compute` (what `dtype=auto` runs on CPUs
without bf16 arithmetic: bf16 weights and KV cache, fp32 activations; `--only` picks
variants, e.g. `--only bf16,bf16_weights_fp32_compute`). The
int8 products are emulated in fp32 (exact for int8 values and sums below 2^24): this
measures numerics, not speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.gguf_loader import load_gguf  # noqa: E402
from inference.model import AttnMetadata, KVCache, LlamaModel, PrefillSegment, _as_tensor, _cat  # noqa: E402
from inference.quant import QLinear  # noqa: E402
from inference.tokenizer import ChatTokenizer  # noqa: E402
from kernels import cpu_ops  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing"
LINEARS = (1, 2, 4, 5)  # qkv, o, gate_up, down in a layer's tuple
MAX_TOKENS = 400


class EmulatedInt8Linear:
    def __init__(self, w: torch.Tensor, quant_inputs: bool, smooth: torch.Tensor | None) -> None:
        if smooth is not None:
            w = w * smooth  # the input's channel j is divided by smooth[j] at run time
        self.scale = w.abs().amax(1).clamp_min(1e-12) / 127
        self.wq = (torch.round(w / self.scale[:, None]).clamp(-127, 127)).t().contiguous()
        self.quant_inputs, self.smooth = quant_inputs, smooth

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if self.smooth is None else x.float() / self.smooth
        if self.quant_inputs:
            sx = xf.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127
            xf = torch.round(xf / sx).clamp(-127, 127) * sx
        return (xf @ self.wq * self.scale).to(x.dtype)


class GroupInt8InputLinear:
    """Exact (dequantized Q4_1) weights, inputs rounded to int8 per token and group of 32
    channels: what a Q4_1 x Q8 integer kernel (llama.cpp's scheme) computes."""

    def __init__(self, w: torch.Tensor) -> None:
        self.wt = w.t().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float().unflatten(-1, (-1, 32))
        sx = xf.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 127
        xq = (torch.round(xf / sx).clamp(-127, 127) * sx).flatten(-2)
        return (xq @ self.wt).to(x.dtype)


class InputRange:
    """Wraps a linear layer, recording each input channel's largest magnitude."""

    def __init__(self, inner: QLinear) -> None:
        self.inner, self.amax = inner, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = x.float().abs().amax(0)
        self.amax = a if self.amax is None else torch.maximum(self.amax, a)
        return self.inner(x)


def build(g, dtype: torch.dtype) -> LlamaModel:
    return LlamaModel(g.config, g.tensors, dtype, torch.device("cpu"), int4_max_rows=0, kernels=False)


def swap_linears(model: LlamaModel, make) -> None:
    for i, layer in enumerate(model.layers):
        parts = list(layer)
        for j in LINEARS:
            parts[j] = make(i, j, parts[j])
        model.layers[i] = tuple(parts)


def dense_weights(g) -> dict[tuple[int, int], torch.Tensor]:
    """Each layer's linear weights in fp32, as LlamaModel lays them out (q scaled, fused)."""
    cfg, t = g.config, g.tensors
    out = {}
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        qkv = _as_tensor(
            _cat([t[p + "attn_q.weight"], t[p + "attn_k.weight"], t[p + "attn_v.weight"]])
        ).float()
        qkv[: cfg.n_heads * cfg.head_dim] *= cfg.head_dim**-0.5
        out[i, 1] = qkv
        out[i, 2] = _as_tensor(t[p + "attn_output.weight"]).float()
        out[i, 4] = _as_tensor(_cat([t[p + "ffn_gate.weight"], t[p + "ffn_up.weight"]])).float()
        out[i, 5] = _as_tensor(t[p + "ffn_down.weight"]).float()
    return out


def logprobs(model: LlamaModel, ids: list[int]) -> torch.Tensor:
    n = len(ids)
    kv = KVCache(model.cfg, n, model.kv_dtype, model.device)
    slots = torch.arange(n)
    meta = AttnMetadata(
        slot_mapping=slots, prefills=[PrefillSegment(0, n, slots, fresh=True)], decode_start=n
    )
    with torch.inference_mode():
        out = model.forward(torch.tensor(ids), torch.arange(n), meta, kv, None)
    return torch.log_softmax(out.values.float(), -1)


def prompts(path: Path, start: int, step: int, count: int) -> list[str]:
    with path.open(newline="") as f:
        return [r["prompt"] for r in list(csv.DictReader(f))[start::step][:count]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated variants to run (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = load_gguf(None)
    tok = ChatTokenizer(g.metadata)
    texts = prompts(DATA / "mmlu.csv", 0, 97, args.prompts) + prompts(
        DATA / "gsm8k.csv", 0, 13, args.prompts // 2
    )
    calibration = prompts(DATA / "mmlu.csv", 50, 101, 30)

    def int8_model(quant_inputs: bool, alpha: float | None) -> LlamaModel:
        m = build(g, torch.bfloat16)
        ranges: dict = {}
        if alpha is not None:
            swap_linears(m, lambda i, j, lin: ranges.setdefault((i, j), InputRange(lin)))
            for t in calibration:
                logprobs(m, tok.encode_text(t)[:MAX_TOKENS])
            swap_linears(m, lambda i, j, rec: rec.inner)

        def make(i: int, j: int, lin: QLinear) -> EmulatedInt8Linear:
            w = dense[i, j]
            smooth = None
            if alpha is not None:
                ax, aw = ranges[i, j].amax.clamp_min(1e-5), w.abs().amax(0).clamp_min(1e-5)
                smooth = (ax**alpha / aw ** (1 - alpha)).clamp_min(1e-5)
            return EmulatedInt8Linear(w, quant_inputs, smooth)

        swap_linears(m, make)
        return m

    reference = build(g, torch.float32)
    dense = dense_weights(g)

    def q4_a8_g32() -> LlamaModel:
        m = build(g, torch.bfloat16)
        swap_linears(m, lambda i, j, lin: GroupInt8InputLinear(dense[i, j]))
        return m

    builders = {
        "bf16": lambda: build(g, torch.bfloat16),
        "w8": lambda: int8_model(False, None),
        "w8a8": lambda: int8_model(True, None),
        "w8a8_smooth": lambda: int8_model(True, 0.7),
        "q4_a8_g32": q4_a8_g32,
    }
    if cpu_ops.avx2_fma():  # what dtype auto runs on CPUs without bf16 arithmetic (C++ kernels)
        builders["bf16_weights_fp32_compute"] = lambda: LlamaModel(
            g.config,
            g.tensors,
            torch.float32,
            torch.device("cpu"),
            int4_max_rows=0,
            weight_dtype=torch.bfloat16,
        )
    wanted = args.only.split(",") if args.only else list(builders)
    variants = {name: make() for name, make in builders.items() if name in wanted}
    sums = {name: {"nll": 0.0, "kl": 0.0, "max_kl": 0.0, "agree": 0, "tokens": 0} for name in variants}
    ref_nll, positions = 0.0, 0
    for text in texts:
        ids = tok.encode_text(text)[:MAX_TOKENS]
        ref = logprobs(reference, ids)
        target = torch.tensor(ids[1:])[:, None]
        ref_nll -= ref[:-1].gather(1, target).sum().item()
        positions += len(ids)
        for name, model in variants.items():
            lp = logprobs(model, ids)
            s = sums[name]
            kl = (ref.exp() * (ref - lp)).sum(-1)
            s["nll"] -= lp[:-1].gather(1, target).sum().item()
            s["kl"] += kl.sum().item()
            s["max_kl"] = max(s["max_kl"], kl.max().item())
            s["agree"] += (lp.argmax(-1) == ref.argmax(-1)).sum().item()
    predicted = positions - len(texts)
    res: dict = {
        "prompts": len(texts),
        "positions": positions,
        "fp32_perplexity": round(math.exp(ref_nll / predicted), 3),
    }
    for name, s in sums.items():
        res[name] = {
            "perplexity": round(math.exp(s["nll"] / predicted), 3),
            "mean_kl": round(s["kl"] / positions, 5),
            "max_kl": round(s["max_kl"], 3),
            "top1_agreement": round(s["agree"] / positions, 4),
        }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
