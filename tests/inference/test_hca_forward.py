"""The forward pass over the compressed KV cache on a tiny random Llama (milliseconds): the
cache holds codes, prefill chunked or whole and each decode attention path agree, and the
dense path is untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.hca import HCAConfig, KVCodec
from inference.hca.fit import collect_kv, fit_books, query_weights
from inference.hca.quality import chunk_logits, kv_agreement
from inference.model import AttnMetadata, KVCache, LlamaModel, PrefillSegment

from .moe_tiny import CFG, tiny_tensors

TINY = HCAConfig(n_sub=16, n_centroids=32, kmeans_iters=8)


@pytest.fixture(scope="module")
def tiny():
    # fp32: the paths are compared to float rounding, not to bf16's logit grid
    model = LlamaModel(CFG, tiny_tensors(), torch.float32, torch.device("cpu"))
    rng = np.random.default_rng(2)
    calib = [rng.integers(0, CFG.vocab_size, 96).tolist() for _ in range(2)]
    kv, weights = query_weights(model, calib)  # the served fit: keys under the queries' metric
    assert torch.equal(kv, collect_kv(model, calib)) and weights.shape == (CFG.n_layers, CFG.n_kv_heads, 32)
    codec = KVCodec(fit_books(kv, TINY, weights), key_weights=weights)
    held = rng.integers(0, CFG.vocab_size, 40).tolist()
    return model, codec, held


def _prefill(model, kv, ids, start, slots_all):
    n = len(ids)
    ctx = slots_all[: start + n]
    meta = AttnMetadata(
        slot_mapping=ctx[start:], prefills=[PrefillSegment(0, n, ctx, fresh=start == 0)], decode_start=n
    )
    inp = torch.tensor(ids, dtype=torch.long)
    return model.forward(inp, torch.arange(start, start + n), meta, kv, None).values.float()


def _decode_meta(kv_slots: torch.Tensor, n: int, with_lens: bool, dtype) -> AttnMetadata:
    """One sequence decoding its token n-1 over slots [0, n): the runner's no-buffer shapes."""
    meta = AttnMetadata(slot_mapping=kv_slots[n - 1 : n], decode_start=0)
    meta.decode_slots = kv_slots[None, :n]
    if with_lens:
        meta.decode_lens = torch.tensor([n], dtype=torch.int32)
    else:
        meta.decode_bias = torch.zeros((1, 1, 1, n), dtype=dtype)
    return meta


def test_the_compressed_cache_holds_codes_and_they_are_used(tiny):
    model, codec, held = tiny
    kv = KVCache(CFG, 64, model.kv_dtype, model.device, codec)
    slots = torch.arange(64)
    got = _prefill(model, kv, held, 0, slots)
    assert kv.data.dtype == torch.uint8 and kv.data.shape[-1] == TINY.n_sub
    assert int(kv.data[:, :, : len(held)].sum()) > 0 and int(kv.data[:, :, len(held) :].sum()) == 0
    dense = chunk_logits(model, held)
    assert not torch.equal(got, dense)  # quantized keys and values move the logits a little
    top1, kl = kv_agreement(model, codec, [held])
    assert kl >= 0.0 and top1 > 0.5


def test_prefill_in_chunks_equals_prefill_at_once(tiny):
    """A chunk after a cached prefix attends to the prefix's decoded codes: the same numbers
    the whole prompt's prefill attends to (prefix-cache hits and chunked prefill are exact)."""
    model, codec, held = tiny
    slots = torch.randperm(64)[:48]  # pages anywhere in the cache
    whole = _prefill(model, KVCache(CFG, 64, model.kv_dtype, model.device, codec), held, 0, slots)
    kv = KVCache(CFG, 64, model.kv_dtype, model.device, codec)
    first = _prefill(model, kv, held[:24], 0, slots)
    rest = _prefill(model, kv, held[24:], 24, slots)
    torch.testing.assert_close(torch.cat([first, rest]), whole, rtol=0, atol=1e-4)
    assert torch.equal(torch.cat([first, rest]).argmax(-1), whole.argmax(-1))


def test_decode_from_codes_equals_decode_after_decompression(tiny):
    """Lookup tables over the codes and SDPA over the decoded codes: the same attention. (A
    one-row step runs the int4 GEMMs, so it is compared with the prefill row by its answer.)"""
    model, codec, held = tiny
    slots = torch.randperm(64)[:48]
    n = len(held)
    whole = _prefill(model, KVCache(CFG, 64, model.kv_dtype, model.device, codec), held, 0, slots)
    kv = KVCache(CFG, 64, model.kv_dtype, model.device, codec)
    _prefill(model, kv, held[:-1], 0, slots)
    inp = torch.tensor(held[-1:], dtype=torch.long)
    got = {}
    for path in ("codes", "decompress"):
        meta = _decode_meta(slots, n, path == "codes", model.dtype)
        got[path] = model.forward(inp, torch.tensor([n - 1]), meta, kv, None).values.float()[0]
    torch.testing.assert_close(got["codes"], got["decompress"], rtol=0, atol=1e-4)
    assert int(got["codes"].argmax()) == int(whole[-1].argmax())


def test_the_dense_cache_is_the_default_and_unchanged(tiny):
    model, _, held = tiny
    kv = KVCache(CFG, 64, model.kv_dtype, model.device)
    assert kv.codec is None and kv.data.dtype == model.kv_dtype and kv.data.shape[-1] == CFG.head_dim
    a = _prefill(model, kv, held, 0, torch.arange(64))
    assert torch.equal(a, chunk_logits(model, held))
