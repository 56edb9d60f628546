"""A teacher-forced forward pass over one token chunk (no scheduler): the fit collects each
layer's FFN inputs with it, and the quality measurements compare logits with it."""

from __future__ import annotations

import torch

from ..model import AttnMetadata, FFNRoute, KVCache, LlamaModel, PrefillSegment


@torch.inference_mode()
def chunk_logits(
    model: LlamaModel, ids: list[int], ffn: FFNRoute | None = None, all_rows: bool = True
) -> torch.Tensor:
    """[n, V] float32 logits of every position of `ids` (the last one only: all_rows=False)."""
    return chunk_forward(model, ids, ffn, all_rows)[0]


@torch.inference_mode()
def chunk_forward(
    model: LlamaModel, ids: list[int], ffn: FFNRoute | None = None, all_rows: bool = True
) -> tuple[torch.Tensor, KVCache]:
    """chunk_logits, and the KV cache the chunk filled (what the KV codebooks are fit on)."""
    n = len(ids)
    kv = KVCache(model.cfg, n, model.kv_dtype, model.device)
    slots = torch.arange(n, device=model.device)
    meta = AttnMetadata(
        slot_mapping=slots, prefills=[PrefillSegment(0, n, slots, fresh=True)], decode_start=n
    )
    inp = torch.tensor(ids, dtype=torch.long, device=model.device)
    rows = None if all_rows else torch.tensor([n - 1], device=model.device)
    return model.forward(inp, slots, meta, kv, rows, ffn=ffn).values.float(), kv


class DenseCapture:
    """An FFN route that computes the dense FFN and keeps each layer's inputs."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self.inputs: list[list[torch.Tensor]] = [[] for _ in model.layers]

    def __call__(self, li: int, h: torch.Tensor) -> torch.Tensor:
        self.inputs[li].append(h.clone())
        _, _, _, _, wgu, wdown = self.model.layers[li]
        return wdown(self.model.ops.silu_mul(wgu(h)))
