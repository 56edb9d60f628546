"""PyTorch twin of `kernels.pq_attention`: decode attention over a product-quantized paged
KV cache (the HCA shape: the cache stores one byte-sized code per subspace, not the keys).

A key of head dim D is cut into M subspaces of D / M dims; subspace m of key-head h has a
codebook `k_books[h, m]` of C centroids and the cache keeps the centroid's index. Values
likewise with their own codebooks. Scores come from lookup tables: for each query head the
table `lut[m, c] = q_m . k_books[kvh, m, c]` (M x C products, once per step), and a key's
score is `sum_m lut[m, code_m]`, which equals `q . decoded_key` exactly (up to fp32
summation order). The output is attention over the decoded values. Everything else is the contract
of `kernels.decode_attention_ref`: slots, lengths, grouped query heads, fp32 softmax.
"""

from __future__ import annotations

import torch


def check_books(codes: torch.Tensor, books: torch.Tensor) -> None:
    if (
        codes.dim() != 3
        or books.dim() != 4
        or codes.shape[0] != books.shape[0]
        or codes.shape[2] != books.shape[1]
    ):
        raise ValueError(
            "need codes [KVH, S, M] and codebooks [KVH, M, C, D/M]; "
            f"got {tuple(codes.shape)}, {tuple(books.shape)}"
        )
    if books.shape[2] > 256 and codes.dtype == torch.uint8:
        raise ValueError("uint8 codes address at most 256 centroids")


def pq_encode(x: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """x [KVH, N, D] -> uint8 codes [KVH, N, M]: the nearest centroid of each subspace."""
    kvh, n, d = x.shape
    m, c, dsub = books.shape[1:]
    if m * dsub != d or c > 256:
        raise ValueError("codebooks must split the head dim exactly and hold <= 256 centroids")
    xs = x.float().view(kvh, n, m, dsub).transpose(1, 2)  # [KVH, M, N, dsub]
    dist = torch.cdist(xs, books.float())  # [KVH, M, N, C]
    return dist.argmin(dim=-1).transpose(1, 2).to(torch.uint8).contiguous()


def pq_decode(codes: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """codes [KVH, N, M] -> [KVH, N, M * dsub] fp32: each subspace's centroid."""
    check_books(codes, books)
    kvh, n, m = codes.shape
    hi = torch.arange(kvh, device=codes.device)[:, None, None]
    mi = torch.arange(m, device=codes.device)[None, None, :]
    return books.float()[hi, mi, codes.long()].reshape(kvh, n, -1)


def score_tables(q: torch.Tensor, k_books: torch.Tensor) -> torch.Tensor:
    """q [B, H, D], k_books [KVH, M, C, dsub] -> lut [B, H, M, C] fp32."""
    b, h, d = q.shape
    kvh, m, c, dsub = k_books.shape
    qs = q.float().view(b, kvh, h // kvh, m, dsub)
    return torch.einsum("bkgmd,kmcd->bkgmc", qs, k_books.float()).reshape(b, h, m, c)


def pq_decode_attention_ref(
    q: torch.Tensor,  # [B, H, D]
    k_codes: torch.Tensor,  # [KVH, S, M] integer codes of every cache slot
    k_books: torch.Tensor,  # [KVH, M, C, D / M]
    v_codes: torch.Tensor,  # [KVH, S, Mv]
    v_books: torch.Tensor,  # [KVH, Mv, C, D / Mv]
    slots: torch.Tensor,  # [B, L] int: each sequence's cache slots, padded
    seq_lens: torch.Tensor,  # [B] int (>= 1)
    scale: float,
) -> torch.Tensor:
    """The twin, batched over sequences (padded to the longest), all by table: scores gather
    M entries of the query's score table per key; values never get decoded either: each
    key's probability is added to its code's bin per value subspace (a C-bin histogram),
    and the output is the histogram times the codebook. Output in q's dtype."""
    check_books(k_codes, k_books)
    check_books(v_codes, v_books)
    b, h, d = q.shape
    kvh, _, m = k_codes.shape
    mv, c_v = v_books.shape[1], v_books.shape[2]
    g = h // kvh
    width = int(seq_lens.max()) if b else 0
    ok = torch.arange(width, device=q.device)[None, :] < seq_lens.long()[:, None]  # [B, L]
    idx = torch.where(ok, slots[:, :width].long(), 0).reshape(-1)

    def gathered(codes: torch.Tensor) -> torch.Tensor:  # [KVH, S, M] -> [B, KVH, 1, M, L]
        sel = torch.index_select(codes, 1, idx).view(kvh, b, width, -1).long()
        return sel.permute(1, 0, 3, 2)[:, :, None]

    lut = score_tables(q, k_books).view(b, kvh, g, m, -1)  # [B, KVH, G, M, C]
    kc = gathered(k_codes).expand(b, kvh, g, m, width)
    scores = torch.gather(lut, 4, kc).sum(dim=3) * scale  # [B, KVH, G, L]
    scores = scores.masked_fill(~ok[:, None, None, :], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    vc = gathered(v_codes).expand(b, kvh, g, mv, width)
    hist = torch.zeros(b, kvh, g, mv, c_v, device=q.device)
    hist.scatter_add_(4, vc, p[:, :, :, None, :].expand(b, kvh, g, mv, width))
    out = torch.einsum("bkgmc,kmcd->bkgmd", hist, v_books.float())
    return out.reshape(b, h, d).to(q.dtype)
