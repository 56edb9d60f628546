"""Routed experts over a dense model's FFN weights: the router, per-row expert selection and
the FFN of the selected experts only.

A step's rows may ask for different numbers of experts (requests of different modes share a
batch): each row keeps its own top-k of the router's scores (a [T, E] mask, no per-token
loop). Compute depends on the batch size:

- few rows (the int4 decode path, <= `int4_max_rows`): the gate and up rows of the union of
  the rows' experts are gathered from an expert-major packed int4 copy (each expert's 32
  gate rows and 32 up rows form one 64-row block of torch's int4 layout, so a gather is a
  copy of whole blocks) and multiplied; each row's unselected experts are zeroed and the
  down projection runs over the scattered activations. Gate and up are 2/3 of the FFN's
  weight bytes, so at 35% of the experts a step reads ~0.57x the FFN bytes (the down
  projection is read whole: its Q4_1 groups run along the neurons, in the file's order).
- more rows (prefill, large decode batches): the dense FFN with each row's unselected
  neurons zeroed (the same result per row; a gather of each row's experts would cost more
  than it saves when the union of 32 rows' experts is nearly all of them).

Rows that keep every expert get the dense FFN's exact output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..model import FFNRoute, LlamaModel
from ..quant import Q4_1_BLOCK, Q4_1Weight, int4_available
from .fit import MoEPlan

INT4_BLOCK_N = 64  # rows per block of torch's CPU int4 layout ([N/64][K][32] bytes)


def experts_for(fraction: float, n_experts: int) -> int:
    """Experts per token for an active fraction in (0, 1]."""
    return max(1, min(n_experts, round(fraction * n_experts)))


class _Layer:
    __slots__ = ("a", "b", "expert_of", "neurons", "packed", "sz")

    a: torch.Tensor  # [dim, r] router, compute dtype
    b: torch.Tensor  # [r, 2F] router, expert-major columns
    expert_of: torch.Tensor  # [F] expert of each neuron
    neurons: torch.Tensor  # [E, s] neuron ids of each expert

    def __init__(self) -> None:
        self.packed: torch.Tensor | None = None  # expert-major int4 gate and up (few rows)
        self.sz: torch.Tensor | None = None


class ExpertFFN:
    """The runtime form of a MoEPlan for one LlamaModel."""

    def __init__(self, model: LlamaModel, plan: MoEPlan, tensors: dict) -> None:
        self.model = model
        self.plan = plan
        L, E, s = plan.experts.shape
        self.n_experts, self.expert_size = E, s
        self.rank = int(plan.router_a.shape[2])
        cfg = model.cfg
        if cfg.n_layers != L or E * s != cfg.ffn_dim or plan.router_a.shape[1] != cfg.dim:
            raise ValueError("the expert plan does not fit this model")
        dev, dt = model.device, model.dtype
        int4 = (
            dev.type == "cpu"
            and 2 * s == INT4_BLOCK_N
            and int4_available()
            and model.layers[0][4].packed is not None  # the dense path takes int4 for few rows
        )
        self.layers: list[_Layer] = []
        f = cfg.ffn_dim
        for li in range(L):
            lay = _Layer()
            neurons = torch.from_numpy(plan.experts[li].astype(np.int64))  # [E, s]
            flat = neurons.flatten()
            lay.neurons = neurons.to(dev)
            expert_of = torch.empty(f, dtype=torch.long)
            expert_of[flat] = torch.arange(E).repeat_interleave(s)
            lay.expert_of = expert_of.to(dev)
            a = torch.from_numpy(plan.router_a[li])
            b = torch.from_numpy(plan.router_b[li])
            dn = torch.from_numpy(plan.down_norm[li])
            # columns in expert-major order; the down-column norms folded into the up part
            # (|silu(g) * u| * n = |silu(g) * (u * n)|, n > 0)
            b = torch.cat([b[:, flat], b[:, f + flat] * dn[flat]], dim=1)
            lay.a = a.to(device=dev, dtype=dt).contiguous()
            lay.b = b.to(device=dev, dtype=dt).contiguous()
            if int4:
                p = f"blk.{li}."
                gate, up = tensors[p + "ffn_gate.weight"], tensors[p + "ffn_up.weight"]
                if isinstance(gate, Q4_1Weight) and isinstance(up, Q4_1Weight):
                    lay.packed, lay.sz = _pack_expert_major(gate, up, plan.experts[li])
            self.layers.append(lay)
        self.int4 = all(lay.packed is not None for lay in self.layers)

    # -- cost ------------------------------------------------------------------------------
    def router_macs(self) -> int:
        cfg = self.model.cfg
        return self.rank * (cfg.dim + 2 * cfg.ffn_dim) + 2 * cfg.ffn_dim

    def ffn_macs(self, k: int) -> int:
        """Multiply-adds per token of one layer's FFN with k experts on the few-rows path
        (gate and up of the k experts, the whole down projection), router excluded."""
        cfg = self.model.cfg
        if k >= self.n_experts:
            return 3 * cfg.dim * cfg.ffn_dim
        return 2 * cfg.dim * k * self.expert_size + cfg.dim * cfg.ffn_dim

    # -- a step ----------------------------------------------------------------------------
    def scores(self, li: int, h: torch.Tensor) -> torch.Tensor:
        """[T, E] predicted importance of each expert for each row."""
        lay = self.layers[li]
        act = self.model.ops.silu_mul(torch.mm(torch.mm(h, lay.a), lay.b))
        return act.abs().view(h.shape[0], self.n_experts, self.expert_size).sum(dim=-1)

    def ranked(self, li: int, h: torch.Tensor) -> torch.Tensor:
        """[T, E] expert ids of each row, best first (stable: ties go to the lower id)."""
        return torch.argsort(self.scores(li, h).float(), dim=1, descending=True, stable=True)

    def select(self, li: int, h: torch.Tensor, k_rows: torch.Tensor) -> torch.Tensor:
        """[T, E] bool: each row's top-k_rows[t] experts by the router."""
        order = self.ranked(li, h)
        keep = torch.arange(self.n_experts, device=h.device)[None, :] < k_rows[:, None]
        return torch.zeros_like(keep).scatter_(1, order, keep)

    def route(self, k_rows: torch.Tensor) -> FFNRoute:
        """The FFN route of a step whose flat rows keep k_rows[t] experts ([T] long)."""
        return _Route(self, k_rows)

    def dense(self, li: int, h: torch.Tensor) -> torch.Tensor:
        _, _, _, _, wgu, wdown = self.model.layers[li]
        return wdown(self.model.ops.silu_mul(wgu(h)))

    def masked_dense(self, li: int, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every neuron computed; each row's unselected experts zeroed."""
        _, _, _, _, wgu, wdown = self.model.layers[li]
        lay = self.layers[li]
        act = self.model.ops.silu_mul(wgu(h))
        return wdown(act * mask[:, lay.expert_of].to(act.dtype))

    def gathered(self, li: int, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Only the union of the rows' experts computed (int4, few rows)."""
        union = mask.any(dim=0) if h.shape[0] > 1 else mask[0]
        return self.gathered_experts(li, h, torch.nonzero(union).flatten(), mask)

    def gathered_experts(
        self, li: int, h: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The FFN over experts `idx` only; `mask` ([T, E]) zeroes each row's others (None:
        every row keeps all of idx)."""
        lay = self.layers[li]
        assert lay.packed is not None and lay.sz is not None
        T, E, s = h.shape[0], self.n_experts, self.expert_size
        u = idx.numel()
        w = lay.packed.view(E, -1).index_select(0, idx).view(u * 2 * s, -1)
        sz = lay.sz.view(lay.sz.shape[0], E, 2 * s, 2).index_select(1, idx).view(-1, u * 2 * s, 2)
        x = h if h.dtype == torch.bfloat16 else h.bfloat16()
        gu = torch._weight_int4pack_mm_for_cpu(x, w, Q4_1_BLOCK, sz).view(T, u, 2, s)
        act = (F.silu(gu[:, :, 0]) * gu[:, :, 1]).to(h.dtype)
        if mask is not None and T > 1:  # rows keep only their own experts of the union
            act = act * mask[:, idx, None].to(act.dtype)
        full = h.new_zeros((T, self.model.cfg.ffn_dim))
        full.index_copy_(1, lay.neurons[idx].flatten(), act.view(T, -1))
        _, _, _, _, _, wdown = self.model.layers[li]
        return wdown(full)


class _Route:
    def __init__(self, ffn: ExpertFFN, k_rows: torch.Tensor) -> None:
        self.ffn = ffn
        self.k = k_rows
        E = ffn.n_experts
        full = k_rows >= E
        self.all_dense = bool(full.all())
        self.some_dense = bool(full.any())
        self.full_rows = torch.nonzero(full).flatten() if self.some_dense else None
        self.part_rows = torch.nonzero(~full).flatten() if self.some_dense else None
        self.few = ffn.int4 and k_rows.numel() <= ffn.model.int4_max_rows
        # one row (single-stream decode): its first k ranked experts, no mask or union
        self.single_k = int(k_rows[0]) if k_rows.numel() == 1 else 0

    def __call__(self, li: int, h: torch.Tensor) -> torch.Tensor:
        ffn = self.ffn
        if self.all_dense:
            return ffn.dense(li, h)
        if not self.few:
            return ffn.masked_dense(li, h, ffn.select(li, h, self.k))
        if self.single_k:
            return ffn.gathered_experts(li, h, ffn.ranked(li, h)[0, : self.single_k], None)
        if not self.some_dense:
            return ffn.gathered(li, h, ffn.select(li, h, self.k))
        # few rows, some dense: those take the dense FFN (its exact output), the rest gather
        assert self.full_rows is not None and self.part_rows is not None
        y = ffn.dense(li, h)
        hp = h.index_select(0, self.part_rows)
        y.index_copy_(0, self.part_rows, ffn.gathered(li, hp, ffn.select(li, hp, self.k[self.part_rows])))
        return y


def _pack_expert_major(
    gate: Q4_1Weight, up: Q4_1Weight, experts: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's int4 packing of [gate rows of expert 0, up rows of expert 0, gate rows of
    expert 1, ...] with its bf16 scales and zeros (as `QLinear` packs the dense weight)."""
    E, s = experts.shape
    rows_g = [gate.permute_rows(experts[e]) for e in range(E)]
    rows_u = [up.permute_rows(experts[e]) for e in range(E)]
    w = Q4_1Weight.cat([x for pair in zip(rows_g, rows_u, strict=True) for x in pair])
    qi = torch.from_numpy(w.q.astype(np.int32))
    packed = torch._convert_weight_to_int4pack_for_cpu(qi, 2)
    d = torch.from_numpy(w.d)
    zero = torch.from_numpy(w.m) + 8.0 * d  # the kernel computes (q - 8) * s + z
    sz = torch.stack([d.t(), zero.t()], dim=-1).contiguous().to(torch.bfloat16)
    return packed, sz
