"""PyTorch twin of `kernels.moe_gemm`: a SwiGLU FFN whose neurons are partitioned into
experts, computed only for the experts each token selected.

Layout: expert e owns neurons [e*Fe, (e+1)*Fe) of the dense FFN, so its slices are views of
the dense weights: `w_gate = W_g.view(E, Fe, D)`, `w_up = W_u.view(E, Fe, D)` and
`w_down = W_d.view(D, E, Fe).permute(1, 0, 2)` ([E, D, Fe], strided; no copy).
Per token t: `y[t] = sum_k weights[t, k] * w_down[e] @ (silu(w_gate[e] @ x[t]) * (w_up[e] @ x[t]))`
with `e = expert_ids[t, k]`; an id of -1 is an empty slot, so the number of active experts
may differ per token. With every expert selected at weight 1 this is the dense FFN.

`align_by_expert` is the shared first step of the fused kernel: the (token, slot)
assignments sorted by expert, each expert's run padded to a multiple of the block size, so
that every block of rows belongs to one expert and multiplies one weight slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MoeAlignment:
    sorted_ids: torch.Tensor  # [P] int32: flat assignment index t*K + k, or T*K as padding
    block_expert: torch.Tensor  # [P // block_m] int32: the expert of each block of rows
    block_m: int
    num_assignments: int  # T*K: the padding sentinel

    @property
    def num_blocks(self) -> int:
        return int(self.block_expert.shape[0])


def check_moe_shapes(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    expert_ids: torch.Tensor,
    expert_weights: torch.Tensor,
) -> None:
    if x.dim() != 2 or w_gate.dim() != 3:
        raise ValueError("need x [T, D] and expert slices w_gate/w_up [E, Fe, D], w_down [E, D, Fe]")
    e, fe, d = w_gate.shape
    if x.shape[1] != d or w_up.shape != w_gate.shape or tuple(w_down.shape) != (e, d, fe):
        raise ValueError(
            f"shapes disagree: x {tuple(x.shape)}, w_gate {tuple(w_gate.shape)}, "
            f"w_up {tuple(w_up.shape)}, w_down {tuple(w_down.shape)}"
        )
    if expert_ids.dim() != 2 or expert_ids.shape[0] != x.shape[0] or expert_weights.shape != expert_ids.shape:
        raise ValueError("need expert_ids and expert_weights [T, K] for T tokens")


def align_by_expert(expert_ids: torch.Tensor, num_experts: int, block_m: int) -> MoeAlignment:
    """Sort assignments by expert and pad each expert's run to a multiple of block_m (no
    Python loop over tokens or experts)."""
    flat = expert_ids.reshape(-1).long()
    n = flat.numel()
    dev = flat.device
    if n and (int(flat.max()) >= num_experts or int(flat.min()) < -1):
        raise ValueError(f"expert ids must lie in [-1, {num_experts})")
    valid = flat >= 0
    key = torch.where(valid, flat, torch.full_like(flat, num_experts))
    order = torch.argsort(key, stable=True)[: int(valid.sum())]
    experts = flat[order]
    counts = torch.bincount(experts, minlength=num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    start = torch.cumsum(counts, 0) - counts
    start_padded = torch.cumsum(padded, 0) - padded
    rank = torch.arange(order.numel(), device=dev) - start[experts]
    total = int(padded.sum())
    sorted_ids = torch.full((total,), n, dtype=torch.int32, device=dev)
    sorted_ids[start_padded[experts] + rank] = order.to(torch.int32)
    block_expert = torch.repeat_interleave(torch.arange(num_experts, device=dev), padded // block_m)
    return MoeAlignment(sorted_ids, block_expert.to(torch.int32), block_m, n)


# A decode batch (up to UNION_MAX_TOKENS tokens: memory-bound) whose tokens together select
# at least UNION_MIN_SHARE of the experts runs as the dense FFN with a per-token expert mask:
# it reads at most 1/UNION_MIN_SHARE the bytes of the selected slices, and one GEMM beats E
# small ones (on 1 CPU thread, 59 of 64 experts one by one took 7.0 ms, the dense FFN 0.42).
# Otherwise the twin runs one GEMM per selected expert over the tokens that chose it, on
# views of the weights: each selected slice is read once and nothing is copied (gathering
# the slices into one matrix first costs, on the CPU, about what the dense GEMM does).
UNION_MAX_TOKENS = 64
UNION_MIN_SHARE = 0.75


def moe_swiglu_ref(
    x: torch.Tensor,  # [T, D]
    w_gate: torch.Tensor,  # [E, Fe, D]
    w_up: torch.Tensor,  # [E, Fe, D]
    w_down: torch.Tensor,  # [E, D, Fe]
    expert_ids: torch.Tensor,  # [T, K] int, -1 = empty slot
    expert_weights: torch.Tensor,  # [T, K]
) -> torch.Tensor:
    """The twin (and the CPU path); no loop over tokens. fp32 accumulation, output in x's
    dtype."""
    check_moe_shapes(x, w_gate, w_up, w_down, expert_ids, expert_weights)
    e = w_gate.shape[0]
    ids = expert_ids.long()
    used = int((torch.bincount(ids[ids >= 0], minlength=e) > 0).sum())
    if x.shape[0] <= UNION_MAX_TOKENS and used >= UNION_MIN_SHARE * e:
        return _masked_dense(x, w_gate, w_up, w_down, ids, expert_weights)
    return _per_expert(x, w_gate, w_up, w_down, expert_ids, expert_weights)


def _masked_dense(x, w_gate, w_up, w_down, ids, expert_weights) -> torch.Tensor:
    e, fe, d = w_gate.shape
    t = x.shape[0]
    gate = torch.zeros(t, e, dtype=torch.float32, device=x.device)  # 0 where not chosen
    gate.scatter_add_(1, ids.clamp(min=0), torch.where(ids >= 0, expert_weights.float(), 0.0))
    # reshape: a view when the slices are views of the dense weights, else one copy
    wg, wu = w_gate.reshape(e * fe, d), w_up.reshape(e * fe, d)
    wd = w_down.permute(1, 0, 2).reshape(d, e * fe)
    xf = x.float()
    h = F.silu(F.linear(xf, wg.float())) * F.linear(xf, wu.float())
    h = (h.view(t, e, fe) * gate[:, :, None]).view(t, e * fe)
    return F.linear(h, wd.float()).to(x.dtype)


def _per_expert(x, w_gate, w_up, w_down, expert_ids, expert_weights) -> torch.Tensor:
    t, k = expert_ids.shape
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    flat = expert_ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    experts, counts = torch.unique_consecutive(flat[order], return_counts=True)
    pos = 0
    for e, c in zip(experts.tolist(), counts.tolist(), strict=True):
        idx = order[pos : pos + c]
        pos += c
        if e < 0:
            continue
        tok = idx // k
        xe = x[tok].float()
        h = F.silu(F.linear(xe, w_gate[e].float())) * F.linear(xe, w_up[e].float())
        y = F.linear(h, w_down[e].float()) * expert_weights.reshape(-1)[idx].float()[:, None]
        out.index_add_(0, tok, y)
    return out.to(x.dtype)
