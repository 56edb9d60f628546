"""The compressed KV codec (HCA) on synthetic data: round-trip error bounds, the key order,
bytes, the fit, the disk cache, and attention from codes against attention after decoding."""

import pytest
import torch
import torch.nn.functional as F

from inference.hca import HCAConfig, KVCodec
from inference.hca.build import load_books, save_books
from inference.hca.codec import key_order
from inference.hca.fit import fit_books, kmeans
from inference.model import KVCache
from kernels.pq_attention_ref import pq_decode_attention_ref

from .moe_tiny import CFG

L, KVH, HD = 2, 3, 8


def _books(m: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((L, 2, KVH, m, c, HD // m), generator=g)


def _kv(t: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((t, KVH, HD), generator=g), torch.randn((t, KVH, HD), generator=g)


def test_key_order_keeps_rope_pairs_in_one_subspace():
    order = key_order(64, 32)
    assert sorted(order.tolist()) == list(range(64))
    for m in range(32):  # subspace m holds dims (m, m + 32): rope's rotation pair
        assert order[2 * m : 2 * m + 2].tolist() == [m, m + 32]
    assert key_order(64, 64).tolist() == list(range(64))  # one dim per subspace: nothing to pair


def test_centroids_round_trip_exactly():
    books = _books(4, 16)
    codec = KVCodec(books)
    codes = torch.randint(0, 16, (2 * KVH, 10, 4), dtype=torch.uint8)
    k, v = codec.decode(1, codes, torch.float32)
    # re-encoding decoded vectors gives back the same codes (each is its own nearest centroid)
    again = codec.encode(1, k.transpose(0, 1), v.transpose(0, 1))
    assert torch.equal(again, codes)


@pytest.mark.parametrize("m", [2, 4, 8])
def test_round_trip_error_is_the_distance_to_the_nearest_centroid(m):
    books = _books(m, 32, seed=m)
    codec = KVCodec(books)
    k, v = _kv(50)
    codes, dk, dv = codec.roundtrip(0, k, v, torch.float32)
    assert codes.dtype == torch.uint8 and codes.shape == (2 * KVH, 50, m)
    order = codec.order
    for which, x, d in ((0, k[:, :, order], dk[:, :, order]), (1, v, dv)):
        xs = x.reshape(50, KVH, m, HD // m)
        ds = d.reshape(50, KVH, m, HD // m)
        # brute force: the squared distance to every centroid of the subspace
        dist = ((xs[:, :, :, None, :] - books[0, which][None]) ** 2).sum(-1)  # [T, KVH, m, C]
        err = ((xs - ds) ** 2).sum(-1)
        torch.testing.assert_close(err, dist.min(-1).values, rtol=1e-4, atol=1e-5)
        # the bound: never worse than any centroid, and within the codebook's reach
        assert (err <= dist.min(-1).values + 1e-5).all()


def test_bytes_per_token_and_the_cache_holds_codes():
    codec = KVCodec(torch.zeros((CFG.n_layers, 2, CFG.n_kv_heads, 16, 4, CFG.head_dim // 16)))
    per_tok = KVCache.bytes_per_token(CFG, torch.float16, codec)
    assert per_tok == 2 * CFG.n_layers * CFG.n_kv_heads * 16
    dense = KVCache.bytes_per_token(CFG, torch.float16)
    assert per_tok / dense == 16 / (2 * CFG.head_dim)  # one byte per 2 dims vs 2 bytes per dim
    cache = KVCache(CFG, 40, torch.bfloat16, torch.device("cpu"), codec)
    assert cache.data.dtype == torch.uint8
    assert cache.data.numel() * cache.data.element_size() == 40 * per_tok


def test_kmeans_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = centres[torch.arange(400) % 4] + 0.1 * torch.randn((400, 2), generator=g)
    got = kmeans(x[None], 4, 10, torch.Generator().manual_seed(0))[0]
    matched = torch.cdist(centres, got).min(-1).values
    assert (matched < 0.1).all()


def test_fit_books_reduces_the_round_trip_error():
    g = torch.Generator().manual_seed(5)
    kv = torch.randn((L, 2 * KVH, 300, HD), generator=g)
    cfg = HCAConfig(n_sub=4, n_centroids=16, kmeans_iters=6)
    books = fit_books(kv, cfg)
    assert books.shape == (L, 2, KVH, 4, 16, 2)
    codec = KVCodec(books)
    k, v = kv[0, :KVH].transpose(0, 1), kv[0, KVH:].transpose(0, 1)
    _, dk, dv = codec.roundtrip(0, k, v, torch.float32)
    fitted = ((dk - k) ** 2).mean() + ((dv - v) ** 2).mean()
    _, rk, rv = KVCodec(_books(4, 16, seed=9)).roundtrip(0, k, v, torch.float32)
    assert fitted < 0.5 * (((rk - k) ** 2).mean() + ((rv - v) ** 2).mean())
    # 16 centroids in 2 dims over unit Gaussians: well under the data's variance of 1 per dim
    assert fitted / 2 < 0.25


def test_fit_refuses_more_centroids_than_tokens():
    with pytest.raises(ValueError, match="centroids"):
        fit_books(torch.zeros((1, 2, 10, 8)), HCAConfig(n_sub=4, n_centroids=16))


def test_codebooks_cache_round_trip_and_foreign_files(tmp_path):
    books = _books(4, 16), torch.rand((L, KVH, HD)) + 0.5
    assert load_books("abc", "k1", tmp_path) is None
    path = save_books(books, "abc", "k1", tmp_path)
    assert path is not None and path.parent == tmp_path
    loaded = load_books("abc", "k1", tmp_path)
    assert loaded is not None and torch.equal(loaded[0], books[0]) and torch.equal(loaded[1], books[1])
    assert load_books("abc", "k2", tmp_path) is None  # other settings: another file
    path.write_bytes(b"torn")  # an unreadable file is ignored (refit)
    assert load_books("abc", "k1", tmp_path) is None


def test_attention_from_codes_equals_attention_after_decoding():
    """The lookup-table path (the query's dims in the key books' order) computes what SDPA
    over the decoded keys and values does."""
    m, c = 4, 16
    codec = KVCodec(_books(m, c, seed=2))
    g = torch.Generator().manual_seed(4)
    n_slots, lens = 20, torch.tensor([7, 20])
    cache = torch.randint(0, c, (2 * KVH, n_slots, m), generator=g, dtype=torch.uint8)
    slots = torch.stack([torch.randperm(n_slots, generator=g) for _ in range(2)])
    q = torch.randn((2, 2 * KVH, HD), generator=g)  # 2 query heads per KV head
    kb, vb = codec.lut_books(1)
    got = pq_decode_attention_ref(
        q.index_select(-1, codec.order), cache[:KVH], kb, cache[KVH:], vb, slots, lens, 0.5
    )
    k, v = codec.decode(1, cache, torch.float32)
    for b in range(2):
        sel = slots[b, : int(lens[b])]
        want = F.scaled_dot_product_attention(q[b].view(KVH, 2, HD), k[:, sel], v[:, sel], scale=0.5).reshape(
            2 * KVH, HD
        )
        torch.testing.assert_close(got[b], want, rtol=1e-4, atol=1e-5)


def test_codec_rejects_bad_codebooks():
    with pytest.raises(ValueError, match="codebooks"):
        KVCodec(torch.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="codebooks"):
        KVCodec(torch.zeros((1, 2, 1, 2, 300, 4)))
