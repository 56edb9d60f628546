"""Value types of dispatch: pools, replicas, the request a backend serves, where it ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.types import GenerationRequest

BACKENDS = ("embedded", "worker", "vllm", "sglang", "deepseek")
UPSTREAM_DIALECTS = ("vllm", "sglang", "deepseek")
DEVICE_KINDS = ("cpu", "cuda", "rocm", "npu", "gpu")  # gpu: registered before device kinds were split


@dataclass(frozen=True)
class ReplicaSpec:
    url: str  # http(s)://host:port for workers, the /v1 base URL for upstreams, inproc:// embedded
    capacity: int = 64  # concurrent requests it takes


@dataclass(frozen=True)
class PoolConfig:
    name: str
    backend: str  # one of BACKENDS
    device_kind: str = "cpu"
    region: str = "local"
    variants: tuple[str, ...] = ()  # () = every variant
    models: dict[str, str] = field(default_factory=dict)  # variant -> the upstream's model name
    api_key_env: str | None = None  # env var with an upstream's credential (never the value)
    replicas: tuple[ReplicaSpec, ...] = ()

    def serves(self, variant: str) -> bool:
        return not self.variants or variant in self.variants


@dataclass(frozen=True)
class DispatchRequest:
    """What a backend needs: token ids for our own engine, messages for an upstream."""

    generation: GenerationRequest
    messages: list[dict[str, Any]]
    variant: str  # flash | pro
    mode: str  # non-think | think-high | think-max
    model: str  # the API model id (deepseek-v4-flash, ...)
    # The tenant's prefix-cache salt as text, for upstreams (vLLM cache_salt, DeepSeek user_id).
    salt_text: str = ""
    # The client streams: events go out as they come. False: the whole answer is awaited
    # (the dispatcher holds it, so a replica failing mid-answer is retried; upstreams are asked
    # for a stream either way).
    stream: bool = True
    reasoning_effort: str | None = None  # high | max, when thinking


@dataclass
class Placement:
    """Filled in by the dispatcher: where the request ran, and what failed before it."""

    pool: str | None = None
    replica: str | None = None
    backend: str | None = None
    failures: list[str] = field(default_factory=list)  # "replica: reason", in order
    first_token: bool = False  # after this, nothing is retried
