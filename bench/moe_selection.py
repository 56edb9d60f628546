"""Which FFN neurons to compute, per token: selection rules against the dense model (issue 17).

    .venv/bin/python bench/moe_selection.py [--chunks 8] [--fractions 0.35 0.6 0.92] [--ranks 32 64 128]

Quality only (no speed): each rule keeps the top `fraction` of a layer's 1,536 FFN neurons
per token by its score, and the FFN computes the kept neurons exactly (the rest are zero);
teacher-forced next-token top-1 agreement and mean KL(dense || selected) on held-out GSM8K
and MMLU text (bench/efficiency.py's `heldout_chunks`), predictors fit on the engine's
calibration text (Python docstrings, inference/moe/calibration.py). Rules, with `a = silu(g)`,
`u` the up projection, `d_i` the norm of neuron i's down-projection column:

- `oracle`: |a u| d, the true contribution (needs the whole FFN: a bound, not a method);
- `gate`: |a| ||w_up,i|| d (gate first: the gate projection is computed whole and *used*, so
  its cost is part of the FFN's, then up and down only for the kept neurons);
- `gate+up<r>`: |a| |u~| d, u~ a rank-r predictor of u (reduced-rank regression on the
  calibration inputs, weighted by |a| d), computed beside the gate;
- `gate-then-up<m>`: two stages: the top m k neurons by `gate`'s score, their up projection
  computed exactly, then the top k of those by |a u| d;
- `lowrank64`: |silu(g~) u~| d from one rank-64 predictor of both g and u (the engine's
  router, per neuron instead of per expert of 32).

`ffn_macs_ratio` is each rule's multiply-adds per token against the dense FFN's 3 dim F:
the gate rules pay dim F for the gate, r (dim + F) for u~ and 2 dim k for k kept neurons
(`gate-then-up<m>`: dim F + m dim k for up on the candidates + dim k for down).
The last line is one JSON object: rule -> fraction -> {top1, kl, ffn_macs_ratio}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from efficiency import DATA, heldout_chunks  # noqa: E402

from inference import EmbeddedModel  # noqa: E402
from inference.gguf_loader import load_gguf  # noqa: E402
from inference.moe.calibration import calibration_tokens  # noqa: E402
from inference.moe.fit import collect_inputs, ffn_weights, fit_router  # noqa: E402
from inference.moe.forward import chunk_logits  # noqa: E402


class Predictors:
    """Per layer: down-column norms, up-row norms and the rank-r predictors fit on the
    calibration inputs."""

    def __init__(self, model: EmbeddedModel, ranks: list[int], calib_tokens: int) -> None:
        tensors = load_gguf(model.artifact.path).tensors
        chunks = calibration_tokens(model.tokenizer.encode_text, calib_tokens, 256)
        inputs = collect_inputs(model.model, chunks)
        self.down_norm: list[torch.Tensor] = []
        self.up_norm: list[torch.Tensor] = []
        self.up: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {r: [] for r in ranks}
        self.both: list[tuple[torch.Tensor, torch.Tensor]] = []
        for li, h in enumerate(inputs):
            w_gu, w_down = ffn_weights(tensors, li)
            f = w_gu.shape[0] // 2
            hf = h.float()
            gu = hf @ w_gu.t()
            dn = w_down.norm(dim=0)
            act_rms = F.silu(gu[:, :f]).pow(2).mean(0).sqrt()
            self.down_norm.append(dn)
            self.up_norm.append(w_gu[f:].norm(dim=1))
            wts = (dn * act_rms).clamp_min(1e-6)  # an error in u moves |a u| d by |a| d
            for r in ranks:
                a, b = fit_router(w_gu[f:], hf, wts, r)
                self.up[r].append((torch.from_numpy(a), torch.from_numpy(b)))
            rms = gu.pow(2).mean(0).sqrt()  # as inference/moe/fit.py weights the router
            both_w = torch.cat([dn * rms[f:], dn * act_rms]).clamp_min(1e-6)
            a, b = fit_router(w_gu, hf, both_w, 64)
            self.both.append((torch.from_numpy(a), torch.from_numpy(b)))

    def gate_score(self, li: int, g: torch.Tensor) -> torch.Tensor:
        return F.silu(g).abs() * self.up_norm[li] * self.down_norm[li]


class SelectRoute:
    """An FFN route (inference.model.FFNRoute) keeping k neurons per token by `rule`."""

    def __init__(self, model: EmbeddedModel, pred: Predictors, rule: str, k: int) -> None:
        self.model, self.pred, self.rule, self.k = model.model, pred, rule, k

    def score(self, li: int, h: torch.Tensor, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p, dn = self.pred, self.pred.down_norm[li]
        if self.rule == "oracle":
            return (F.silu(g) * u).abs() * dn
        if self.rule == "gate":
            return p.gate_score(li, g)
        if self.rule.startswith("gate+up"):
            a, b = p.up[int(self.rule.removeprefix("gate+up"))][li]
            return F.silu(g).abs() * ((h @ a) @ b).abs() * dn
        a, b = p.both[li]
        gu = (h @ a) @ b
        f = gu.shape[1] // 2
        return (F.silu(gu[:, :f]) * gu[:, f:]).abs() * dn

    def __call__(self, li: int, h: torch.Tensor) -> torch.Tensor:
        _, _, _, _, wgu, wdown = self.model.layers[li]
        gu = wgu(h).float()
        f = gu.shape[1] // 2
        g, u = gu[:, :f], gu[:, f:]
        if self.rule.startswith("gate-then-up"):
            m = float(self.rule.removeprefix("gate-then-up"))
            cand = self.pred.gate_score(li, g).topk(min(round(m * self.k), f), dim=-1).indices
            exact = (F.silu(g) * u).abs().gather(1, cand) * self.pred.down_norm[li][cand]
            keep = cand.gather(1, exact.topk(self.k, dim=-1).indices)
        else:
            keep = self.score(li, h.float(), g, u).topk(self.k, dim=-1).indices
        mask = torch.zeros_like(g).scatter_(1, keep, 1.0)
        return wdown((F.silu(g) * u * mask).to(h.dtype))


def macs_ratio(rule: str, k: int, dim: int, ffn: int) -> float:
    dense = 3 * dim * ffn
    if rule == "oracle":
        return 1.0
    if rule == "gate":
        return round((dim * ffn + 2 * dim * k) / dense, 4)
    if rule.startswith("gate-then-up"):
        m = float(rule.removeprefix("gate-then-up"))
        return round((dim * ffn + dim * min(round(m * k), ffn) + dim * k) / dense, 4)
    if rule.startswith("gate+up"):
        r = int(rule.removeprefix("gate+up"))
        return round((dim * ffn + r * (dim + ffn) + 2 * dim * k) / dense, 4)
    return round((64 * (dim + 2 * ffn) + 3 * dim * k) / dense, 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.35, 0.6, 0.92])
    ap.add_argument("--ranks", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--multiples", type=float, nargs="+", default=[1.5, 2.0])
    ap.add_argument("--calib-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = EmbeddedModel.load(threads=args.threads)
    pred = Predictors(model, args.ranks, args.calib_tokens)
    fit_s = round(time.perf_counter() - t0, 1)
    chunks = heldout_chunks(model, args.data, args.chunks, args.chunk)
    cfg = model.config
    rules = [
        "oracle",
        "gate",
        *(f"gate-then-up{m:g}" for m in args.multiples),
        *(f"gate+up{r}" for r in args.ranks),
        "lowrank64",
    ]
    agree: dict[tuple[str, float], list[torch.Tensor]] = {(r, f): [] for r in rules for f in args.fractions}
    kl: dict[tuple[str, float], list[torch.Tensor]] = {key: [] for key in agree}
    for ids in chunks:
        lp = F.log_softmax(chunk_logits(model.model, ids), dim=-1)
        for rule, frac in agree:
            route = SelectRoute(model, pred, rule, round(frac * cfg.ffn_dim))
            lq = F.log_softmax(chunk_logits(model.model, ids, route), dim=-1)
            agree[(rule, frac)].append((lq.argmax(-1) == lp.argmax(-1)).float())
            kl[(rule, frac)].append((lp.exp() * (lp - lq)).sum(-1))
    out: dict = {"heldout_tokens": sum(len(c) for c in chunks), "fit_s": fit_s}
    for rule, frac in agree:
        k = round(frac * cfg.ffn_dim)
        out.setdefault(rule, {})[str(frac)] = {
            "top1": round(torch.cat(agree[(rule, frac)]).mean().item(), 4),
            "kl": round(torch.cat(kl[(rule, frac)]).mean().item(), 5),
            "ffn_macs_ratio": macs_ratio(rule, k, cfg.dim, cfg.ffn_dim),
        }
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
