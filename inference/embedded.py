"""EmbeddedModel: weights, tokenizer, chat template and artifact facts, loaded once."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .compute_thread import ComputeThread
from .device import resolve_device, resolve_dtype, resolve_weight_dtype
from .fresh_thread import run_in_fresh_thread
from .gguf_loader import LlamaConfig, load_gguf
from .model import LlamaModel
from .tokenizer import ChatTokenizer
from .types import ModelArtifact

if TYPE_CHECKING:
    from .hca import HCAConfig, KVCodec
    from .moe import RoutedFFN


class EmbeddedModel:
    def __init__(
        self,
        model: LlamaModel,
        tokenizer: ChatTokenizer,
        artifact: ModelArtifact,
        config: LlamaConfig,
        threads: int | None,
        experts: RoutedFFN | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.artifact = artifact
        self.config = config
        self.context_length = config.context_length
        self.device = model.device
        self.dtype = model.dtype
        self.weight_dtype = model.weight_dtype
        self.kv_dtype = model.kv_dtype
        self.threads = threads
        # routed experts over the FFN (requests with an expert_fraction); None: dense only
        self.experts = experts
        # the compressed KV cache's codebooks (engines with kv_compression="pq"); built on
        # first use, shared by every engine over this model
        self.kv_codec: KVCodec | None = None
        self.kv_cache_dir: str | Path | None = None
        self._compute: ComputeThread | None = None
        self._compute_lock = threading.Lock()
        self._codec_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        threads: int | None = None,
        experts: bool | str = False,
        moe_cache_dir: str | Path | None = None,
    ) -> EmbeddedModel:
        """`experts`: build the routed experts, True or "neurons" (per-neuron routing, no
        fit) or "groups" (the plan is fit on calibration text on the first load of an
        artifact and cached, see inference.moe.cache; `moe_cache_dir` is the preferred
        cache directory)."""
        dev = resolve_device(device)  # fails fast, before reading 100 MB
        n_threads = max(1, int(threads)) if threads is not None else None
        # Build on one intra-op thread: an OpenMP team of 2 formed in this (loading) thread
        # slowed the engine thread's 2-thread team down by ~70% (measured: 14.4 vs 8.6 ms
        # per decode step); the engine thread sets its own thread count.
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            g = load_gguf(path)
            tdtype = resolve_dtype(dtype, dev)
            wdtype = resolve_weight_dtype(dtype, dev, tdtype)
            model = LlamaModel(g.config, g.tensors, tdtype, dev, weight_dtype=wdtype)
            tok = ChatTokenizer(g.metadata)
            moe = None
            if experts:
                from .moe import build_routed_ffn

                kind = "neurons" if experts is True else str(experts)
                moe = build_routed_ffn(
                    kind, model, g.tensors, g.artifact.sha256, tok.encode_text, moe_cache_dir
                )
            g.tensors.clear()
        finally:
            torch.set_num_threads(prev)
        return cls(model, tok, g.artifact, g.config, n_threads, moe)

    def enable_experts(self, cache_dir: str | Path | None = None, kind: str = "neurons") -> RoutedFFN:
        """Build the routed experts of a model loaded without them (re-reads the file's FFN
        blocks; `kind` as in `load`; a grouped plan comes from the cache or is fit). Call
        before an Engine is made; the first call's kind stays."""
        if self.experts is None:
            from .moe import build_routed_ffn

            prev = torch.get_num_threads()
            torch.set_num_threads(1)  # as in load: no OpenMP team in this thread
            try:
                g = load_gguf(self.artifact.path)
                self.experts = build_routed_ffn(
                    kind, self.model, g.tensors, self.artifact.sha256, self.tokenizer.encode_text, cache_dir
                )
            finally:
                torch.set_num_threads(prev)
        return self.experts

    def enable_kv_codec(self, cache_dir: str | Path | None = None, cfg: HCAConfig | None = None) -> KVCodec:
        """The KV codebooks: from the disk cache (keyed by the artifact's sha256, the fit's
        settings and the calibration digest) or fit on calibration text (minutes, once per
        artifact and settings). The first call's settings stay. Built in a thread of its own
        (inference.fresh_thread): in the caller's, it slowed the engine 2.3x."""
        with self._codec_lock:
            if self.kv_codec is None:
                from .hca import build_kv_codec

                self.kv_codec = run_in_fresh_thread(
                    build_kv_codec,
                    self.model,
                    self.artifact.sha256,
                    self.tokenizer.encode_text,
                    cache_dir or self.kv_cache_dir,
                    cfg,
                )
            return self.kv_codec

    def compute_thread(self) -> ComputeThread:
        """The one thread that runs every engine's torch work over this model
        (inference.compute_thread); started on first use, ended with the model."""
        with self._compute_lock:
            if self._compute is None:
                cpu = self.device.type == "cpu"
                self._compute = ComputeThread((self.threads or torch.get_num_threads()) if cpu else None)
                weakref.finalize(self, self._compute.close)
            return self._compute

    def encode_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        return self.tokenizer.encode_chat(messages, add_generation_prompt=add_generation_prompt)

    def render_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.render(messages, add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Encode untrusted text (special-token strings stay plain text)."""
        return self.tokenizer.encode_text(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self.tokenizer.stop_token_ids
