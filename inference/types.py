"""Public value types of the engine API: requests, sampling parameters, events, usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_tokens: int | None = None  # None = up to the context length
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0  # 0..20, only with logprobs
    ignore_eos: bool = False  # keep generating past end-of-turn tokens (benchmarks)


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    # Bytes derived by the gateway from the tenant; prefix-cache entries never cross salts.
    cache_salt: bytes = b""
    # None = thinking off; an int = the reasoning segment's budget in tokens.
    reasoning_budget: int | None = None
    # Share of each layer's FFN experts computed per token (0 < f <= 1); None = the dense FFN.
    expert_fraction: float | None = None


@dataclass
class Usage:
    prompt_tokens: int
    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0


@dataclass
class TokenDelta:
    text: str
    token_ids: list[int]
    reasoning: bool = False
    # OpenAI shape: [{"token", "logprob", "bytes", "top_logprobs": [{"token","logprob","bytes"}]}]
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class Compute:
    """What the engine computed for one sequence, counted from its steps."""

    tokens: int  # tokens run through the model: cache misses, recomputation after preemption, decode
    flops: int  # 2 x the linear layers' weights per token (the FFN's active share) + attention
    kv_bytes: int  # the KV cache bytes its context held at the end (tokens x bytes per token)


@dataclass
class Finished:
    finish_reason: str  # "stop" | "length" | "cancelled"
    usage: Usage
    # "measured": counted by the engine that served it (ours, or an upstream's usage);
    # "estimated": the upstream sent none, so the gateway's tokenizer counted it.
    usage_source: str = "measured"
    compute: Compute | None = None  # the embedded engine's own count (None from elsewhere)


@dataclass(frozen=True)
class ModelArtifact:
    name: str
    path: Path
    sha256: str
    license: str
    architecture: str
    quantization: str
    parameter_count: int
    context_length: int


@dataclass(frozen=True)
class EngineConfig:
    # KV cache capacity: tokens (kv_cache_tokens) or bytes (kv_cache_bytes); tokens win if both.
    kv_cache_tokens: int | None = 32768
    kv_cache_bytes: int | None = None
    block_size: int = 16
    max_num_seqs: int = 64  # sequences decoded together in one step
    max_num_batched_tokens: int = 2048  # token budget of one step (chunked prefill)
    enable_prefix_cache: bool = True
    # dense per-row KV copies of decoding sequences (0 = gather from the pages every step)
    decode_buffer_bytes: int = 1 << 30
    # Compressed KV (HCA, docs/efficiency.md): None = the dense cache (fp16/bf16, as always);
    # "pq" = product-quantized codes (one byte per 2 dims: a quarter of the bytes, four times
    # the tokens for the same kv_cache_bytes). The codebooks are the model's (fit on first use
    # and cached on disk, see inference.hca).
    kv_compression: str | None = None
    # decode attention over the codes: "buffer" (decoded rows in the decode buffer, the
    # fastest on a CPU), "codes" (lookup tables over the codes: kernels.pq_attention) or
    # "decompress" (the gathered codes decoded every step)
    pq_attention: str = "buffer"
    # Reasoning: the delimiters written around the reasoning segment (see docs/engine.md).
    think_open: str = "<think>\n"
    think_close: str = "</think>"
    extra: dict[str, Any] = field(default_factory=dict)
