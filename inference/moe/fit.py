"""Fit the expert plan of a dense SwiGLU FFN on calibration text.

Each layer's F neurons are split into E experts of F/E neurons. A neuron's importance for a
token is |silu(g) * u| times the norm of its down-projection column (the size of what it adds
to the residual stream). Neurons that matter for the same tokens are grouped together by a
balanced spherical k-means over their importance profiles across the calibration tokens, so
a token's important neurons concentrate in few experts: grouping decides the quality (crude
co-activation clusters lose most of what per-neuron selection keeps).

The router is a rank-r linear predictor of the gate and up pre-activations, [g, u] ~
(h @ A) @ B: the reduced-rank regression of the exact map [g, u] = W h under the calibration
distribution of h (the top-r principal directions of the importance-weighted pre-activations),
from which the predicted importance is computed as above and summed per expert. Everything
is deterministic (fixed data, fixed seed, fp64 decompositions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model import LlamaModel
from ..quant import Q4_1Weight
from .forward import DenseCapture, chunk_logits

FIT_VERSION = 1  # bump when the fit changes: cached plans of older versions are refit


@dataclass(frozen=True)
class FitConfig:
    n_experts: int = 48  # 32 neurons each for SmolLM2's 1536
    rank: int = 64  # router rank: (dim + 2F) * r MACs, ~9% of the FFN's 3 * dim * F
    calib_tokens: int = 4096
    chunk: int = 256
    kmeans_iters: int = 20
    seed: int = 0

    def key(self) -> str:
        c = self
        return f"v{FIT_VERSION}-e{c.n_experts}-r{c.rank}-t{c.calib_tokens}-c{c.chunk}-i{c.kmeans_iters}" + (
            f"-s{c.seed}"
        )


@dataclass
class MoEPlan:
    experts: np.ndarray  # [L, E, s] int32 neuron ids of each expert (original order)
    router_a: np.ndarray  # [L, dim, r] float32
    router_b: np.ndarray  # [L, r, 2F] float32 (gate columns, then up columns)
    down_norm: np.ndarray  # [L, F] float32

    @property
    def n_experts(self) -> int:
        return int(self.experts.shape[1])


def _dense(w: torch.Tensor | Q4_1Weight) -> torch.Tensor:
    return torch.from_numpy(w.dequantize()) if isinstance(w, Q4_1Weight) else w.float()


def ffn_weights(tensors: dict, li: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer li's [2F, dim] gate-and-up and [dim, F] down weights in float32."""
    p = f"blk.{li}."
    gu = torch.cat([_dense(tensors[p + "ffn_gate.weight"]), _dense(tensors[p + "ffn_up.weight"])])
    return gu, _dense(tensors[p + "ffn_down.weight"])


def collect_inputs(model: LlamaModel, chunks: list[list[int]]) -> list[torch.Tensor]:
    """Each layer's FFN inputs over the calibration chunks: [N, dim] in the compute dtype."""
    cap = DenseCapture(model)
    for ids in chunks:
        chunk_logits(model, ids, cap, all_rows=False)
    return [torch.cat(xs) for xs in cap.inputs]


def _balanced_assign(sim: torch.Tensor, cap: int) -> torch.Tensor:
    """Each row (neuron) to a column (expert), at most `cap` per column (exactly `cap` when
    rows = cap * columns): each round every unplaced row proposes to its most similar column
    with room, and each column keeps its most similar proposers up to its room."""
    n, e = sim.shape
    assign = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((e,), cap, dtype=torch.long)
    s = sim.clone()
    while True:
        free = assign < 0
        if not bool(free.any()):
            return assign
        s[:, room == 0] = -torch.inf
        rows = torch.nonzero(free).flatten()
        best = s[rows].argmax(dim=1)
        val = s[rows, best]
        # rank the proposals to each column by similarity (stable: deterministic ties)
        order = torch.argsort(val, descending=True, stable=True)
        rows, best = rows[order], best[order]
        order = torch.argsort(best, stable=True)
        rows, best = rows[order], best[order]
        first = torch.searchsorted(best, best, right=False)
        pos = torch.arange(best.numel()) - first  # rank of each proposal within its column
        ok = pos < room[best]
        assign[rows[ok]] = best[ok]
        room -= torch.bincount(best[ok], minlength=e)


def group_neurons(importance: torch.Tensor, n_experts: int, iters: int, seed: int) -> np.ndarray:
    """[N tokens, F] importances -> [E, F/E] neuron ids: balanced spherical k-means over the
    neurons' (square-root) importance profiles."""
    n_tok, f = importance.shape
    if f % n_experts:
        raise ValueError(f"{f} neurons do not split into {n_experts} equal experts")
    size = f // n_experts
    x = importance.float().sqrt().t()  # [F, N]; sqrt: a few huge tokens do not dominate
    x = x - x.mean(dim=1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(f, generator=g)[:n_experts]]
    assign = _balanced_assign(x @ centres.t(), size)
    for _ in range(iters):
        centres = torch.zeros(n_experts, n_tok, dtype=x.dtype).index_add_(0, assign, x)
        centres = centres / centres.norm(dim=1, keepdim=True).clamp_min(1e-12)
        new = _balanced_assign(x @ centres.t(), size)
        if torch.equal(new, assign):
            break
        assign = new
    groups = [torch.nonzero(assign == e).flatten() for e in range(n_experts)]
    return torch.stack(groups).numpy().astype(np.int32)


def fit_router(
    w_gu: torch.Tensor, h: torch.Tensor, weights: torch.Tensor, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rank-r predictor (A [dim, r], B [r, 2F]) of y = h @ w_gu.T minimising the
    `weights`-weighted ([2F]) squared error over the rows of h."""
    # fp32 products (fp64 ones cost ~10x here), fp64 eigendecompositions
    hf = h.float()
    sigma = (hf.t() @ hf / hf.shape[0]).double()  # [dim, dim]
    evals, evecs = torch.linalg.eigh(sigma)
    root = (evecs * evals.clamp_min(0).sqrt()).float()  # sigma = root @ root.T
    dw = weights.float()[:, None] * w_gu.float()  # [2F, dim]
    m = dw @ root  # [2F, dim]; its top left singular vectors via the small Gram matrix
    lam, v = torch.linalg.eigh((m.t() @ m).double())
    top = torch.argsort(lam, descending=True)[:rank]
    ur = (m @ v[:, top].float()) / lam[top].clamp_min(1e-30).sqrt().float()  # [2F, r]
    a = dw.t() @ ur  # [dim, r]
    b = ur.t() / weights.float()[None, :]  # [r, 2F]
    return a.numpy(), b.numpy()


def importance_of(gu: torch.Tensor, down_norm: torch.Tensor) -> torch.Tensor:
    f = gu.shape[1] // 2
    return (F.silu(gu[:, :f]) * gu[:, f:]).abs() * down_norm


def fit_plan(model: LlamaModel, tensors: dict, chunks: list[list[int]], cfg: FitConfig) -> MoEPlan:
    inputs = collect_inputs(model, chunks)
    experts, ra, rb, dn = [], [], [], []
    for li, h in enumerate(inputs):
        w_gu, w_down = ffn_weights(tensors, li)
        hf = h.float().cpu()  # the fit runs on the CPU, whatever the model's device
        gu = hf @ w_gu.t()
        down_norm = w_down.norm(dim=0)
        imp = importance_of(gu, down_norm)
        experts.append(group_neurons(imp, cfg.n_experts, cfg.kmeans_iters, cfg.seed))
        f = gu.shape[1] // 2
        # error weights: how much a unit error in g (u) moves the importance
        rms = gu.pow(2).mean(0).sqrt()
        act_rms = F.silu(gu[:, :f]).pow(2).mean(0).sqrt()
        wts = torch.cat([down_norm * rms[f:], down_norm * act_rms]).clamp_min(1e-6)
        a, b = fit_router(w_gu, hf, wts, cfg.rank)
        ra.append(a)
        rb.append(b)
        dn.append(down_norm.numpy())
    return MoEPlan(
        experts=np.stack(experts),
        router_a=np.stack(ra).astype(np.float32),
        router_b=np.stack(rb).astype(np.float32),
        down_norm=np.stack(dn).astype(np.float32),
    )
