"""PyTorch twin of `kernels.block_sparse_attention`: top-k block-sparse attention (the CSA
shape: a cheap indexer picks key blocks per query; attention runs over those plus a local
window), and the shared indexer steps.

Keys of each sequence are cut into blocks of `block_size` tokens, each summarised by the
mean of its keys. For a query at position p (queries are the last Tq tokens of their
sequence, so p = seq_len - Tq + i; p < 0 marks a padding query, whose output is 0):
- the local window starts at `local_start(p) = floor(max(0, p + 1 - window) / B) * B`
  (rounded down to a block edge) and runs to p: always attended;
- only complete blocks before the window are candidates (so a block's summary never sees
  keys after p, and prefill and decode pick alike); the indexer scores candidate j as
  `sum over the group's query heads of q . summary_j` and keeps the top k;
- attention (softmax over the union, fp32) runs over the selected blocks' tokens and the
  window. With k >= the number of blocks this is exactly dense causal attention.
Attended tokens per query are at most k*B + window + B - 1, whatever the context length.
"""

from __future__ import annotations

import torch


def query_positions(seq_lens: torch.Tensor, num_queries: int) -> torch.Tensor:
    """[B, Tq] positions of each row's last Tq tokens (negative = padding query)."""
    return seq_lens.long()[:, None] - num_queries + torch.arange(num_queries, device=seq_lens.device)


def local_start(pos: torch.Tensor, window: int, block_size: int) -> torch.Tensor:
    return (pos + 1 - window).clamp(min=0) // block_size * block_size


def check_attention_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError("need q [B, H, Tq, D] and k, v [B, KVH, S, D]")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3] or q.shape[1] % k.shape[1]:
        raise ValueError(f"q {tuple(q.shape)} does not fit k {tuple(k.shape)}")
    if seq_lens.shape != (q.shape[0],) or (seq_lens.numel() and int(seq_lens.max()) > k.shape[2]):
        raise ValueError("need seq_lens [B], each <= the key length")


def block_summaries(k: torch.Tensor, seq_lens: torch.Tensor, block_size: int) -> torch.Tensor:
    """[B, KVH, S, D] -> [B, KVH, ceil(S / block_size), D]: the mean key of each block over
    the sequence's valid tokens (a block with none is zero)."""
    b, kvh, s, d = k.shape
    nb = -(-s // block_size)
    valid = (torch.arange(nb * block_size, device=k.device)[None, :] < seq_lens.long()[:, None]).float()
    kp = torch.nn.functional.pad(k.float(), (0, 0, 0, nb * block_size - s))
    kp = kp * valid[:, None, :, None]
    sums = kp.view(b, kvh, nb, block_size, d).sum(dim=3)
    counts = valid.view(b, nb, block_size).sum(dim=2).clamp(min=1.0)
    return sums / counts[:, None, :, None]


def select_blocks(
    q: torch.Tensor,  # [B, H, Tq, D]
    summaries: torch.Tensor,  # [B, KVH, NB, D]
    seq_lens: torch.Tensor,  # [B]
    top_k: int,
    block_size: int,
    window: int,
    sink_blocks: int = 1,
) -> torch.Tensor:
    """The indexer: [B, KVH, Tq, min(top_k, NB)] int32 block ids per query, -1 where fewer
    than k candidate blocks exist (a k beyond the block count means "every block"). The
    first `sink_blocks` candidates are always among the k (attention sinks: the first
    tokens draw attention whatever their keys' mean says)."""
    b, h, tq, d = q.shape
    kvh, nb = summaries.shape[1], summaries.shape[2]
    qg = q.float().view(b, kvh, h // kvh, tq, d).sum(dim=2)
    scores = torch.matmul(qg, summaries.float().transpose(-1, -2))  # [B, KVH, Tq, NB]
    first_local_block = local_start(query_positions(seq_lens, tq), window, block_size) // block_size
    eligible = torch.arange(nb, device=q.device)[None, None, :] < first_local_block[:, :, None]
    if sink_blocks > 0:
        sink = torch.arange(nb, device=q.device) < sink_blocks
        scores = scores.masked_fill(sink, float("inf"))
    scores = scores.masked_fill(~eligible[:, None], float("-inf"))
    kk = min(top_k, nb)
    out = torch.full((b, kvh, tq, kk), -1, dtype=torch.int32, device=q.device)
    if kk:
        val, idx = torch.topk(scores, kk, dim=-1)
        out[..., :kk] = torch.where(val == float("-inf"), -1, idx).to(torch.int32)
    return out


def attended_tokens(
    block_idx: torch.Tensor, seq_lens: torch.Tensor, block_size: int, window: int
) -> torch.Tensor:
    """[B, KVH, Tq] how many keys each query attends to (selected blocks + window)."""
    pos = query_positions(seq_lens, block_idx.shape[2])
    local = (pos + 1 - local_start(pos, window, block_size)).clamp(min=0)
    return (block_idx >= 0).sum(dim=-1) * block_size + local[:, None, :]


def block_sparse_attention_ref(
    q: torch.Tensor,  # [B, H, Tq, D]
    k: torch.Tensor,  # [B, KVH, S, D]
    v: torch.Tensor,  # [B, KVH, S, D]
    seq_lens: torch.Tensor,  # [B] int
    block_idx: torch.Tensor,  # [B, KVH, Tq, top_k] int, -1 = none
    block_size: int,
    window: int,
    scale: float,
) -> torch.Tensor:
    """The twin. Decode-sized calls (<= MASKED_MIN_QUERIES queries) gather only the
    attended keys (selected blocks + window) per query, so their cost follows the attended
    count, not the context length. Prefill-sized calls compute the scores of a chunk of
    queries against all keys with one matmul and mask everything but the selected blocks and
    the window: a gather per query would copy every key hundreds of times (20x slower than
    dense attention for a 256-token prompt), a masked matmul costs what dense attention
    does. Queries go in chunks so either path's temporaries stay within ~128 MB. Output in
    q's dtype."""
    check_attention_shapes(q, k, v, seq_lens)
    b, h, tq, d = q.shape
    kvh, s = k.shape[1], k.shape[2]
    pos = query_positions(seq_lens, tq)  # [B, Tq]
    kf, vf = k.float(), v.float()
    qf = q.float().view(b, kvh, h // kvh, tq, d)
    masked = tq > MASKED_MIN_QUERIES
    width = s if masked else block_idx.shape[-1] * block_size + window + block_size - 1
    per_query = b * kvh * width * (h // kvh if masked else d)
    chunk = max(1, GATHER_BUDGET // max(1, per_query))
    attend = _masked_chunk if masked else _attend_chunk
    out = torch.empty((b, kvh, h // kvh, tq, d), dtype=torch.float32, device=q.device)
    for c0 in range(0, tq, chunk):
        c1 = min(tq, c0 + chunk)
        out[:, :, :, c0:c1] = attend(
            qf[:, :, :, c0:c1], kf, vf, pos[:, c0:c1], block_idx[:, :, c0:c1], block_size, window, scale
        )
    return out.reshape(b, h, tq, d).to(q.dtype)


MASKED_MIN_QUERIES = 64


def _masked_chunk(qf, kf, vf, pos, block_idx, block_size: int, window: int, scale: float) -> torch.Tensor:
    """All keys' scores for a chunk of queries, masked to the selected blocks + window."""
    b, kvh, _, tc, _ = qf.shape
    s = kf.shape[2]
    nb = -(-s // block_size)
    blk = block_idx.long()
    picked = torch.zeros((b, kvh, tc, nb + 1), dtype=torch.bool, device=qf.device)
    picked.scatter_(3, torch.where(blk >= 0, blk, nb), True)  # -1 goes to a spare column
    keys = torch.arange(s, device=qf.device)
    allowed = picked[..., :nb].repeat_interleave(block_size, dim=3)[..., :s]
    ls = local_start(pos, window, block_size)
    band = (keys[None, None, :] >= ls[:, :, None]) & (keys[None, None, :] <= pos[:, :, None])  # [B, tc, S]
    allowed = allowed | band[:, None]
    sc = torch.matmul(qf, kf.transpose(-1, -2)[:, :, None]) * scale  # [B, KVH, G, tc, S]
    sc = sc.masked_fill(~allowed[:, :, None], float("-inf"))
    p = torch.softmax(sc, dim=-1).nan_to_num(0.0)
    return torch.matmul(p, vf[:, :, None])


GATHER_BUDGET = 1 << 25  # fp32 elements of gathered keys per chunk (and as many values)


def _attend_chunk(qf, kf, vf, pos, block_idx, block_size: int, window: int, scale: float) -> torch.Tensor:
    """qf [B, KVH, G, tc, D] fp32, pos [B, tc], block_idx [B, KVH, tc, top_k]."""
    b, kvh, _, tc, d = qf.shape
    s = kf.shape[2]
    ar = torch.arange(block_size, device=qf.device)
    blk = block_idx.long()
    tok_b = (blk[..., None] * block_size + ar).flatten(-2)  # [B, KVH, tc, top_k*bs]
    ok_b = (blk >= 0)[..., None].expand(*blk.shape, block_size).flatten(-2)
    ls = local_start(pos, window, block_size)
    tok_l = ls[..., None] + torch.arange(window + block_size - 1, device=qf.device)  # [B, tc, Lw]
    ok_l = (tok_l <= pos[..., None]) & (pos[..., None] >= 0)
    idx = torch.cat([tok_b, tok_l[:, None].expand(b, kvh, *tok_l.shape[1:])], dim=-1)
    ok = torch.cat([ok_b, ok_l[:, None].expand(b, kvh, *ok_l.shape[1:])], dim=-1)
    idx = torch.where(ok, idx, 0).clamp(max=s - 1)
    n = idx.shape[-1]
    flat = idx.reshape(b, kvh, tc * n, 1).expand(b, kvh, tc * n, d)
    kg = torch.gather(kf, 2, flat).view(b, kvh, tc, n, d)
    vg = torch.gather(vf, 2, flat).view(b, kvh, tc, n, d)
    sc = torch.einsum("bkgtd,bktnd->bkgtn", qf, kg) * scale
    sc = sc.masked_fill(~ok[:, :, None], float("-inf"))
    p = torch.softmax(sc, dim=-1).nan_to_num(0.0)  # a padding query has no keys: output 0
    return torch.einsum("bkgtn,bktnd->bkgtd", p, vg)
