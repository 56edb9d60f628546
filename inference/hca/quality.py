"""Teacher-forced agreement of the compressed cache with the dense one: next-token top-1 and
mean KL(dense || compressed) over token chunks (held-out text, never the calibration text)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import AttnMetadata, FFNRoute, KVCache, LlamaModel, PrefillSegment
from .codec import KVCodec


@torch.inference_mode()
def chunk_logits(
    model: LlamaModel, ids: list[int], codec: KVCodec | None = None, ffn: FFNRoute | None = None
) -> torch.Tensor:
    """[n, V] float32 logits of every position of `ids` through a cache of its own (codes with
    a codec), one prefill; `ffn` routes the FFN (inference.moe), None = dense."""
    n = len(ids)
    kv = KVCache(model.cfg, n, model.kv_dtype, model.device, codec)
    slots = torch.arange(n, device=model.device)
    meta = AttnMetadata(
        slot_mapping=slots, prefills=[PrefillSegment(0, n, slots, fresh=True)], decode_start=n
    )
    inp = torch.tensor(ids, dtype=torch.long, device=model.device)
    return model.forward(inp, slots, meta, kv, None, ffn=ffn).values.float()


def kv_agreement(model: LlamaModel, codec: KVCodec, chunks: list[list[int]]) -> tuple[float, float]:
    """(top-1 agreement, mean KL) of the compressed cache against the dense one."""
    agree, kl = [], []
    for ids in chunks:
        lp = F.log_softmax(chunk_logits(model, ids), dim=-1)
        lq = F.log_softmax(chunk_logits(model, ids, codec), dim=-1)
        agree.append((lq.argmax(-1) == lp.argmax(-1)).float())
        kl.append((lp.exp() * (lp - lq)).sum(-1))
    return torch.cat(agree).mean().item(), torch.cat(kl).mean().item()
