"""Load the KV codebooks from the disk cache or fit them on calibration text, then build the
codec. The cache sits next to the expert plan's (`inference.moe.cache.cache_dirs`), one
`.npz` named by the artifact's sha256, the fit's settings and the calibration digest."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..model import LlamaModel
from ..moe.cache import load_arrays, save_arrays
from ..moe.calibration import calibration_tokens, tokens_digest
from .codec import KVCodec
from .fit import HCAConfig, fit_books, query_weights

log = logging.getLogger(__name__)


def books_filename(sha256: str, key: str) -> str:
    return f"{sha256}-{key}.npz"


Books = tuple[torch.Tensor, torch.Tensor]  # codebooks, key weights


def load_books(sha256: str, key: str, explicit: str | Path | None = None) -> Books | None:
    z = load_arrays(books_filename(sha256, key), {"sha256": sha256, "key": key}, explicit, "KV codebooks")
    if z is None or "books" not in z or "key_weights" not in z:
        return None
    return torch.from_numpy(z["books"]), torch.from_numpy(z["key_weights"])


def save_books(books: Books, sha256: str, key: str, explicit: str | Path | None = None) -> Path | None:
    arrays = {"books": books[0].numpy(), "key_weights": books[1].numpy()}
    identity = {"sha256": sha256, "key": key}
    return save_arrays(books_filename(sha256, key), arrays, identity, explicit, "KV codebooks")


def build_kv_codec(
    model: LlamaModel,
    sha256: str,
    encode: Callable[[str], list[int]],
    cache_dir: str | Path | None = None,
    cfg: HCAConfig | None = None,
) -> KVCodec:
    cfg = cfg or HCAConfig()
    chunks = calibration_tokens(encode, cfg.calib_tokens, cfg.chunk)
    key = f"{cfg.key()}-{tokens_digest(chunks)}"
    books = load_books(sha256, key, cache_dir)
    if books is None:
        t0 = time.perf_counter()
        kv, weights = query_weights(model, chunks)
        books = fit_books(kv, cfg, weights), weights
        where = save_books(books, sha256, key, cache_dir)
        log.info("KV codebooks fit in %.1fs (cached at %s)", time.perf_counter() - t0, where)
    return KVCodec(books[0], model.device, key_weights=books[1])
