"""Sparse attention (the CSA shape: an indexer picks key blocks, attention over those plus a
local window) measured on a real model: teacher-forced agreement with dense attention and
the keys each query attends to, at growing context.

`sparse_prefill(model, ...)` swaps the model's prefill attention for
`kernels.dispatch.sparse_attention` for the duration of a `with` block (on that model object
only; no engine file changes). It replaces the private `LlamaModel._prefill_attn(q, k, v,
cache, seg, nkv)` hook, whose queries arrive pre-scaled (the model attends with scale 1):
if that method's signature changes, this module has to follow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from inference.model import AttnMetadata, KVCache, PrefillSegment
from kernels import dispatch
from kernels.block_sparse_attention_ref import local_start


@contextmanager
def sparse_prefill(
    model: Any, block_size: int, top_k: int, window: int, sink_blocks: int = 1
) -> Iterator[None]:
    def attend(q, k, v, cache, seg: PrefillSegment, nkv: int, *_layer_codec: Any) -> torch.Tensor:
        # (the layer index and KV codec that LlamaModel also passes: the dense cache here)
        n = q.shape[0]
        if seg.fresh:  # the chunk is the whole context
            kk, vv = k.transpose(0, 1), v.transpose(0, 1)
        else:
            kvs = torch.index_select(cache, 1, seg.kv_slots)
            kk, vv = kvs[:nkv], kvs[nkv:]
        ctx = kk.shape[1]
        lens = torch.tensor([ctx], device=q.device)
        out, _ = dispatch.sparse_attention(
            q.transpose(0, 1)[None],
            kk[None].to(q.dtype),
            vv[None].to(q.dtype),
            lens,
            block_size,
            top_k,
            window,
            1.0,
            sink_blocks,
        )
        return out[0].transpose(0, 1).reshape(n, -1).to(q.dtype)

    setattr(model, "_prefill_attn", attend)  # noqa: B010 - an instance attribute shadows the method
    try:
        yield
    finally:
        del model._prefill_attn


def attended_per_query(positions: torch.Tensor, block_size: int, top_k: int, window: int) -> torch.Tensor:
    """Keys a query at each position attends to: the local window (from its block edge) plus
    min(top_k, complete blocks before it) blocks."""
    ls = local_start(positions, window, block_size)
    return torch.clamp(ls // block_size, max=top_k) * block_size + positions + 1 - ls


@torch.inference_mode()
def prefill_logits(model: Any, ids: list[int], rows: int) -> tuple[torch.Tensor, float]:
    """Teacher-forced logits of the last `rows` positions from one fresh prefill of `ids`
    (fp32 [rows, V]) and the prefill's seconds."""
    n = len(ids)
    kv = KVCache(model.cfg, n, model.kv_dtype, model.device)
    slots = torch.arange(n, device=model.device)
    meta = AttnMetadata(
        slot_mapping=slots, prefills=[PrefillSegment(0, n, slots, fresh=True)], decode_start=n
    )
    want = torch.arange(n - rows, n, device=model.device)
    t0 = time.perf_counter()
    out = model.forward(torch.tensor(ids, device=model.device), slots, meta, kv, want)
    return out.values.float(), time.perf_counter() - t0


def compare(dense: torch.Tensor, sparse: torch.Tensor) -> dict[str, float]:
    """Next-token top-1 agreement and mean KL(dense || sparse) in nats."""
    lp, lq = torch.log_softmax(dense, -1), torch.log_softmax(sparse, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return {"top1": float((dense.argmax(-1) == sparse.argmax(-1)).float().mean()), "kl": float(kl.mean())}


def sparse_attention_report(
    model: Any,
    ids: list[int],
    contexts: tuple[int, ...] = (1024, 4096, 8192),
    block_size: int = 64,
    top_k: int = 8,
    window: int = 128,
    rows: int = 128,
    progress: Callable[[str], None] | None = None,
    sink_blocks: int = 1,
) -> dict[str, Any]:
    """Per context n (the first n tokens of `ids`): agreement of the last `rows` positions'
    next-token distributions with dense attention, the keys attended per query there (mean)
    against n, and both prefills' seconds."""
    out: dict[str, Any] = {
        "block_size": block_size,
        "top_k": top_k,
        "window": window,
        "rows": rows,
        "sink_blocks": sink_blocks,
    }
    for n in contexts:
        if n > len(ids):
            raise ValueError(f"need {n} tokens of text, have {len(ids)}")
        dense, t_dense = prefill_logits(model, ids[:n], rows)
        with sparse_prefill(model, block_size, top_k, window, sink_blocks):
            sparse, t_sparse = prefill_logits(model, ids[:n], rows)
        attended = attended_per_query(torch.arange(n - rows, n), block_size, top_k, window).float()
        out[str(n)] = {
            **compare(dense, sparse),
            "attended_mean": float(attended.mean()),
            "attended_share": float(attended.mean()) / n,
            "prefill_s_dense": t_dense,
            "prefill_s_sparse": t_sparse,
        }
        if progress is not None:
            progress(f"context {n}: {out[str(n)]}")
    return out
