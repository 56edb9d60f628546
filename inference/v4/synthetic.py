"""A small synthetic DeepSeek-V4-style model (random initialisation, fixed seed) for load
tests: every residual branch wrapped in a manifold-constrained hyper-connection (mHC, 4
streams), a fine-grained MoE FFN whose active share is a knob (the mode), optional top-k
block-sparse attention (CSA shape), RMSNorm through the kernels' dispatch.

It has the embedded engine's model interface (`cfg`, `device`, `dtype`, `kv_dtype`,
`decode_attention`, `forward(input_ids, positions, meta, kv, logits_rows) -> StepLogits`
over the paged `KVCache` with `AttnMetadata`), so the engine's runner can drive it (the
runner's decode-slots path: `decode_attention` is set, so it builds no decode buffer). Its
vocabulary has the embedded model's size so the same tokenizer can feed it. The weights are
random: its text is noise; it exists to exercise the mechanisms and their cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from inference.gguf_loader import LlamaConfig
from inference.model import AttnMetadata, KVCache, StepLogits
from inference.v4.mhc import HyperConnection, collapse_streams, expand_streams
from kernels import dispatch


@dataclass(frozen=True)
class SparseAttention:
    block_size: int = 64
    top_k: int = 8
    window: int = 128


@dataclass(frozen=True)
class V4Config:
    n_layers: int = 4
    dim: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 32
    ffn_dim: int = 512
    n_experts: int = 16
    vocab_size: int = 49152  # SmolLM2's: the embedded tokenizer can feed it
    context_length: int = 8192
    rope_base: float = 10000.0
    rms_eps: float = 1e-6
    n_streams: int = 4
    constrained: bool = True  # mHC; False: unconstrained hyper-connections
    sparse: SparseAttention | None = None  # None: dense attention
    seed: int = 0

    def llama_config(self) -> LlamaConfig:
        """The shape the engine's KV cache and runner read."""
        return LlamaConfig(
            n_layers=self.n_layers,
            dim=self.dim,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            ffn_dim=self.ffn_dim,
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            rope_base=self.rope_base,
            rms_eps=self.rms_eps,
        )


class SyntheticExperts:
    """The runner-facing expert router (`n_experts`, `route(k_rows)`, the shape of
    inference.moe's): a step's FFN with a per-row number of experts."""

    def __init__(self, model: SyntheticV4Model) -> None:
        self.model = model
        self.n_experts = model.config.n_experts

    def route(self, k_rows: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
        return lambda li, h: self.model.ffn_branch(li, h, k_rows)


def experts_for(fraction: float, n_experts: int) -> int:
    """Active experts per token for an active fraction (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the active expert fraction must lie in (0, 1], got {fraction}")
    return max(1, min(n_experts, round(fraction * n_experts)))


class SyntheticV4Model:
    """See the module docstring. `expert_fraction` is the share of experts each token runs."""

    def __init__(self, config: V4Config | None = None, device: torch.device | str = "cpu") -> None:
        c = config or V4Config()
        if c.ffn_dim % c.n_experts or c.n_heads % c.n_kv_heads:
            raise ValueError("need ffn_dim divisible by n_experts and n_heads by n_kv_heads")
        self.config = c
        self.cfg = c.llama_config()
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.kv_dtype = torch.float32
        self.int4_max_rows = 0
        self.decode_attention = self._paged_decode  # the runner passes slots + lengths
        self.expert_fraction = 1.0
        self.experts = SyntheticExperts(self)
        g = torch.Generator().manual_seed(c.seed)

        def w(*shape: int, fan_in: int) -> torch.Tensor:
            return (torch.randn(*shape, generator=g) * fan_in**-0.5).to(self.device)

        d, hd = c.dim, c.head_dim
        self.embed = w(c.vocab_size, d, fan_in=1)
        self.layers = []
        for _ in range(c.n_layers):
            self.layers.append(
                {
                    "attn_norm": torch.ones(d, device=self.device),
                    "wq": w(c.n_heads * hd, d, fan_in=d),
                    "wk": w(c.n_kv_heads * hd, d, fan_in=d),
                    "wv": w(c.n_kv_heads * hd, d, fan_in=d),
                    "wo": w(d, c.n_heads * hd, fan_in=c.n_heads * hd),
                    "ffn_norm": torch.ones(d, device=self.device),
                    "router": w(c.n_experts, d, fan_in=d),
                    "w_gate": w(c.ffn_dim, d, fan_in=d),
                    "w_up": w(c.ffn_dim, d, fan_in=d),
                    "w_down": w(d, c.ffn_dim, fan_in=c.ffn_dim),
                }
            )
        self.hc = [
            [HyperConnection(d, c.n_streams, c.constrained, generator=g).to(self.device) for _ in range(2)]
            for _ in range(c.n_layers)
        ]
        self.final_norm = torch.ones(d, device=self.device)
        inv = 1.0 / (c.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self._inv_freq = inv.to(self.device)

    # -- accounting ---------------------------------------------------------------------
    def ffn_flops_per_token(self, fraction: float | None = None) -> int:
        """Multiply-adds x 2 of the FFN's active experts (gate, up, down) over all layers,
        plus the router."""
        c = self.config
        k = experts_for(self.expert_fraction if fraction is None else fraction, c.n_experts)
        fe = c.ffn_dim // c.n_experts
        return c.n_layers * (2 * 3 * k * fe * c.dim + 2 * c.n_experts * c.dim)

    def kv_bytes_per_token(self) -> int:
        return KVCache.bytes_per_token(self.cfg, self.kv_dtype)

    # -- branches -----------------------------------------------------------------------
    def _norm(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return dispatch.rmsnorm_residual(h, None, weight, self.config.rms_eps)[0]

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [T, heads, hd], rotate-half layout."""
        ang = positions.float()[:, None] * self._inv_freq[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def ffn_branch(self, li: int, h: torch.Tensor, k_rows: torch.Tensor | None = None) -> torch.Tensor:
        """The MoE FFN: each row runs the router's top experts at weight 1, so that every
        expert selected is exactly the dense SwiGLU FFN. Their count is `k_rows[t]` per row
        (a request's mode), else `expert_fraction` of them for all; a row's unused slots are
        -1, which the kernel skips."""
        c, lw = self.config, self.layers[li]
        y = self._norm(h, lw["ffn_norm"])
        if k_rows is None:
            k_rows = torch.full(
                (y.shape[0],), experts_for(self.expert_fraction, c.n_experts), device=y.device
            )
        k_max = int(k_rows.max()) if k_rows.numel() else 1
        ids = torch.topk(y @ lw["router"].T, k_max, dim=-1).indices
        ids = torch.where(torch.arange(k_max, device=y.device)[None, :] < k_rows[:, None], ids, -1)
        fe = c.ffn_dim // c.n_experts
        return dispatch.moe_swiglu(
            y,
            lw["w_gate"].view(c.n_experts, fe, c.dim),
            lw["w_up"].view(c.n_experts, fe, c.dim),
            lw["w_down"].view(c.dim, c.n_experts, fe).permute(1, 0, 2),
            ids,
            torch.ones(ids.shape, dtype=y.dtype, device=y.device),
        )

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """q [B, H, Tq, hd] (the last Tq positions of each row), k/v [B, KVH, S, hd]."""
        scale = self.config.head_dim**-0.5
        sp = self.config.sparse
        if sp is not None:
            return dispatch.sparse_attention(q, k, v, lens, sp.block_size, sp.top_k, sp.window, scale)[0]
        tq, s = q.shape[2], k.shape[2]
        pos = lens.long()[:, None] - tq + torch.arange(tq, device=q.device)  # [B, Tq]
        mask = torch.arange(s, device=q.device)[None, None, :] <= pos[:, :, None]  # [B, Tq, S]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=scale, enable_gqa=True)

    def _paged_decode(self, q, k_cache, v_cache, slots, lens, scale) -> torch.Tensor:
        """One query per sequence over its cache slots (the runner's decode-attention hook)."""
        b, s = slots.shape
        nkv, hd = k_cache.shape[0], k_cache.shape[2]
        k = torch.index_select(k_cache, 1, slots.reshape(-1)).view(nkv, b, s, hd).transpose(0, 1)
        v = torch.index_select(v_cache, 1, slots.reshape(-1)).view(nkv, b, s, hd).transpose(0, 1)
        return self._attend(q[:, :, None], k, v, lens)[:, :, 0]

    def attention_branch(
        self, li: int, h: torch.Tensor, positions: torch.Tensor, meta: AttnMetadata, kv: KVCache
    ) -> torch.Tensor:
        c, lw = self.config, self.layers[li]
        t, nh, nkv, hd = h.shape[0], c.n_heads, c.n_kv_heads, c.head_dim
        y = self._norm(h, lw["attn_norm"])
        q = self._rope((y @ lw["wq"].T).view(t, nh, hd), positions)
        k = self._rope((y @ lw["wk"].T).view(t, nkv, hd), positions)
        v = (y @ lw["wv"].T).view(t, nkv, hd)
        cache = kv.data[li]
        cache[:nkv, meta.slot_mapping] = k.transpose(0, 1).to(cache.dtype)
        cache[nkv:, meta.slot_mapping] = v.transpose(0, 1).to(cache.dtype)
        out = torch.empty((t, nh, hd), dtype=h.dtype, device=h.device)
        for seg in meta.prefills:
            ctx = seg.kv_slots.shape[0]
            kk = torch.index_select(cache[:nkv], 1, seg.kv_slots)[None]
            vv = torch.index_select(cache[nkv:], 1, seg.kv_slots)[None]
            qq = q[seg.q_start : seg.q_end].transpose(0, 1)[None]
            lens = torch.tensor([ctx], device=h.device)
            out[seg.q_start : seg.q_end] = self._attend(qq, kk, vv, lens)[0].transpose(0, 1)
        ds = meta.decode_start
        if ds < t:
            if meta.decode_slots is None or meta.decode_lens is None:
                raise ValueError("decode rows need decode_slots and decode_lens")
            out[ds:] = self._paged_decode(
                q[ds:], cache[:nkv], cache[nkv:], meta.decode_slots, meta.decode_lens, hd**-0.5
            )
        return out.reshape(t, nh * hd) @ lw["wo"].T

    # -- the step -----------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        meta: AttnMetadata,
        kv: KVCache,
        logits_rows: torch.Tensor | None = None,
        ffn: Callable[[int, torch.Tensor], torch.Tensor] | None = None,  # from `experts.route`
    ) -> StepLogits:
        x = expand_streams(F.embedding(input_ids, self.embed).float(), self.config.n_streams)
        for li in range(self.config.n_layers):
            hc_attn, hc_ffn = self.hc[li]
            x, _ = hc_attn(x, lambda h, li=li: self.attention_branch(li, h, positions, meta, kv))
            x, _ = hc_ffn(x, lambda h, li=li: self.ffn_branch(li, h) if ffn is None else ffn(li, h))
        h = collapse_streams(x)
        if logits_rows is not None:
            h = h[logits_rows]
        h = self._norm(h, self.final_norm) * math.sqrt(1.0 / self.config.dim)
        return StepLogits(h @ self.embed.T)

    def with_config(self, **changes: object) -> SyntheticV4Model:
        """A model of another configuration from the same seed (same weights where shapes
        agree): for example `sparse=SparseAttention(...)` or `constrained=False`."""
        return SyntheticV4Model(replace(self.config, **changes), self.device)  # type: ignore[arg-type]
