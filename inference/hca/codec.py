"""The compressed KV cache's codec (HCA): product-quantized keys and values per layer and KV
head, one byte per subspace.

A head vector of `head_dim` dims is cut into `n_sub` subspaces of `head_dim / n_sub` dims;
each (layer, keys|values, KV head, subspace) has a codebook of up to 256 centroids and the
cache stores the nearest centroid's index. Keys are quantized *after* rope (what the cache
holds and what attention reads, so lookup-table attention needs no per-position rotation),
and each key subspace holds dims (i, i + head_dim/2) together: the two coordinates rope
rotates as one pair, so the rotation moves a key within its subspace instead of across two.
Values keep their natural dim order.
"""

from __future__ import annotations

import torch

from kernels import cpu_ops

MAX_CENTROIDS = 256  # uint8 codes


def key_order(head_dim: int, n_sub: int) -> torch.Tensor:
    """The key dims in the order the codebooks see them: rope pairs (i, i + hd/2) adjacent,
    so with an even subspace width a pair never straddles two subspaces."""
    if (head_dim // n_sub) % 2:
        return torch.arange(head_dim)
    half = head_dim // 2
    return torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)


class KVCodec:
    """books: [n_layers, 2 (keys, values), n_kv_heads, n_sub, C, head_dim / n_sub] float32;
    key_weights [n_layers, n_kv_heads, head_dim] (natural dim order): the metric keys are
    encoded under (the fit's: the queries' root mean square per dim); None: plain distance."""

    def __init__(
        self, books: torch.Tensor, device: torch.device | None = None, key_weights: torch.Tensor | None = None
    ) -> None:
        if books.dim() != 6 or books.shape[1] != 2 or books.shape[4] > MAX_CENTROIDS:
            raise ValueError(f"need codebooks [L, 2, KVH, M, C<=256, dsub], got {tuple(books.shape)}")
        dev = device or books.device
        self.books = books.to(device=dev, dtype=torch.float32).contiguous()
        self.n_layers, _, self.n_kv_heads, self.n_sub, self.n_centroids, self.dsub = self.books.shape
        self.head_dim = self.n_sub * self.dsub
        self.order = key_order(self.head_dim, self.n_sub).to(dev)  # stored key dim j = key dim order[j]
        self.inverse = torch.argsort(self.order)
        L, kvh, m, d = self.n_layers, self.n_kv_heads, self.n_sub, self.dsub
        w = torch.ones((L, 2, kvh, self.head_dim), device=dev)
        if key_weights is not None:
            w[:, 0] = key_weights.to(device=dev, dtype=torch.float32)[:, :, self.order]
        self.key_weights = key_weights
        self._w = w[:, :, None]  # [L, 2, 1, KVH, hd]: applied to [2, T, KVH, hd] inputs
        # the weighted centroids and their |c|^2, for the nearest-centroid search by one
        # batched matmul
        self._enc = self.books * w.view(L, 2, kvh, m, 1, d)
        self._sq = (self._enc**2).sum(-1)  # [L, 2, KVH, M, C]
        # the fused CPU kernel's layouts: weights [L, 2, KVH, hd], centroids dim-major
        self._fused = dev.type == "cpu" and cpu_ops.load()
        if self._fused:
            self._w_rows = w.contiguous()
            self._enc_t = self._enc.transpose(-1, -2).contiguous()  # [L, 2, KVH, M, d, C]
        # flat centroid rows for decoding by one gather: row ((kv*KVH + h)*M + m)*C + c
        self._flat = self.books.view(self.n_layers, -1, self.dsub)
        h = torch.arange(2 * self.n_kv_heads, device=dev)[:, None, None]
        sub = torch.arange(self.n_sub, device=dev)[None, None, :]
        self._base = ((h * self.n_sub + sub) * self.n_centroids).to(torch.long)  # [2 KVH, 1, M]

    @property
    def device(self) -> torch.device:
        return self.books.device

    def bytes_per_token(self) -> int:
        """Cache bytes one token takes in every layer (keys and values)."""
        return 2 * self.n_layers * self.n_kv_heads * self.n_sub

    def codebook_bytes(self) -> int:
        return self.books.numel() * self.books.element_size()

    def encode(self, li: int, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """k, v [T, KVH, hd] (roped keys) -> uint8 codes [2 KVH, T, M] (keys' heads first)."""
        T = k.shape[0]
        kh = k.float()[:, :, self.order]
        x = torch.stack([kh, v.float()]) * self._w[li]  # [2, T, KVH, hd]
        x = x.view(2, T, self.n_kv_heads, self.n_sub, self.dsub).permute(0, 2, 3, 1, 4)  # [2,KVH,M,T,d]
        books = self._enc[li]  # [2, KVH, M, C, d]
        # argmin |x - c|^2 = argmin |c|^2 - 2 x.c (|x|^2 is the same for every centroid)
        dots = torch.matmul(x, books.transpose(-1, -2))  # [2, KVH, M, T, C]
        codes = (self._sq[li][:, :, :, None, :] - 2 * dots).argmin(-1)  # [2, KVH, M, T]
        return codes.to(torch.uint8).reshape(2 * self.n_kv_heads, self.n_sub, T).transpose(1, 2)

    def decode(self, li: int, codes: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [2 KVH, N, M] -> keys, values [KVH, N, hd] in `dtype` (keys in rope order)."""
        kv2, n, _ = codes.shape
        idx = codes.long() + self._base  # [2 KVH, N, M]
        flat = self._flat[li].index_select(0, idx.reshape(-1)).view(kv2, n, self.head_dim)
        k = flat[: self.n_kv_heads].index_select(-1, self.inverse)
        return k.to(dtype), flat[self.n_kv_heads :].to(dtype)

    def decode_layers(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Every layer's codes [L, 2 KVH, N, M] -> [L, 2 KVH, N, hd] (the dense page layout)."""
        out = [torch.cat(self.decode(li, codes[li], dtype)) for li in range(codes.shape[0])]
        return torch.stack(out)

    def roundtrip(self, li: int, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype):
        """(codes, decoded keys, decoded values) of k, v [T, KVH, hd]; decoded [T, KVH, hd].
        On a CPU one fused kernel call (kernels/cpu/pq_roundtrip.cpp)."""
        if self._fused and dtype in (torch.float32, torch.bfloat16):
            return cpu_ops.pq_roundtrip(
                k, v, self.order, self._w_rows[li], self._enc_t[li], self.books[li], dtype
            )
        codes = self.encode(li, k, v)
        dk, dv = self.decode(li, codes, dtype)
        return codes, dk.transpose(0, 1), dv.transpose(0, 1)

    def lut_books(self, li: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key books, value books) [KVH, M, C, dsub] for `kernels.pq_attention` (key books in
        the stored order: permute the query's dims by `order` before the score tables)."""
        return self.books[li, 0], self.books[li, 1]
