"""Llama forward pass over a flat batch of tokens with a paged KV cache.

The batch mixes prefill chunks and decode tokens: linear layers run once over all tokens;
attention runs per prefill chunk (SDPA) and once for all decode tokens together (gathered
KV, padded, masked). Weights come from `gguf_loader` in HF layout (rotate-half rope).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .gguf_loader import LlamaConfig


@dataclass
class PrefillSegment:
    q_start: int  # rows of the flat batch holding this chunk's queries
    q_end: int
    kv_slots: torch.Tensor  # [ctx] slots of the whole context so far (cached + this chunk)
    fresh: bool  # True when the chunk is the whole context (no cached prefix): causal SDPA


@dataclass
class AttnMetadata:
    slot_mapping: torch.Tensor  # [T] where each token's k/v is written
    prefills: list[PrefillSegment] = field(default_factory=list)
    decode_start: int = 0  # flat rows decode_start: are decode tokens (one per sequence)
    decode_slots: torch.Tensor | None = None  # [B, Lmax] gathered slots (padded)
    decode_bias: torch.Tensor | None = None  # [B, 1, 1, Lmax] 0 or -inf


class KVCache:
    """Per-layer key and value storage, [num_slots, n_kv_heads, head_dim] each."""

    def __init__(self, cfg: LlamaConfig, num_slots: int, dtype: torch.dtype, device: torch.device):
        shape = (cfg.n_layers, num_slots, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_slots = num_slots

    @staticmethod
    def bytes_per_token(cfg: LlamaConfig, dtype: torch.dtype) -> int:
        elt = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * elt


class LlamaModel:
    """Plain-tensor Llama (no nn.Module bookkeeping: fewer Python calls per token)."""

    def __init__(
        self,
        cfg: LlamaConfig,
        tensors: dict[str, torch.Tensor],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.cfg = cfg
        self.dtype = dtype
        self.device = device

        def w(name: str) -> torch.Tensor:
            return tensors[name].to(device=device, dtype=dtype).contiguous()

        self.embed = w("token_embd.weight")
        self.lm_head = w("output.weight") if "output.weight" in tensors else self.embed
        self.final_norm = w("output_norm.weight")
        self.layers = []
        for i in range(cfg.n_layers):
            p = f"blk.{i}."
            qkv = torch.cat(
                [tensors[p + "attn_q.weight"], tensors[p + "attn_k.weight"],
                 tensors[p + "attn_v.weight"]], dim=0,
            )
            gate_up = torch.cat([tensors[p + "ffn_gate.weight"], tensors[p + "ffn_up.weight"]])
            self.layers.append(
                (
                    w(p + "attn_norm.weight"),
                    qkv.to(device=device, dtype=dtype).contiguous(),
                    w(p + "attn_output.weight"),
                    w(p + "ffn_norm.weight"),
                    gate_up.to(device=device, dtype=dtype).contiguous(),
                    w(p + "ffn_down.weight"),
                )
            )
        hd = cfg.head_dim
        inv = 1.0 / (cfg.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        t = torch.arange(cfg.context_length, dtype=torch.float64)
        freqs = torch.outer(t, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos = emb.cos().to(device=device, dtype=dtype)
        self.sin = emb.sin().to(device=device, dtype=dtype)
        self.scale = hd**-0.5

    def forward(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        meta: AttnMetadata,
        kv: KVCache,
        logits_rows: torch.Tensor,  # [S] flat rows whose logits are wanted
    ) -> torch.Tensor:
        cfg = self.cfg
        nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        g = nh // nkv
        T = input_ids.shape[0]
        eps = cfg.rms_eps
        x = F.embedding(input_ids, self.embed)
        cos = self.cos[positions].unsqueeze(1)  # [T, 1, hd]
        sin = self.sin[positions].unsqueeze(1)
        half = hd // 2
        qk_heads = nh + nkv
        slot_mapping = meta.slot_mapping
        ds = meta.decode_start
        n_dec = T - ds if meta.decode_slots is not None else 0
        for li, (attn_norm, wqkv, wo, ffn_norm, wgu, wdown) in enumerate(self.layers):
            h = F.rms_norm(x, (cfg.dim,), attn_norm, eps)
            qkv = F.linear(h, wqkv)  # [T, (nh + 2 nkv) hd]
            qk = qkv[:, : qk_heads * hd].view(T, qk_heads, hd)
            rot = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)
            qk = qk * cos + rot * sin
            q = qk[:, :nh]
            k = qk[:, nh:]
            v = qkv[:, qk_heads * hd :].view(T, nkv, hd)
            kc = kv.k[li]
            vc = kv.v[li]
            kc.index_copy_(0, slot_mapping, k)
            vc.index_copy_(0, slot_mapping, v)
            out = torch.empty((T, nh, hd), dtype=x.dtype, device=x.device)
            for seg in meta.prefills:
                s, e = seg.q_start, seg.q_end
                qs = q[s:e].transpose(0, 1).unsqueeze(0)  # [1, nh, n, hd]
                if seg.fresh:
                    ks = k[s:e].transpose(0, 1).unsqueeze(0)
                    vs = v[s:e].transpose(0, 1).unsqueeze(0)
                    o = F.scaled_dot_product_attention(
                        qs, ks, vs, is_causal=True, enable_gqa=True, scale=self.scale
                    )
                else:
                    ks = kc[seg.kv_slots].transpose(0, 1).unsqueeze(0)
                    vs = vc[seg.kv_slots].transpose(0, 1).unsqueeze(0)
                    n, ctx = e - s, seg.kv_slots.shape[0]
                    mask = torch.ones((n, ctx), dtype=torch.bool, device=x.device).tril(ctx - n)
                    o = F.scaled_dot_product_attention(
                        qs, ks, vs, attn_mask=mask, enable_gqa=True, scale=self.scale
                    )
                out[s:e] = o[0].transpose(0, 1)
            if n_dec:
                assert meta.decode_slots is not None and meta.decode_bias is not None
                qd = q[ds:].reshape(n_dec, nkv, g, hd)
                kd = kc[meta.decode_slots]  # [B, L, nkv, hd]
                vd = vc[meta.decode_slots]
                scores = torch.matmul(qd, kd.permute(0, 2, 3, 1)) * self.scale
                scores = scores.float() + meta.decode_bias
                probs = torch.softmax(scores, dim=-1).to(x.dtype)
                od = torch.matmul(probs, vd.permute(0, 2, 1, 3))  # [B, nkv, g, hd]
                out[ds:] = od.reshape(n_dec, nh, hd)
            x = x + F.linear(out.view(T, nh * hd), wo)
            h = F.rms_norm(x, (cfg.dim,), ffn_norm, eps)
            gu = F.linear(h, wgu)
            x = x + F.linear(F.silu(gu[:, : cfg.ffn_dim]) * gu[:, cfg.ffn_dim :], wdown)
        x = x[logits_rows]
        x = F.rms_norm(x, (cfg.dim,), self.final_norm, eps)
        return F.linear(x, self.lm_head).float()
