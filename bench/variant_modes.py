"""The variant x mode table of the embedded catalog (issue 17), for bench/efficiency.py.

A variant is an engine configuration over one artifact (inference/variants.py) and a mode
picks its expert fraction (inference/moe/defaults.py). Per (variant, mode): what the engine
runs (KV cache, expert fraction), FFN FLOPs per token, KV bytes per token, decode tokens/s at
1 and N streams through the serving path (`VariantEngines`, the engine the embedded backend
picks for the variant, the mode's fraction), and quality against the dense full model
(teacher-forced top-1 agreement and mean KL on held-out text).

Rows that run the same configuration share one measurement, named in `config`: today every
mode runs the dense FFN, so a variant's three modes are one configuration and the table says
so instead of measuring the same thing three times.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import torch
import torch.nn.functional as F
from _decode_runs import many_tps, run_stream, single_tps

from inference import EmbeddedModel, EngineConfig
from inference.fresh_thread import run_in_fresh_thread
from inference.hca.quality import chunk_logits
from inference.model import KVCache
from inference.moe import experts_for
from inference.variants import EMBEDDED_VARIANTS, VariantConfig, VariantEngines

MODES = ("non-think", "think-high", "think-max")


def config_name(kv: str | None, fraction: float | None) -> str:
    return f"kv={kv or 'full'},experts={'dense' if fraction is None else fraction}"


def rows(variants: dict[str, VariantConfig]) -> dict[str, dict[str, dict[str, Any]]]:
    """variant -> mode -> {kv, expert_fraction, config}."""
    return {
        v: {
            m: {
                "kv": vc.kv_compression,
                "expert_fraction": vc.expert_fraction(m),
                "config": config_name(vc.kv_compression, vc.expert_fraction(m)),
            }
            for m in MODES
        }
        for v, vc in variants.items()
    }


def _logits(model: EmbeddedModel, ids: list[int], kv: str | None, fraction: float | None) -> torch.Tensor:
    """[n, V] logits of every position of `ids`: the codes' cache with kv="pq", the FFN the
    fraction selects (None: dense)."""
    codec = model.enable_kv_codec() if kv == "pq" else None
    ffn = None
    if fraction is not None:
        ex = model.enable_experts()
        ffn = ex.route(torch.full((len(ids),), experts_for(fraction, ex.n_experts), dtype=torch.long))
    return chunk_logits(model.model, ids, codec, ffn)


def quality(model: EmbeddedModel, chunks: list[list[int]], configs: dict[str, tuple]) -> dict[str, dict]:
    """config -> {top1, kl} against the dense full model (1.0 / 0.0 for that one, exactly)."""
    measured = {name: c for name, c in configs.items() if c != (None, None)}
    agree: dict[str, list[torch.Tensor]] = {name: [] for name in measured}
    kl: dict[str, list[torch.Tensor]] = {name: [] for name in measured}
    for ids in chunks:
        lp = F.log_softmax(_logits(model, ids, None, None), dim=-1)
        for name, (kv, fraction) in measured.items():
            lq = F.log_softmax(_logits(model, ids, kv, fraction), dim=-1)
            agree[name].append((lq.argmax(-1) == lp.argmax(-1)).float())
            kl[name].append((lp.exp() * (lp - lq)).sum(-1))
    out = {name: {"top1": 1.0, "kl": 0.0} for name in configs if name not in measured}
    for name in measured:
        out[name] = {
            "top1": round(torch.cat(agree[name]).mean().item(), 4),
            "kl": round(torch.cat(kl[name]).mean().item(), 5),
        }
    return out


def ffn_flops(model: EmbeddedModel, fraction: float | None) -> int:
    """FFN FLOPs per token over all layers, the router included when experts are skipped."""
    cfg = model.config
    if fraction is None:
        return 2 * 3 * cfg.dim * cfg.ffn_dim * cfg.n_layers
    ex = model.enable_experts()
    k = experts_for(fraction, ex.n_experts)
    return 2 * (ex.ffn_macs(k) + (ex.router_macs() if k < ex.n_experts else 0)) * cfg.n_layers


def kv_bytes(model: EmbeddedModel, kv: str | None) -> int:
    codec = model.enable_kv_codec() if kv == "pq" else None
    return KVCache.bytes_per_token(model.config, model.kv_dtype, codec)


async def speed(
    model: EmbeddedModel, configs: dict[str, tuple], reps: dict[str, str], args: Any
) -> dict[str, dict[str, float]]:
    """config -> {"1": tok/s, "<N>": tok/s}: through the variant's own engine, configurations
    interleaved per repeat (medians). `reps` names one variant per configuration."""
    engines = VariantEngines.build(model, EngineConfig(kv_cache_tokens=16384))
    await engines.start()
    try:
        prompt = model.encode_chat([{"role": "user", "content": "Write a poem about the sea."}])
        for name, (_, fraction) in configs.items():
            await run_stream(engines.for_variant(reps[name]), prompt, f"vw-{name}", 8, fraction)
        one: dict[str, list[float]] = {n: [] for n in configs}
        many: dict[str, list[float]] = {n: [] for n in configs}
        for r in range(args.repeats):
            for name, (_, fraction) in configs.items():
                engine = engines.for_variant(reps[name])
                one[name].append(await single_tps(engine, prompt, f"v{r}-{name}", args.tokens, fraction))
            if args.single_only:
                continue
            for name, (_, fraction) in configs.items():
                engine = engines.for_variant(reps[name])
                many[name].append(
                    await many_tps(model, engine, f"vm{r}-{name}", args.tokens, args.streams, fraction)
                )
        return {
            name: {"1": round(statistics.median(one[name]), 1)}
            | ({str(args.streams): round(statistics.median(many[name]), 1)} if many[name] else {})
            for name in configs
        }
    finally:
        await engines.stop()


def table(model: EmbeddedModel, chunks: list[list[int]], args: Any) -> dict[str, Any]:
    """{"variant_mode": variant -> mode -> row, "variant_mode_configs": config -> figures}."""
    table_rows = rows(EMBEDDED_VARIANTS)
    configs: dict[str, tuple] = {}
    reps: dict[str, str] = {}
    for v, modes in table_rows.items():
        for row in modes.values():
            configs.setdefault(row["config"], (row["kv"], row["expert_fraction"]))
            reps.setdefault(row["config"], v)
    figures = {
        name: {"ffn_flops_per_token": ffn_flops(model, f), "kv_bytes_per_token": kv_bytes(model, kv)}
        for name, (kv, f) in configs.items()
    }
    for name, q in run_in_fresh_thread(quality, model, chunks, configs).items():
        figures[name].update(q)
    for name, tps in asyncio.run(speed(model, configs, reps, args)).items():
        figures[name]["decode_tps"] = tps
    for modes in table_rows.values():
        for row in modes.values():
            row.update(figures[row["config"]])
    return {"variant_mode": table_rows, "variant_mode_configs": figures, "kv_dtype": str(model.kv_dtype)}
