"""Llama forward pass over a flat batch of tokens with a paged KV cache.

The batch mixes prefill chunks and decode tokens: linear layers run once over all tokens;
attention runs per prefill chunk (SDPA) and once for all decode tokens together (KV gathered
from the pages, padded, masked). Weights come from `gguf_loader` in HF layout (rotate-half
rope); the 1/sqrt(head_dim) softmax scale is folded into the q projection (exact: 1/8).

KV cache layout per layer: [2 * n_kv_heads, slots, head_dim] (keys, then values), so one
gather serves both and the batched matmuls need no copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .decode_buffer import DecodeBuffer
from .gguf_loader import LlamaConfig
from .layer_ops import FusedCpuLayerOps, TorchLayerOps
from .quant import Q4_1Weight, QLinear, q8_0_dequantize_rows, q8_0_rows

if TYPE_CHECKING:
    from .hca.codec import KVCodec

REFINE_TOP_K = 16  # logits recomputed exactly (fp32) per row after the bf16 output GEMM


@dataclass
class StepLogits:
    values: torch.Tensor  # [S, V] float32
    # [S, k] ids per row whose values were recomputed exactly (bf16 compute only): the row's
    # top-k by the bf16 GEMM, so the row's maximum is among them (a greedy step reads k
    # values instead of the whole vocabulary)
    exact_top: torch.Tensor | None = None


@dataclass
class PrefillSegment:
    q_start: int  # rows of the flat batch holding this chunk's queries
    q_end: int
    kv_slots: torch.Tensor  # [ctx] slots of the whole context so far (cached + this chunk)
    fresh: bool  # True when the chunk is the whole context (no cached prefix): causal SDPA
    mask: torch.Tensor | None = None  # [n, ctx] bool, bottom-right causal (not fresh)


@dataclass
class AttnMetadata:
    slot_mapping: torch.Tensor  # [T] where each token's k/v is written
    prefills: list[PrefillSegment] = field(default_factory=list)
    decode_start: int = 0  # flat rows decode_start: are decode tokens (one per sequence)
    decode_slots: torch.Tensor | None = None  # [B, Lmax] gathered slots (padded), no buffer
    decode_lens: torch.Tensor | None = None  # [B] int32 context lengths, no buffer
    decode_bias: torch.Tensor | None = None  # 0 / -inf over Lmax, model dtype (see runner)
    # decode through the DecodeBuffer: rows [0, B) hold the decoding sequences in order
    buf: DecodeBuffer | None = None
    buf_write: torch.Tensor | None = None  # [B * nkv] flat rows of v[l].view(-1, hd)
    buf_write_k: torch.Tensor | None = None  # flat index into k[l].view(-1) (either layout)
    buf_len: int = 0  # Lmax


class KVCache:
    """All layers' keys and values: [n_layers, 2 * n_kv_heads, num_slots, head_dim]; with a
    codec (HCA, `inference.hca`) their codes instead: [n_layers, 2 * n_kv_heads, num_slots,
    n_sub] uint8, and attention reads what the codes decode to."""

    def __init__(
        self,
        cfg: LlamaConfig,
        num_slots: int,
        dtype: torch.dtype,
        device: torch.device,
        codec: KVCodec | None = None,
    ):
        width, store = (cfg.head_dim, dtype) if codec is None else (codec.n_sub, torch.uint8)
        shape = (cfg.n_layers, 2 * cfg.n_kv_heads, num_slots, width)
        self.data = torch.zeros(shape, dtype=store, device=device)
        self.num_slots = num_slots
        self.codec = codec

    @staticmethod
    def bytes_per_token(cfg: LlamaConfig, dtype: torch.dtype, codec: KVCodec | None = None) -> int:
        if codec is not None:
            return codec.bytes_per_token()
        elt = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * elt


def _as_tensor(w: torch.Tensor | Q4_1Weight) -> torch.Tensor:
    return torch.from_numpy(w.dequantize()) if isinstance(w, Q4_1Weight) else w


def _cat(ws: list[torch.Tensor | Q4_1Weight]) -> torch.Tensor | Q4_1Weight:
    if all(isinstance(w, Q4_1Weight) for w in ws):
        return Q4_1Weight.cat(ws)  # type: ignore[arg-type]
    return torch.cat([_as_tensor(w) for w in ws])


# One layer's FFN for a step that routes it (`inference.moe`): (layer index, normed input
# [T, dim] in the compute dtype) -> the FFN output [T, dim]; None = the dense FFN.
FFNRoute = Callable[[int, torch.Tensor], torch.Tensor]

PagedAttention = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor
]


def paged_attention_kernel(device: torch.device) -> PagedAttention | None:
    """The decode-attention kernel for `device` (contract: kernels.decode_attention_ref), or
    None where none runs: Triton on CUDA (when importable), C++ on the CPU (when it builds)."""
    if device.type == "cuda":
        from kernels import decode_attention

        return decode_attention.paged_decode_attention if decode_attention.available(device) else None
    if device.type == "cpu":
        from kernels import cpu_ops

        return cpu_ops.paged_decode_attention if cpu_ops.load() else None
    return None


def prefill_attention_kernel(device: torch.device, dtype: torch.dtype, cfg: LlamaConfig) -> Callable | None:
    if device.type != "cpu":
        return None
    from kernels import cpu_ops

    usable = cpu_ops.prefill_attention_usable(dtype, cfg.head_dim, cfg.n_heads // cfg.n_kv_heads)
    return cpu_ops.prefill_attention if usable else None


def head_gemv_kernel(device: torch.device, dtype: torch.dtype, cfg: LlamaConfig) -> Callable | None:
    """The output projection for a few rows in fp32 (C++, bf16 on AVX-512 BF16 CPUs)."""
    if device.type != "cpu":
        return None
    from kernels import cpu_ops

    return cpu_ops.head_gemv if cpu_ops.head_gemv_usable(dtype, cfg.dim) else None


class LlamaModel:
    """Plain-tensor Llama (no nn.Module bookkeeping: fewer Python calls per token)."""

    def __init__(
        self,
        cfg: LlamaConfig,
        tensors: dict[str, torch.Tensor | Q4_1Weight],
        dtype: torch.dtype,
        device: torch.device,
        int4_max_rows: int = 4,
        kernels: bool = True,  # False: PyTorch ops even where a kernel runs
        weight_dtype: torch.dtype | None = None,  # bf16 under fp32 compute; default: dtype
    ) -> None:
        self.cfg = cfg
        # decode attention straight from the KV pages where a kernel runs (see
        # `paged_attention_kernel`); otherwise PyTorch ops (on the CPU, over a decode buffer)
        self.decode_attention = paged_attention_kernel(device) if kernels else None
        # prefill attention from the KV pages (C++, bf16 on AVX-512 BF16 CPUs); else SDPA
        self.prefill_attention = prefill_attention_kernel(device, dtype, cfg) if kernels else None
        self.dtype = dtype
        self.weight_dtype = weight_dtype or dtype
        self.device = device
        self.int4_max_rows = int4_max_rows
        hd = cfg.head_dim
        qscale = hd**-0.5

        def norm_w(name: str) -> torch.Tensor:  # norms run on the fp32 residual stream
            return _as_tensor(tensors[name]).to(device=device, dtype=torch.float32).contiguous()

        wdt = self.weight_dtype

        def lin(t: torch.Tensor | Q4_1Weight) -> QLinear:
            return QLinear(t, dtype, device, int4_max_rows, weight_dtype=wdt, kernel=kernels)

        # looked up, not multiplied: held in the weights' dtype, widened per token
        self.embed = _as_tensor(tensors["token_embd.weight"]).to(device=device, dtype=self.weight_dtype)
        head = _as_tensor(tensors.get("output.weight", tensors["token_embd.weight"]))
        # Q8_0 in the file; a per-row int8 copy moved tail logits by up to ~0.5 (sampling
        # quality), so it stays dense; the plain copy is for the bf16 path's refine step and
        # head kernel (fp32 logits need neither)
        keep = dtype != torch.float32
        self.lm_head = QLinear(head, dtype, device, 0, keep_dense=keep, weight_dtype=wdt, kernel=kernels)
        self.final_norm = norm_w("output_norm.weight")
        self.layers = []
        for i in range(cfg.n_layers):
            p = f"blk.{i}."
            q = tensors[p + "attn_q.weight"]
            q = q.scale(qscale) if isinstance(q, Q4_1Weight) else q * qscale
            qkv = _cat([q, tensors[p + "attn_k.weight"], tensors[p + "attn_v.weight"]])
            gate_up = _cat([tensors[p + "ffn_gate.weight"], tensors[p + "ffn_up.weight"]])
            self.layers.append(
                (
                    norm_w(p + "attn_norm.weight"),
                    lin(qkv),
                    lin(tensors[p + "attn_output.weight"]),
                    norm_w(p + "ffn_norm.weight"),
                    lin(gate_up),
                    lin(tensors[p + "ffn_down.weight"]),
                )
            )
        inv = 1.0 / (cfg.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        t = torch.arange(cfg.context_length, dtype=torch.float64)
        freqs = torch.outer(t, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        # fp32 tables: rope is computed in fp32 and rounded once, like a matmul would
        self.cos = emb.cos().to(device=device, dtype=torch.float32)
        # rotate_half(x) = cat(-x2, x1) = swap(x) * [-1, +1]: the sign is folded into sin
        sign = torch.cat([-torch.ones(hd // 2), torch.ones(hd // 2)]).to(torch.float64)
        self.sin_signed = (emb.sin() * sign).to(device=device, dtype=torch.float32)
        self.head_gemv = head_gemv_kernel(device, dtype, cfg) if kernels else None
        # the file's Q8_0 head blocks, where the few-rows kernel runs: 30 MB a decode step
        # instead of the bf16 copy's 56, and the file's values exactly (the bf16 copy rounds
        # d q to 8 bits); the refine step reads them too, so both paths score alike
        self.head_q8 = q8_0_rows(head) if self.head_gemv is not None else None
        if self.head_q8 is not None:
            from kernels import cpu_ops

            self.head_gemv = cpu_ops.q8_gemv
        self.head_w = self.head_q8 if self.head_q8 is not None else self.lm_head.dense
        fused = kernels and FusedCpuLayerOps.usable(device, dtype, hd)
        self.ops = (FusedCpuLayerOps if fused else TorchLayerOps)(
            dtype, cfg.rms_eps, self.cos, self.sin_signed
        )
        # bf16 weights under fp32 compute keep the KV cache in bf16 too (half the bytes a decode
        # step reads, twice the tokens per byte of cache) where the C++ kernels write and read it
        narrow_kv = self.weight_dtype == torch.bfloat16 and dtype == torch.float32
        self.kv_dtype = torch.bfloat16 if narrow_kv and fused and self.decode_attention is not None else dtype

    def forward(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        meta: AttnMetadata,
        kv: KVCache,
        logits_rows: torch.Tensor | None,  # [S] flat rows whose logits are wanted; None = all
        ffn: FFNRoute | None = None,  # routed experts (inference.moe); None = dense
    ) -> StepLogits:
        cfg = self.cfg
        nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        g = nh // nkv
        T = input_ids.shape[0]
        dt = self.dtype
        ops = self.ops
        codec = kv.codec
        # the residual stream stays fp32 (bf16 accumulation over 30 layers swaps near-tied
        # top tokens); matmul inputs are rounded to the compute dtype
        x = F.embedding(input_ids, self.embed).float()
        rope = ops.rope_tables(positions)
        qk_heads = nh + nkv
        slots = meta.slot_mapping
        ds = meta.decode_start
        dec_slots = meta.decode_slots
        buf = meta.buf
        n_dec = T - ds if (dec_slots is not None or buf is not None) else 0
        only_decode = n_dec == T
        single_prefill = not n_dec and len(meta.prefills) == 1
        last = len(self.layers) - 1
        h = ops.norm(x, self.layers[0][0])
        for li, (_, wqkv, wo, ffn_norm, wgu, wdown) in enumerate(self.layers):
            qkv = wqkv(h).view(T, qk_heads + nkv, hd)
            cache = kv.data[li]
            if codec is None:
                qk = ops.rope_store(qkv, rope, cache, slots, nh)  # also stores k and v in the pages
                k = qk[:, nh:]
                v = qkv[:, qk_heads:]
            else:  # the pages store codes; attention reads what they decode to, everywhere
                qk = ops.rope(qkv, rope, nh)
                codes, k, v = codec.roundtrip(li, qk[:, nh:], qkv[:, qk_heads:], dt)
                cache.index_copy_(1, slots, codes)
            q = qk[:, :nh]
            if buf is not None and n_dec:
                assert meta.buf_write is not None and meta.buf_write_k is not None
                buf.k[li].view(-1).index_copy_(0, meta.buf_write_k, k[ds:].reshape(-1).to(buf.key_dtype))
                buf.v[li].view(-1, hd).index_copy_(0, meta.buf_write, v[ds:].reshape(-1, hd))
            if only_decode:
                out = self._decode(q, cache, meta, li, nkv, g, codec)
            elif single_prefill:
                out = self._prefill_attn(q, k, v, cache, meta.prefills[0], nkv, li, codec)
            else:
                out = torch.empty((T, nh * hd), dtype=dt, device=x.device)
                for seg in meta.prefills:
                    s, e = seg.q_start, seg.q_end
                    out[s:e] = self._prefill_attn(q[s:e], k[s:e], v[s:e], cache, seg, nkv, li, codec)
                if n_dec:
                    out[ds:] = self._decode(q[ds:], cache, meta, li, nkv, g, codec)
            h = ops.add_norm(x, wo(out), ffn_norm)
            y = wdown(ops.silu_mul(wgu(h))) if ffn is None else ffn(li, h)
            if li < last:
                h = ops.add_norm(x, y, self.layers[li + 1][0])
            else:
                x.add_(y)
        if logits_rows is not None:
            x = x[logits_rows]
        if x.shape[0] == 0:
            # a step that samples nothing (a prefill chunk short of its prompt's end): no
            # head to run, and the few-rows head kernel takes 1 to 4 rows, not 0
            return StepLogits(torch.empty((0, self.embed.shape[0]), dtype=torch.float32, device=x.device))
        x = ops.norm(x, self.final_norm)
        if self.head_gemv is not None and x.shape[0] <= self.int4_max_rows:
            # few rows (the int4 kernel's batches): fp32 dot products, no rounded logits to
            # refine
            assert self.head_w is not None
            return StepLogits(self.head_gemv(x, self.head_w))
        raw = self.lm_head(x)
        if self.dtype == torch.float32:
            return StepLogits(raw)
        # top-k on the GEMM's own bf16 output: half the bytes of the widened logits
        logits, top = ops.logits_topk(raw, min(REFINE_TOP_K, raw.shape[-1]))
        self._refine_top(logits, top, x)
        return StepLogits(logits, top)

    def _refine_top(self, logits: torch.Tensor, top: torch.Tensor, x: torch.Tensor) -> None:
        """A bf16 GEMM rounds its output to bf16: logits near 25 land on a 0.125 grid, which
        ties or swaps the top tokens (greedy then depends on kernel choice). Recompute the
        top-k logits of each row ([S, k] ids) exactly (fp32 dot products of the file's Q8_0
        values where the few-rows head reads them, else of the same bf16 values)."""
        if self.head_q8 is not None:
            w = q8_0_dequantize_rows(self.head_q8, top)  # [S, k, dim], the file's values
        else:
            assert self.lm_head.dense is not None
            w = self.lm_head.dense[top].float()  # [S, k, dim]
        exact = torch.bmm(w, x.float().unsqueeze(-1)).squeeze(-1)
        logits.scatter_(1, top, exact)

    def _prefill_attn(
        self, q, k, v, cache, seg: PrefillSegment, nkv: int, li: int, codec: KVCodec | None
    ) -> torch.Tensor:
        n = q.shape[0]
        if codec is not None:
            return self._prefill_attn_codes(q, k, v, cache, seg, nkv, li, codec)
        if self.prefill_attention is not None:  # the chunk's keys and values are in the pages
            return self.prefill_attention(q, cache[:nkv], cache[nkv:], seg.kv_slots, 1.0)
        qs = q.transpose(0, 1).unsqueeze(0)  # [1, nh, n, hd]
        if self.kv_dtype != self.dtype:  # attend to the keys and values as the cache holds them
            k, v = k.to(self.kv_dtype).to(self.dtype), v.to(self.kv_dtype).to(self.dtype)
        if seg.fresh:
            o = F.scaled_dot_product_attention(
                qs,
                k.transpose(0, 1).unsqueeze(0),
                v.transpose(0, 1).unsqueeze(0),
                is_causal=True,
                enable_gqa=True,
                scale=1.0,
            )
        else:
            kvs = torch.index_select(cache, 1, seg.kv_slots).to(q.dtype)  # [2 nkv, ctx, hd]
            if seg.mask is None:
                ctx = kvs.shape[1]
                seg.mask = torch.ones((n, ctx), dtype=torch.bool, device=q.device).tril(ctx - n)
            o = F.scaled_dot_product_attention(
                qs,
                kvs[:nkv].unsqueeze(0),
                kvs[nkv:].unsqueeze(0),
                attn_mask=seg.mask,
                enable_gqa=True,
                scale=1.0,
            )
        return o[0].transpose(0, 1).reshape(n, -1)

    def _prefill_attn_codes(
        self, q, k, v, cache, seg: PrefillSegment, nkv: int, li: int, codec: KVCodec
    ) -> torch.Tensor:
        """Prefill attention over the compressed cache: the context's keys and values decoded
        from their codes (a fresh chunk's own k, v are already decoded), one explicitly masked
        SDPA either way, so a row's result does not depend on how the prompt was chunked or
        cached (a prefix-cache hit answers as a cold run)."""
        n = q.shape[0]
        if seg.fresh:
            keys, values = k.transpose(0, 1), v.transpose(0, 1)
        else:
            keys, values = codec.decode(li, torch.index_select(cache, 1, seg.kv_slots), q.dtype)
        ctx = keys.shape[1]
        if seg.mask is None:
            seg.mask = torch.ones((n, ctx), dtype=torch.bool, device=q.device).tril(ctx - n)
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            keys.unsqueeze(0),
            values.unsqueeze(0),
            attn_mask=seg.mask,
            enable_gqa=True,
            scale=1.0,
        )
        return o[0].transpose(0, 1).reshape(n, -1)

    def _decode_codes(self, q, cache, meta: AttnMetadata, li: int, codec: KVCodec) -> torch.Tensor:
        """Decode attention straight from the codes, by lookup tables (`kernels.pq_attention`:
        Triton on CUDA, its PyTorch twin elsewhere); no key or value is decoded."""
        from kernels.dispatch import pq_decode_attention

        B, nh, hd = q.shape
        assert meta.decode_slots is not None and meta.decode_lens is not None
        kb, vb = codec.lut_books(li)
        qp = q.index_select(-1, codec.order)  # the key books' dim order
        nkv = cache.shape[0] // 2
        o = pq_decode_attention(
            qp, cache[:nkv], kb, cache[nkv:], vb, meta.decode_slots, meta.decode_lens, 1.0
        )
        return o.reshape(B, nh * hd)

    def _decode(
        self, q, cache, meta: AttnMetadata, li: int, nkv: int, g: int, codec: KVCodec | None = None
    ) -> torch.Tensor:
        B, nh, hd = q.shape
        qd = q.view(B, nkv, g, hd)
        buf = meta.buf
        if codec is not None and buf is None:
            if meta.decode_lens is not None:
                return self._decode_codes(q, cache, meta, li, codec)
            assert meta.decode_slots is not None  # decompress, then the padded SDPA below
            keys, values = codec.decode(li, torch.index_select(cache, 1, meta.decode_slots.view(-1)), q.dtype)
            o = F.scaled_dot_product_attention(
                qd,
                keys.view(nkv, B, -1, hd).transpose(0, 1),
                values.view(nkv, B, -1, hd).transpose(0, 1),
                attn_mask=meta.decode_bias,
                scale=1.0,
            )
            return o.reshape(B, nh * hd)
        if buf is not None and buf.transposed:
            # fp32 scores against transposed fp32 keys: one plain batched matmul
            L = meta.buf_len
            scores = torch.matmul(qd.to(buf.key_dtype), buf.k[li, :B, :, :, :L])
            assert meta.decode_bias is not None
            scores += meta.decode_bias
            probs = torch.softmax(scores, dim=-1).to(q.dtype)
            return torch.matmul(probs, buf.v[li, :B, :, :L]).reshape(B, nh * hd)
        if buf is not None:
            L = meta.buf_len
            keys = buf.k[li, :B, :, :L]  # [B, nkv, L, hd], strided view
            values = buf.v[li, :B, :, :L]
        elif meta.decode_lens is not None:
            assert self.decode_attention is not None and meta.decode_slots is not None
            o = self.decode_attention(q, cache[:nkv], cache[nkv:], meta.decode_slots, meta.decode_lens, 1.0)
            return o.reshape(B, nh * hd)
        else:
            slots = meta.decode_slots
            assert slots is not None
            kvs = torch.index_select(cache, 1, slots.view(-1)).view(2 * nkv, B, -1, hd)
            keys = kvs[:nkv].transpose(0, 1)
            values = kvs[nkv:].transpose(0, 1)
        # the g query heads sharing a kv head act as g query positions (no causal mask)
        o = F.scaled_dot_product_attention(
            qd, keys, values, attn_mask=meta.decode_bias, scale=1.0
        )  # [B, nkv, g, hd]
        return o.reshape(B, nh * hd)
