"""The fused compressed-cache encoder (kernels/cpu/pq_roundtrip.cpp) against the codec's
PyTorch path (`KVCodec.encode` then `KVCodec.decode`): the same codes and decoded rows."""

from __future__ import annotations

import pytest
import torch

from inference.hca import KVCodec
from kernels import cpu_ops

L, KVH = 2, 3


@pytest.fixture(autouse=True, scope="module")
def built():
    assert cpu_ops.load(), "the C++ kernels did not build (see the warning above)"


def _codec(hd: int, m: int, c: int, fused: bool, seed: int = 0) -> KVCodec:
    g = torch.Generator().manual_seed(seed)
    books = torch.randn((L, 2, KVH, m, c, hd // m), generator=g)
    weights = torch.rand((L, KVH, hd), generator=g) + 0.5  # the queries' metric on keys
    codec = KVCodec(books, key_weights=weights)
    assert codec._fused  # a CPU with the kernels
    codec._fused = fused
    return codec


# (head dim, subspaces, centroids, tokens): the engine's shape (2 dims, 256 centroids), the
# SIMD paths' block sizes and a count that is none of them (the plain loop), 1 dim per
# subspace, wider subspaces, and more than 8 dims per subspace (plain loop again)
SHAPES = [
    (64, 32, 256, 37),
    (64, 16, 32, 5),
    (64, 8, 12, 9),
    (16, 16, 48, 3),
    (32, 4, 64, 20),
    (64, 4, 16, 7),
]


@pytest.mark.parametrize("hd,m,c,t", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fused_roundtrip_matches_the_pytorch_path(hd, m, c, t, dtype):
    fused, plain = _codec(hd, m, c, True), _codec(hd, m, c, False)
    g = torch.Generator().manual_seed(t)
    k = torch.randn((t, KVH, hd), generator=g).to(dtype)
    v = torch.randn((t, KVH, hd), generator=g).to(dtype)
    for li in range(L):
        codes, dk, dv = fused.roundtrip(li, k, v, dtype)
        want_codes, want_k, want_v = plain.roundtrip(li, k, v, dtype)
        assert codes.dtype == torch.uint8 and codes.shape == (2 * KVH, t, m)
        assert dk.dtype == dtype and dk.shape == (t, KVH, hd) and dv.shape == (t, KVH, hd)
        # the PyTorch path ranks by |e|^2 - 2 x.e, the kernel by the distance itself: only a
        # near-tie may differ, and then the kernel's pick is no farther
        same = codes == want_codes
        assert same.float().mean() > 0.99
        if not same.all():
            _no_farther(fused, li, k, v, codes, want_codes)
        rows = same.all(-1)  # rows whose every code agrees decode to the same values
        assert torch.equal(dk.transpose(0, 1)[rows[:KVH]], want_k.transpose(0, 1)[rows[:KVH]])
        assert torch.equal(dv.transpose(0, 1)[rows[KVH:]], want_v.transpose(0, 1)[rows[KVH:]])


def _no_farther(codec: KVCodec, li: int, k, v, got: torch.Tensor, want: torch.Tensor) -> None:
    t = k.shape[0]
    x = torch.stack([k.float()[:, :, codec.order], v.float()]) * codec._w[li]  # [2, T, KVH, hd]
    x = x.view(2, t, KVH, codec.n_sub, codec.dsub).permute(0, 2, 1, 3, 4)  # [2, KVH, T, M, d]
    enc = codec._enc[li]  # [2, KVH, M, C, d]
    dist = ((x[:, :, :, :, None, :] - enc[:, :, None]) ** 2).sum(-1)  # [2, KVH, T, M, C]
    d_got = dist.gather(-1, got.view(2, KVH, t, -1, 1).long())
    d_want = dist.gather(-1, want.view(2, KVH, t, -1, 1).long())
    assert (d_got <= d_want + 1e-5 * d_want.abs().clamp(min=1)).all()


def test_ties_go_to_the_first_centroid():
    """Every centroid equal: each subspace's code is 0, as torch.argmin answers."""
    books = torch.ones((L, 2, KVH, 32, 256, 2))
    codec = KVCodec(books)
    codes, dk, dv = codec.roundtrip(0, torch.zeros(4, KVH, 64), torch.zeros(4, KVH, 64), torch.float32)
    assert not codes.any() and torch.equal(dk, torch.ones_like(dk)) and torch.equal(dv, torch.ones_like(dv))


def test_an_empty_chunk_gives_empty_codes():
    codec = _codec(64, 32, 256, True)
    codes, dk, dv = codec.roundtrip(0, torch.zeros(0, KVH, 64), torch.zeros(0, KVH, 64), torch.float32)
    assert codes.shape == (2 * KVH, 0, 32) and dk.shape == (0, KVH, 64) and dv.shape == (0, KVH, 64)


def test_mismatched_books_are_refused():
    codec = _codec(64, 32, 256, True)
    with pytest.raises(RuntimeError, match="books do not match"):
        cpu_ops.pq_roundtrip(
            torch.zeros(2, KVH, 32),
            torch.zeros(2, KVH, 32),
            codec.order,
            codec._w_rows[0],
            codec._enc_t[0],
            codec.books[0],
            torch.float32,
        )
