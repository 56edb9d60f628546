"""Turn a scheduler step into tensors, run the model, return the logits to sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .decode_buffer import DecodeBuffer
from .model import AttnMetadata, FFNRoute, KVCache, LlamaModel, PrefillSegment, StepLogits
from .moe.experts import experts_for
from .scheduler import SchedulerOutput

if TYPE_CHECKING:
    from .hca.codec import KVCodec
    from .moe import RoutedFFN


class ModelRunner:
    def __init__(
        self,
        model: LlamaModel,
        num_blocks: int,
        block_size: int,
        decode_buffer_bytes: int = 1 << 30,
        experts: RoutedFFN | None = None,
        codec: KVCodec | None = None,
        pq_attention: str = "buffer",
    ) -> None:
        self.model = model
        self.experts = experts  # routes the FFN of steps with expert fractions
        self.block_size = block_size
        self.device = model.device
        # codec: the pages hold product-quantized codes (HCA); decode attention then runs over
        # decoded rows in the decode buffer ("buffer"), from the codes by lookup tables
        # ("codes"), or over codes decoded every step ("decompress")
        self.codec = codec
        self.pq_attention = pq_attention
        self.kv = KVCache(model.cfg, num_blocks * block_size, model.kv_dtype, model.device, codec)
        use_buf = model.decode_attention is None if codec is None else pq_attention == "buffer"
        self.buf = (  # a copy of the pages for the CPU; the decode kernel reads the pages
            DecodeBuffer(model.cfg, model.dtype, model.device, decode_buffer_bytes)
            if decode_buffer_bytes > 0 and use_buf
            else None
        )
        # decode attention reads the pages itself, given each sequence's length
        self._paged_decode = model.decode_attention is not None if codec is None else pq_attention == "codes"
        self._arange_bs = torch.arange(block_size, dtype=torch.long)

    def _slots(self, blocks: list[int], start: int, end: int) -> torch.Tensor:
        """Cache slots of token positions [start, end) of a sequence."""
        bs = self.block_size
        b0, b1 = start // bs, -(-end // bs)
        bt = torch.tensor(blocks[b0:b1], dtype=torch.long)
        slots = (bt[:, None] * bs + self._arange_bs).flatten()
        off = start - b0 * bs
        return slots[off : off + end - start]

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> StepLogits | None:
        """Run one step; returns the [S, V] float32 logits (and each row's exact top-k) for the
        items with sample=True (in out.items order, which this call may reorder), or None when
        nothing is sampled."""
        dev = self.device
        ids: list[int] = []
        pos: list[torch.Tensor] = []
        slot_parts: list[torch.Tensor] = []
        prefills: list[PrefillSegment] = []
        logit_rows: list[int] = []
        row = 0
        for sch in out.prefills:
            seq, n = sch.seq, sch.num_tokens
            c = seq.num_computed
            ids.extend(seq.token_at(i) for i in range(c, c + n))
            pos.append(torch.arange(c, c + n))
            ctx_slots = self._slots(seq.table.blocks, 0, c + n)
            slot_parts.append(ctx_slots[c:])
            prefills.append(PrefillSegment(row, row + n, ctx_slots.to(dev), fresh=(c == 0)))
            row += n
            if sch.sample:
                logit_rows.append(row - 1)
        decode_start = row
        meta = AttnMetadata(slot_mapping=torch.empty(0), prefills=prefills, decode_start=row)
        if out.decodes:
            self._decode_inputs(out, meta, ids, pos, slot_parts)
            for sch in out.decodes:
                if sch.sample:
                    logit_rows.append(row)
                row += 1
        elif self.buf is not None:
            self.buf.release_except(set())
        if not ids:
            return None
        meta.slot_mapping = torch.cat(slot_parts).to(dev)
        meta.decode_start = decode_start
        input_ids = torch.tensor(ids, dtype=torch.long, device=dev)
        positions = torch.cat(pos).to(dev)
        rows = None if len(logit_rows) == row else torch.tensor(logit_rows, dtype=torch.long, device=dev)
        logits = self.model.forward(input_ids, positions, meta, self.kv, rows, self._ffn_route(out))
        if meta.buf is not None:
            meta.buf.advance(list(range(len(out.decodes))))
        if not logit_rows:
            return None
        if dev.type != "cpu":
            top = logits.exact_top
            return StepLogits(logits.values.cpu(), top.cpu() if top is not None else None)
        return logits

    def _ffn_route(self, out: SchedulerOutput) -> FFNRoute | None:
        """The routed FFN of a step (each flat row keeps its sequence's share of the
        experts), or None when every row is dense."""
        ex = self.experts
        items = out.prefills + out.decodes  # the flat rows' order (decodes may be reordered)
        fracs = [s.seq.request.expert_fraction for s in items]
        if ex is None or all(f is None for f in fracs):
            return None
        E = ex.n_experts
        ks = torch.tensor([E if f is None else experts_for(f, E) for f in fracs], dtype=torch.long)
        counts = torch.tensor([s.num_tokens for s in items], dtype=torch.long)
        return ex.route(torch.repeat_interleave(ks, counts).to(self.device))

    def _decode_inputs(self, out: SchedulerOutput, meta: AttnMetadata, ids, pos, slot_parts):
        dev = self.device
        bs = self.block_size
        buf = self.buf
        B = len(out.decodes)
        lens = [sch.seq.num_computed + 1 for sch in out.decodes]
        L = max(lens)
        if buf is not None:
            # small batches: SDPA layout (the same kernels as one stream, so greedy outputs
            # do not depend on the batch); larger ones: transposed fp32 keys
            buf.set_layout(self.model.int4_max_rows < B)
        if buf is not None and buf.fits(B, L):
            buf.release_except({sch.seq.seq_no for sch in out.decodes})
            rows = buf.prepare(
                [
                    (
                        sch.seq.seq_no,
                        sch.seq.num_computed,
                        _LazySlots(self, sch.seq.table.blocks, sch.seq.num_computed),
                    )
                    for sch in out.decodes
                ],
                self.kv.data,
                None if self.codec is None else self._decode_pages,
            )
            order = sorted(range(B), key=rows.__getitem__)
            out.decodes[:] = [out.decodes[i] for i in order]
            lens = [lens[i] for i in order]
            meta.buf = buf
            if buf.transposed:
                # attend over the whole (contiguous) capacity: a bf16 batched matmul copies
                # a length-sliced value view (~2 MB per layer at 32 streams); the padding
                # is masked and the capacity grows in small blocks
                L = buf.cap
            meta.buf_len = L
            nkv = self.model.cfg.n_kv_heads
            p = torch.tensor(lens, dtype=torch.long) - 1
            r = torch.arange(B, dtype=torch.long)
            h = torch.arange(nkv, dtype=torch.long)
            rh = r[:, None] * nkv + h  # [B, nkv]
            meta.buf_write = (rh * buf.cap + p[:, None]).view(-1).to(dev)
            hd = self.model.cfg.head_dim
            d = torch.arange(hd, dtype=torch.long)
            if buf.transposed:  # element (r, h, d, pos)
                idx = (rh[:, :, None] * hd + d) * buf.cap + p[:, None, None]
            else:  # element (r, h, pos, d)
                idx = (rh[:, :, None] * buf.cap + p[:, None, None]) * hd + d
            meta.buf_write_k = idx.view(-1).to(dev)
        elif buf is not None:
            buf.release_except(set())
        tables = []
        for sch, n in zip(out.decodes, lens, strict=True):
            seq = sch.seq
            ids.append(seq.token_at(n - 1))
            tables.append(seq.table.blocks[: -(-n // bs)])
        lens_t = torch.tensor(lens, dtype=torch.long)
        positions = lens_t - 1
        pos.append(positions)
        last_blocks = torch.tensor([t[(n - 1) // bs] for t, n in zip(tables, lens, strict=True)])
        slot_parts.append(last_blocks * bs + positions % bs)
        if meta.buf is None:
            max_blocks = max(len(t) for t in tables)
            bt = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables], dtype=torch.long)
            meta.decode_slots = (bt[:, :, None] * bs + self._arange_bs).reshape(B, -1).to(dev)
            L = meta.decode_slots.shape[1]
            if self._paged_decode:  # reads the pages itself: no padding bias needed
                meta.decode_lens = lens_t.to(device=dev, dtype=torch.int32)
                return
        valid = torch.arange(L)[None, :] < lens_t[:, None]
        bias_dtype = meta.buf.key_dtype if meta.buf is not None else self.model.dtype
        bias = torch.zeros(valid.shape, dtype=bias_dtype)
        bias.masked_fill_(~valid, float("-inf"))
        meta.decode_bias = bias[:, None, None, :].to(dev)

    def _decode_pages(self, codes: torch.Tensor) -> torch.Tensor:
        assert self.codec is not None
        return self.codec.decode_layers(codes, self.model.dtype)


class _LazySlots:
    """Slots of a sequence's first n tokens, computed only if a buffer row needs a refill."""

    def __init__(self, runner: ModelRunner, blocks: list[int], n: int) -> None:
        self.runner, self.blocks, self.n = runner, blocks, n

    def get(self) -> torch.Tensor:
        return self.runner._slots(self.blocks, 0, self.n).to(self.runner.device)
