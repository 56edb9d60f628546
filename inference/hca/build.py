"""Load the KV codebooks from the disk cache or fit them on calibration text, then build the
codec. The cache sits next to the expert plan's (`inference.moe.cache.cache_dirs`), one
`.npz` named by the artifact's sha256, the fit's settings and the calibration digest."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..model import LlamaModel
from ..moe.cache import cache_dirs
from ..moe.calibration import calibration_tokens, tokens_digest
from .codec import KVCodec
from .fit import HCAConfig, fit_books, query_weights

log = logging.getLogger(__name__)


def books_filename(sha256: str, key: str) -> str:
    return f"{sha256}-{key}.npz"


Books = tuple[torch.Tensor, torch.Tensor]  # codebooks, key weights


def load_books(sha256: str, key: str, explicit: str | Path | None = None) -> Books | None:
    for d in cache_dirs(explicit):
        p = d / books_filename(sha256, key)
        if not p.is_file():
            continue
        try:
            with np.load(p) as z:
                if str(z["sha256"]) == sha256 and str(z["key"]) == key:
                    return torch.from_numpy(z["books"]), torch.from_numpy(z["key_weights"])
        except (OSError, ValueError, KeyError) as exc:  # torn or foreign file: refit
            log.warning("ignoring unreadable KV codebooks %s: %s", p, exc)
    return None


def save_books(books: Books, sha256: str, key: str, explicit: str | Path | None = None) -> Path | None:
    """Write atomically to the first writable cache dir; None if none is."""
    for d in cache_dirs(explicit):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    books=books[0].numpy(),
                    key_weights=books[1].numpy(),
                    sha256=np.array(sha256),
                    key=np.array(key),
                )
            os.replace(tmp, d / books_filename(sha256, key))
            return d / books_filename(sha256, key)
        except OSError as exc:
            log.info("KV codebook cache dir %s not writable: %s", d, exc)
    log.warning("no writable cache dir for the KV codebooks: they will be refit on the next load")
    return None


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
