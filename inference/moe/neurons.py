"""Per-neuron, gate-first routing over a dense model's FFN: the engine's mode-scaled experts
(each of a layer's F neurons is an expert of one; docs/efficiency.md says why not groups).

Per token and layer: the gate projection is computed whole (it is a third of the FFN and its
result is used); neurons are ranked by |silu(g_i)| c_i, c_i = |w_up,i| |w_down,:i| (weight
norms: no fit, no calibration); the up projection runs over the top `cand(k)` of them; the
top k of those by the exact |silu(g_i) u_i| |w_down,:i| keep their activations and the down
projection runs over those k only. `cand(k)` is `CANDIDATE_MULTIPLES`' multiple of k (2x at
35% active, 1.5x at 60%, 1x = gate only from 80%), measured in bench/moe_selection.py.

Neurons are ranked within four fixed shards of F/4 (each keeps its share of the counts), so
that a shard is one thread's work in the kernel with no data from another, and the result
does not depend on the thread count. Ties go to the lower neuron id.

Compute depends on the batch:
- few rows (decode, <= `KERNEL_MAX_ROWS`) on a CPU where the kernels load: one C++ call per
  layer (`kernels/cpu/sparse_ffn.cpp`) over the file's Q4_1 blocks, reading only the
  candidates' up rows and the kept neurons' down columns (the down projection transposed,
  its scales per group of 32 neurons kept beside it; ~50 MB for SmolLM2 beside the dense
  path's weights);
- otherwise (prefill, large batches, other devices) the twin: the dense gate and up, the
  same selection (one C++ call, `select_act`, where the kernels load; `select_neurons` in
  PyTorch ops elsewhere), each row's other activations zeroed, the dense down.
Rows keeping every neuron take the dense FFN's exact output; a row's result does not
depend on the other rows of its step."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kernels import cpu_ops

from ..model import FFNRoute, LlamaModel
from ..quant import Q4_1_BLOCK, Q4_1Weight
from .fit import ffn_weights

# (largest active fraction, candidates per kept neuron), first match wins
CANDIDATE_MULTIPLES: tuple[tuple[float, float], ...] = ((0.5, 2.0), (0.8, 1.5), (1.0, 1.0))
KERNEL_MAX_ROWS = 4  # more rows read the weights once through the dense twin instead
KERNEL_CALL_ROWS = 16  # the kernel's most rows a call


def candidates_for(k: int, n: int) -> int:
    """Neurons whose up projection is computed when k of n are kept."""
    f = k / n
    mult = next(m for top, m in CANDIDATE_MULTIPLES if f <= top)
    return min(n, max(k, round(mult * k)))


SHARDS = 4  # the kernel's: neurons are ranked within fixed quarters (whole groups of 32)


def shares(k: torch.Tensor, shards: int = SHARDS) -> torch.Tensor:
    """[T, S]: each shard's share of k ([T] long): floor(k (s + 1) / S) - floor(k s / S)."""
    s = torch.arange(shards + 1, device=k.device)
    edges = torch.div(k[:, None] * s, shards, rounding_mode="floor")
    return edges[:, 1:] - edges[:, :-1]


def select_neurons(
    a: torch.Tensor,  # [T, F] silu(gate), float32
    u: torch.Tensor,  # [T, F] up, float32 (only the candidates' values are read)
    score_scale: torch.Tensor,  # [F] |w_up,i| |w_down,:i|
    down_norm: torch.Tensor,  # [F] |w_down,:i|
    keep: torch.Tensor,  # [T] long
    cand: torch.Tensor,  # [T] long
) -> torch.Tensor:
    """[T, F] bool: each row's kept neurons, the kernel's rule: within each of `SHARDS` equal
    shards, its share of `cand` by |a| c, then of those its share of `keep` (at most its
    candidates) by |a u| |w_down|; ties to the lower id."""
    T, n = a.shape
    S = SHARDS
    a_s, u_s = a.view(T, S, n // S), u.view(T, S, n // S)
    cs, dn = score_scale.view(S, n // S), down_norm.view(S, n // S)
    c_s = shares(cand)
    k_s = torch.minimum(shares(keep), c_s)
    ranks = torch.arange(n // S, device=a.device).expand_as(a_s)
    first = torch.argsort(a_s.abs() * cs, dim=2, descending=True, stable=True)
    is_cand = torch.zeros_like(a_s, dtype=torch.bool).scatter_(2, first, ranks < c_s[..., None])
    exact = torch.where(is_cand, (a_s * u_s).abs() * dn, torch.full_like(a_s, -1.0))
    second = torch.argsort(exact, dim=2, descending=True, stable=True)
    return torch.zeros_like(is_cand).scatter_(2, second, ranks < k_s[..., None]).view(T, n)


class _Layer:
    __slots__ = ("args", "down_dm", "down_norm", "down_q", "gate", "score_scale", "up")

    score_scale: torch.Tensor  # [F] |w_up,i| |w_down,:i|
    down_norm: torch.Tensor  # [F] |w_down,:i|

    def __init__(self) -> None:
        self.gate: torch.Tensor | None = None  # [F, K/32 * 20] Q4_1 rows (`q41_rows`)
        self.up: torch.Tensor | None = None
        self.down_q: torch.Tensor | None = None  # [F, O/2] transposed nibbles
        self.down_dm: torch.Tensor | None = None  # [F/32, 2, O] float16
        self.args: tuple = ()  # the kernel's weight arguments, in its order


class NeuronFFN:
    """The runtime form of per-neuron routing for one LlamaModel (`tensors`: the loader's
    weights; the FFN's Q4_1 blocks are repacked for the kernel)."""

    expert_size = 1

    def __init__(self, model: LlamaModel, tensors: dict, kernel: bool = True) -> None:
        self.model = model
        cfg = model.cfg
        self.n_experts = cfg.ffn_dim
        dev = model.device
        self.kernel = (
            kernel
            and dev.type == "cpu"
            and cfg.dim % Q4_1_BLOCK == 0
            and cfg.ffn_dim % (Q4_1_BLOCK * SHARDS) == 0
            and cpu_ops.load()
        )
        # the C++ selector for the twin (kept apart from `kernel`: a test turns the kernel off)
        self.selector = dev.type == "cpu" and cfg.ffn_dim % SHARDS == 0 and cpu_ops.load()
        self.layers: list[_Layer] = []
        for li in range(cfg.n_layers):
            w_gu, w_down = ffn_weights(tensors, li)
            lay = _Layer()
            dn = w_down.norm(dim=0)
            lay.down_norm = dn.to(dev)
            lay.score_scale = (w_gu[cfg.ffn_dim :].norm(dim=1) * dn).to(dev)
            p = f"blk.{li}."
            gate, up, down = (tensors[p + n] for n in ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"))
            if self.kernel and all(isinstance(w, Q4_1Weight) for w in (gate, up, down)):
                lay.gate, lay.up = q41_rows(gate), q41_rows(up)
                lay.down_q, lay.down_dm = transposed_down(down)
                lay.args = (lay.gate, lay.up, lay.down_q, lay.down_dm, lay.score_scale, lay.down_norm)
            self.layers.append(lay)
        self.kernel = self.kernel and all(lay.gate is not None for lay in self.layers)

    # -- cost ------------------------------------------------------------------------------
    def router_macs(self) -> int:
        """The ranking: one multiply per neuron for each of the two scores."""
        return 2 * self.n_experts

    def ffn_macs(self, k: int) -> int:
        """Multiply-adds per token of one layer's FFN keeping k neurons (the gate whole, up
        over the candidates, down over the kept), the ranking excluded."""
        d, n = self.model.cfg.dim, self.n_experts
        if k >= n:
            return 3 * d * n
        return d * n + d * candidates_for(k, n) + d * k

    # -- a step ----------------------------------------------------------------------------
    def route(self, k_rows: torch.Tensor, kernel_rows: int = KERNEL_MAX_ROWS) -> FFNRoute:
        """The FFN route of a step whose flat rows keep k_rows[t] neurons ([T] long); up to
        `kernel_rows` routed rows take the kernel (more: the twin). A bench raises it to
        measure the decode path's quality on whole chunks (the kernel takes 16 at a time)."""
        return _Route(self, k_rows, kernel_rows)

    def dense(self, li: int, h: torch.Tensor) -> torch.Tensor:
        _, _, _, _, wgu, wdown = self.model.layers[li]
        return wdown(self.model.ops.silu_mul(wgu(h)))

    def twin(self, li: int, h: torch.Tensor, keep: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """The PyTorch path: dense gate and up, the same selection (one C++ call where the
        kernels load: in PyTorch ops it cost ~5x the FFN at 32 rows), the dense down."""
        _, _, _, _, wgu, wdown = self.model.layers[li]
        lay = self.layers[li]
        gu = wgu(h)
        if self.selector and int(keep.min()) >= SHARDS:  # (the selector splits k over 4 shards)
            return wdown(cpu_ops.select_act(gu, lay.score_scale, lay.down_norm, keep, cand))
        n = self.n_experts
        gu = gu.float()
        a, u = F.silu(gu[:, :n]), gu[:, n:]
        mask = select_neurons(a, u, lay.score_scale, lay.down_norm, keep, cand)
        return wdown(torch.where(mask, a * u, 0.0).to(h.dtype))

    def sparse(self, li: int, h: torch.Tensor, keep: list[int], cand: list[int]) -> torch.Tensor:
        """The kernel (few rows); called straight (30 calls a decode step: the wrapper's and
        the overload resolution's microseconds add up)."""
        return cpu_ops.sparse_ffn_op()(h, *self.layers[li].args, keep, cand, h.dtype, None)


class _Route:
    def __init__(self, ffn: NeuronFFN, k_rows: torch.Tensor, kernel_rows: int) -> None:
        self.ffn = ffn
        n = ffn.n_experts
        ks = [min(int(k), n) for k in k_rows.tolist()]
        part = [i for i, k in enumerate(ks) if k < n]
        self.all_dense = not part
        self.rows = (
            None if len(part) == len(ks) else torch.tensor(part, dtype=torch.long, device=k_rows.device)
        )
        self.keep = [ks[i] for i in part]
        self.cand = [candidates_for(k, n) for k in self.keep]
        # the kernel's shards each keep >= 1 neuron (k >= 4)
        self.kernel = ffn.kernel and len(part) <= kernel_rows and min(self.keep, default=0) >= SHARDS
        if not self.kernel:
            self.keep_t = torch.tensor(self.keep, dtype=torch.long, device=k_rows.device)
            self.cand_t = torch.tensor(self.cand, dtype=torch.long, device=k_rows.device)

    def _part(self, li: int, h: torch.Tensor) -> torch.Tensor:
        if not self.kernel:
            return self.ffn.twin(li, h, self.keep_t, self.cand_t)
        if h.shape[0] <= KERNEL_CALL_ROWS:
            return self.ffn.sparse(li, h, self.keep, self.cand)
        n = KERNEL_CALL_ROWS
        return torch.cat(
            [
                self.ffn.sparse(li, h[i : i + n], self.keep[i : i + n], self.cand[i : i + n])
                for i in range(0, h.shape[0], n)
            ]
        )

    def __call__(self, li: int, h: torch.Tensor) -> torch.Tensor:
        if self.all_dense:
            return self.ffn.dense(li, h)
        if self.rows is None:
            return self._part(li, h)
        y = self.ffn.dense(li, h)  # rows keeping every neuron: the dense FFN's exact output
        y.index_copy_(0, self.rows, self._part(li, h.index_select(0, self.rows)))
        return y


def q41_rows(w: Q4_1Weight) -> torch.Tensor:
    """[N, K/32 * 20] uint8: each row of W as the kernel reads it: the file's Q4_1 nibbles of
    its K/32 blocks (block b's element j in the low nibble of byte 16 b + j, element 16 + j in
    the high one), then the blocks' fp16 d, then their fp16 m."""
    n, k = w.q.shape
    nb = k // Q4_1_BLOCK
    q = w.q.reshape(n, nb, Q4_1_BLOCK).astype(np.uint8)
    nib = (q[..., :16] | (q[..., 16:] << 4)).reshape(n, nb * 16)
    d = w.d.astype(np.float16).view(np.uint8).reshape(n, nb * 2)
    m = w.m.astype(np.float16).view(np.uint8).reshape(n, nb * 2)
    return torch.from_numpy(np.ascontiguousarray(np.concatenate([nib, d, m], axis=1)))


def transposed_down(w: Q4_1Weight) -> tuple[torch.Tensor, torch.Tensor]:
    """The down projection W [O, F] as the kernel reads it: each neuron's column as a row of
    O/2 nibble bytes (per 32 outputs: output j in the low nibble of byte j, 16 + j in its
    high one), and the scales as [F/32 groups, 2 (d, m), O] float16."""
    o, f = w.q.shape
    qt = w.q.T.reshape(f, o // Q4_1_BLOCK, Q4_1_BLOCK).astype(np.uint8)
    nib = (qt[..., :16] | (qt[..., 16:] << 4)).reshape(f, o // 2)
    dm = np.stack([w.d.T, w.m.T], axis=1).astype(np.float16)  # [F/32, 2, O]
    return torch.from_numpy(np.ascontiguousarray(nib)), torch.from_numpy(np.ascontiguousarray(dm))
