"""Turn a scheduler step into tensors, run the model, return the logits to sample."""

from __future__ import annotations

import torch

from .model import AttnMetadata, KVCache, LlamaModel, PrefillSegment
from .scheduler import SchedulerOutput


class ModelRunner:
    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int) -> None:
        self.model = model
        self.block_size = block_size
        self.device = model.device
        self.kv = KVCache(model.cfg, num_blocks * block_size, model.dtype, model.device)
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
    def execute(self, out: SchedulerOutput) -> torch.Tensor | None:
        """Run one step; returns [S, V] float32 logits for the items with sample=True
        (in out.items order), or None when nothing is sampled."""
        ids: list[int] = []
        pos: list[torch.Tensor] = []
        slot_parts: list[torch.Tensor] = []
        prefills: list[PrefillSegment] = []
        logit_rows: list[int] = []
        row = 0
        for sch in out.prefills:
            seq, n = sch.seq, sch.num_tokens
            c = seq.num_computed
            all_ids = seq.all_token_ids()
            ids.extend(all_ids[c : c + n])
            pos.append(torch.arange(c, c + n))
            ctx_slots = self._slots(seq.table.blocks, 0, c + n)
            slot_parts.append(ctx_slots[c:])
            prefills.append(PrefillSegment(row, row + n, ctx_slots, fresh=(c == 0)))
            row += n
            if sch.sample:
                logit_rows.append(row - 1)
        decode_start = row
        decode_slots = decode_bias = None
        if out.decodes:
            bs = self.block_size
            lens = []
            tables = []
            for sch in out.decodes:
                seq = sch.seq
                p = seq.num_computed
                ids.append(seq.token_at(p))
                lens.append(p + 1)
                tables.append(seq.table.blocks[: -(-(p + 1) // bs)])
                if sch.sample:
                    logit_rows.append(row)
                row += 1
            max_blocks = max(len(t) for t in tables)
            bt = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables], dtype=torch.long)
            decode_slots = (bt[:, :, None] * bs + self._arange_bs).reshape(len(tables), -1)
            lens_t = torch.tensor(lens, dtype=torch.long)
            positions_d = lens_t - 1
            pos.append(positions_d)
            slot_parts.append(decode_slots.gather(1, positions_d[:, None]).squeeze(1))
            L = decode_slots.shape[1]
            valid = torch.arange(L)[None, :] < lens_t[:, None]
            decode_bias = torch.zeros(valid.shape, dtype=torch.float32)
            decode_bias.masked_fill_(~valid, float("-inf"))
            decode_bias = decode_bias[:, None, None, :]
        if not ids:
            return None
        dev = self.device
        meta = AttnMetadata(
            slot_mapping=torch.cat(slot_parts).to(dev),
            prefills=[
                PrefillSegment(p.q_start, p.q_end, p.kv_slots.to(dev), p.fresh) for p in prefills
            ],
            decode_start=decode_start,
            decode_slots=decode_slots.to(dev) if decode_slots is not None else None,
            decode_bias=decode_bias.to(dev) if decode_bias is not None else None,
        )
        input_ids = torch.tensor(ids, dtype=torch.long, device=dev)
        positions = torch.cat(pos).to(dev)
        rows = torch.tensor(logit_rows, dtype=torch.long, device=dev)
        logits = self.model.forward(input_ids, positions, meta, self.kv, rows)
        if not logit_rows:
            return None
        return logits.cpu() if dev.type != "cpu" else logits
