"""Variants as engine configurations over one artifact: the decision says which variant and
mode serve a request, dispatch says where, and this says how the embedded engine runs it.

Flash: the compressed KV cache (HCA, a quarter of the fp16 cache's bytes, so four times the
tokens for the same memory). Pro: the dense fp16/bf16 cache. Both run dense attention (the
sparse attention of `inference.v4.csa_eval` is an evaluation path, not wired into the
serving engine) and the dense FFN in every mode by default (`inference.moe.defaults`: the
routed fractions meet the quality goals but decode no faster on a CPU, docs/efficiency.md;
the gateway's GATEWAY_FLASH_EXPERTS=modes gives Flash's modes 35/60/92% of the FFN's
neurons). One weights load serves both: one
`Engine` per variant over the same `EmbeddedModel`, each with its own KV cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .engine import Engine
from .moe.defaults import MODE_EXPERT_FRACTIONS
from .types import EngineConfig, Finished, GenerationRequest, TokenDelta


@dataclass(frozen=True)
class VariantConfig:
    name: str
    kv_compression: str | None = None  # EngineConfig.kv_compression
    # mode -> active expert fraction (None: the dense FFN); a request's own fraction wins
    expert_fractions: Mapping[str, float | None] = field(default_factory=lambda: dict(MODE_EXPERT_FRACTIONS))

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        return replace(base, kv_compression=self.kv_compression)

    def expert_fraction(self, mode: str) -> float | None:
        return self.expert_fractions.get(mode)


EMBEDDED_VARIANTS: dict[str, VariantConfig] = {
    "flash": VariantConfig("flash", kv_compression="pq"),
    "pro": VariantConfig("pro", kv_compression=None),
}


class VariantEngines:
    """The engines of an embedded model's variants; `for_variant` picks one (the embedded
    backend calls it with the dispatch request's variant). The plain engine interface
    (generate, running, stats) serves the default variant, for callers without a variant."""

    def __init__(
        self, engines: Mapping[str, Any], configs: Mapping[str, VariantConfig], default: str
    ) -> None:
        if default not in engines:
            raise ValueError(f"the default variant {default!r} has no engine")
        self.engines = dict(engines)
        self.configs = dict(configs)
        self.default = default

    @classmethod
    def build(
        cls,
        model: Any,
        base: EngineConfig | None = None,
        variants: Mapping[str, VariantConfig] | None = None,
        default: str = "pro",
    ) -> VariantEngines:
        """One engine per distinct configuration: variants configured alike share one."""
        base = base or EngineConfig()
        configs = dict(variants or EMBEDDED_VARIANTS)
        by_kv: dict[str | None, Engine] = {}
        engines = {}
        for name, vc in configs.items():
            if vc.kv_compression not in by_kv:
                by_kv[vc.kv_compression] = Engine(model, vc.engine_config(base))
            engines[name] = by_kv[vc.kv_compression]
        return cls(engines, configs, default)

    def distinct(self) -> list[Any]:
        """Each engine once (variants may share one)."""
        return list({id(e): e for e in self.engines.values()}.values())

    def for_variant(self, variant: str | None) -> Any:
        return self.engines.get(variant or self.default, self.engines[self.default])

    def request_for(self, variant: str | None, mode: str, request: GenerationRequest) -> GenerationRequest:
        """The request as the variant runs it: its mode's expert fraction unless it has one."""
        vc = self.configs.get(variant or self.default)
        if vc is None or request.expert_fraction is not None:
            return request
        f = vc.expert_fraction(mode)
        return request if f is None else replace(request, expert_fraction=f)

    @property
    def running(self) -> bool:
        return all(e.running for e in self.distinct())

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta | Finished]:
        return self.engines[self.default].generate(request)

    def stats(self) -> dict[str, Any]:
        """The distinct engines' counts summed (gauges, health load), and each variant's."""
        total: dict[str, Any] = {}
        for e in self.distinct():
            for k, v in e.stats().items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        total["variants"] = {name: e.stats() for name, e in self.engines.items()}
        return total

    async def start(self) -> None:
        for e in self.distinct():
            await e.start()

    async def stop(self) -> None:
        for e in self.distinct():
            await e.stop()
