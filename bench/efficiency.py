"""Efficiency of the mode-scaled experts: quality and speed per active expert fraction.

    .venv/bin/python bench/efficiency.py [--chunks 16] [--tokens 128] [--repeats 3] [--quick]

Quality: teacher-forced next-token top-1 agreement and mean KL(dense || routed) against the
dense model, on held-out text (GSM8K and MMLU prompts from the routing data, never used by
the fit, which calibrates on Python standard-library docstrings). FFN FLOPs per token (router
included) per fraction. Decode tokens/s at 1 and 32 streams per fraction, measured side by
side with the dense path in one run (fractions interleaved per repeat; medians).

Compressed KV (HCA, `--kv-only` for just this part): the codes' bytes per token against the
fp16 cache (`kv_bytes_ratio`), teacher-forced top-1 agreement and mean KL against the dense
cache on the same held-out text (`kv_top1`, `kv_kl`; `kv_top1_long` on one long chunk), and
decode tokens/s of the dense cache and of each compressed attention path, interleaved.

Side by side with llama.cpp (`--llamacpp`, on by default when its venv exists, see
bench/llamacpp_decode.py): llama.cpp's single-stream decode on the same GGUF, same thread
count, greedy, same prompt ids and token count, interleaved per repeat with the engine's
single-stream runs: the dense path, every speed fraction and the Non-think path (the mode's
own expert fraction from inference/moe/defaults.py, its own run even when that is dense).
Medians of the repeats give `llamacpp_tok_s`, `nonthink_vs_llamacpp` and `dense_vs_llamacpp`
(null, with `llamacpp_reason`, when llama.cpp is absent; the bench still exits 0).

The last line is one JSON object: moe_top1 and moe_kl (maps from fraction to value),
ffn_flops_per_token, decode_tps_1, decode_tps_32 (maps, "dense" and "nonthink" included), the
ratios to the dense path, router_cost_ratio, the llama.cpp fields, the kv_* fields, the
variant x mode table (`variant_mode`, bench/variant_modes.py; `--no-variants` skips it) and
`mhc_gain_64` / `hc_gain_64` (inference/v4/mhc.py; bench/mhc_gain.py has the depth curve).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import (  # noqa: E402
    EmbeddedModel,
    Engine,
    EngineConfig,
)
from inference.fresh_thread import run_in_fresh_thread  # noqa: E402
from inference.moe import EXPERT_KINDS, expert_fraction_for_mode, experts_for  # noqa: E402
from inference.moe.forward import chunk_logits  # noqa: E402
from inference.v4.mhc import gain_report  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _decode_runs import many_tps, run_stream, single_tps  # noqa: E402
from llamacpp_decode import (  # noqa: E402
    LLAMACPP_VENV,
    LlamaCppDecoder,
    median_or_none,
    side_by_side,
    venv_python,
)
from variant_modes import quality as config_quality  # noqa: E402
from variant_modes import table as variant_mode_table  # noqa: E402

FRACTIONS = (0.25, 0.35, 0.5, 0.6, 0.75, 0.92, 1.0)
SPEED_FRACTIONS = (None, 0.35, 0.6, 0.92)
DATA = Path("/work/shared/data/routing")


def heldout_chunks(model: EmbeddedModel, data: Path, n_chunks: int, chunk: int) -> list[list[int]]:
    """GSM8K and MMLU prompts, alternating, as one token stream cut into chunks."""
    texts = []
    for name in ("gsm8k.csv", "mmlu.csv"):
        with (data / name).open(newline="") as fh:
            texts.append([r["prompt"] for r in csv.DictReader(fh)])
    mixed = [t for pair in zip(texts[0], texts[1], strict=False) for t in pair]
    ids: list[int] = []
    for t in mixed:
        ids += model.encode(t + "\n\n")
        if len(ids) >= n_chunks * chunk:
            break
    return [ids[i : i + chunk] for i in range(0, n_chunks * chunk, chunk)]


def quality(model: EmbeddedModel, chunks: list[list[int]], fractions) -> tuple[dict, dict]:
    """(top-1, mean KL) per fraction against the dense model (bench/variant_modes.quality)."""
    q = config_quality(model, chunks, {str(f): (None, f) for f in fractions})
    return {f: v["top1"] for f, v in q.items()}, {f: v["kl"] for f, v in q.items()}


def dropped_work(ex, k: int) -> float:
    """Per-neuron routing's multiply-adds spent on neurons it does not keep (their gate rows,
    and the up rows of candidates not kept) over the dense FFN's: what a separate router's
    cost is for the other kinds (`router_cost_ratio`)."""
    from inference.moe.neurons import candidates_for

    n = ex.n_experts
    return round(((n - k) + (candidates_for(k, n) - k)) / (3 * n), 4)


def kernel_quality(model: EmbeddedModel, chunks: list[list[int]], fractions) -> dict:
    """Top-1 and mean KL against the dense model with every routed row through the decode
    path's kernel (kernels/cpu/sparse_ffn.cpp, 16 rows a call) instead of the twin that
    prefill takes: the quality a decoded token gets."""
    ex = model.enable_experts()
    if not getattr(ex, "kernel", False):
        return {}
    out = {}
    for f in fractions:
        agree, kl = [], []
        for ids in chunks:
            k = torch.full((len(ids),), experts_for(f, ex.n_experts), dtype=torch.long)
            lp = F.log_softmax(chunk_logits(model.model, ids), dim=-1)
            lq = F.log_softmax(chunk_logits(model.model, ids, ex.route(k, kernel_rows=len(ids))), dim=-1)
            agree.append((lq.argmax(-1) == lp.argmax(-1)).float())
            kl.append((lp.exp() * (lp - lq)).sum(-1))
        out[str(f)] = {
            "top1": round(torch.cat(agree).mean().item(), 4),
            "kl": round(torch.cat(kl).mean().item(), 5),
        }
    return out


async def speed(
    model: EmbeddedModel, args: argparse.Namespace, llama: LlamaCppDecoder | None = None
) -> tuple[dict, dict, dict]:
    """Decode tokens/s per fraction at 1 and `--streams` streams (medians, interleaved), plus
    the Non-think path's single stream ("nonthink") and, with `llama`, llama.cpp's in the
    same loop (its per-repeat runs in the third map)."""
    engine = Engine(model, EngineConfig(kv_cache_tokens=16384))
    await engine.start()
    nonthink = expert_fraction_for_mode("non-think")
    singles: list[tuple[str, float | None]] = [(str(f), f) for f in SPEED_FRACTIONS]
    singles.append(("nonthink", nonthink))
    try:
        prompt = model.encode_chat([{"role": "user", "content": "Write a poem about the sea."}])
        await run_stream(engine, prompt, "warm", 8, 0.35)
        await run_stream(engine, prompt, "warm2", 8, None)
        if llama is not None:
            llama.decode(prompt, 8)  # warm-up
        one: dict[str, list[float]] = {name: [] for name, _ in singles}
        many: dict[str, list[float]] = {str(f): [] for f in SPEED_FRACTIONS}
        lc: dict[str, list] = {"tok_s": [], "tok_s_llama": [], "n": [], "head": []}
        for r in range(args.repeats):
            if llama is not None:  # same prompt ids, same token count, greedy
                got = llama.decode(prompt, args.tokens)
                for k in lc:
                    lc[k].append(got.get(k))
            for name, f in singles:  # interleaved: the machine's load hits all alike
                one[name].append(await single_tps(engine, prompt, f"s{r}-{name}", args.tokens, f))
            if args.single_only:
                continue
            for f in SPEED_FRACTIONS:
                many[str(f)].append(await many_tps(model, engine, f"m{r}-{f}", args.tokens, args.streams, f))
        med = {k if k != "None" else "dense": round(statistics.median(v), 1) for k, v in one.items()}
        med32 = {k if k != "None" else "dense": round(statistics.median(v), 1) for k, v in many.items() if v}
        return med, med32, lc
    finally:
        await engine.stop()


async def kv_speed(model: EmbeddedModel, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Decode tokens/s, 1 stream and `--streams` streams, of the dense cache and of the
    compressed one per attention path, measured interleaved per repeat (medians)."""
    configs: dict[str, EngineConfig] = {"dense": EngineConfig(kv_cache_tokens=16384)}
    for path in ("buffer", "codes", "decompress"):
        configs[f"pq-{path}"] = EngineConfig(kv_cache_tokens=16384, kv_compression="pq", pq_attention=path)
    engines = {name: Engine(model, cfg) for name, cfg in configs.items()}
    for e in engines.values():
        await e.start()
    try:
        prompt = model.encode_chat([{"role": "user", "content": "Write a poem about the sea."}])
        for name, e in engines.items():
            await run_stream(e, prompt, f"warm-{name}", 8, None)
        one: dict[str, list[float]] = {n: [] for n in engines}
        many: dict[str, list[float]] = {n: [] for n in engines}
        for r in range(args.repeats):
            for name, e in engines.items():
                one[name].append(await single_tps(e, prompt, f"kv{r}-{name}", args.tokens, None))
            for name, e in engines.items():
                many[name].append(await many_tps(model, e, f"kvm{r}-{name}", args.tokens, args.streams, None))
        return {
            "1": {k: round(statistics.median(v), 1) for k, v in one.items()},
            str(args.streams): {k: round(statistics.median(v), 1) for k, v in many.items()},
        }
    finally:
        for e in engines.values():
            await e.stop()


def kv_part(model: EmbeddedModel, args: argparse.Namespace) -> dict:
    """The compressed KV cache (HCA): bytes against the fp16 cache, agreement with the dense
    cache (teacher-forced on held-out text), decode speed per attention path."""
    from inference.hca.quality import kv_agreement
    from inference.model import KVCache

    t0 = time.perf_counter()
    codec = model.enable_kv_codec()
    res: dict = {"kv_codec_s": round(time.perf_counter() - t0, 1)}
    cfg = model.config
    fp16 = KVCache.bytes_per_token(cfg, torch.float16)
    res["kv_bytes_per_token"] = {"fp16": fp16, "pq": codec.bytes_per_token()}
    res["kv_bytes_ratio"] = round(codec.bytes_per_token() / fp16, 4)
    res["kv_codebook_bytes"] = codec.codebook_bytes()
    res["kv_subspaces"], res["kv_centroids"] = codec.n_sub, codec.n_centroids
    chunks = heldout_chunks(model, args.data, args.chunks, args.chunk)
    res["kv_heldout_tokens"] = sum(len(c) for c in chunks)
    t1 = time.perf_counter()
    # every evaluation pass in a thread of its own: an OpenMP team left in this thread slows
    # the engines measured next by 2.3x (inference/fresh_thread.py)
    top1, kl = run_in_fresh_thread(kv_agreement, model.model, codec, chunks)
    res["kv_top1"], res["kv_kl"] = round(top1, 4), round(kl, 5)
    if args.kv_long:  # one long chunk: positions past the short chunks' (rope angles)
        (long_chunk,) = heldout_chunks(model, args.data, 1, args.kv_long)
        top1, kl = run_in_fresh_thread(kv_agreement, model.model, codec, [long_chunk])
        res["kv_top1_long"], res["kv_kl_long"], res["kv_long_tokens"] = (
            round(top1, 4),
            round(kl, 5),
            args.kv_long,
        )
    res["kv_quality_s"] = round(time.perf_counter() - t1, 1)
    if not args.kv_no_speed:
        res["kv_decode_tps"] = asyncio.run(kv_speed(model, args))
    return res


def start_llamacpp(args: argparse.Namespace, gguf: Path) -> tuple[LlamaCppDecoder | None, str | None]:
    """The llama.cpp worker on the engine's GGUF with the engine's thread count, or None and
    why not (not asked for, not installed, failed to start)."""
    if args.llamacpp is False:
        return None, "not asked for (--no-llamacpp)"
    py = venv_python()
    if py is None:
        return None, f"llama-cpp-python not installed in {LLAMACPP_VENV} (BENCH_LLAMACPP_VENV)"
    try:
        return LlamaCppDecoder(gguf, args.threads, py), None
    except (OSError, RuntimeError) as exc:
        return None, f"llama.cpp worker failed to start: {exc}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--quick", action="store_true", help="4 chunks, 1 repeat, 32 tokens")
    ap.add_argument("--speed-only", action="store_true", help="skip the quality measurement")
    ap.add_argument("--kv-only", action="store_true", help="only the compressed KV cache (HCA)")
    ap.add_argument("--no-kv", action="store_true", help="skip the compressed KV cache")
    ap.add_argument("--kv-long", type=int, default=2048, help="tokens of the long HCA chunk (0: none)")
    ap.add_argument("--kv-no-speed", action="store_true", help="HCA quality and bytes only")
    ap.add_argument(
        "--llamacpp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"llama.cpp side by side (default: on when {LLAMACPP_VENV} has llama_cpp)",
    )
    ap.add_argument("--single-only", action="store_true", help="skip the many-stream decode runs")
    ap.add_argument("--no-variants", action="store_true", help="skip the variant x mode table")
    ap.add_argument(
        "--expert-kind",
        choices=EXPERT_KINDS,
        default="neurons",
        help="neurons: per-neuron gate-first routing (the engine's); groups: 48 experts and a fitted router",
    )
    args = ap.parse_args()
    if args.quick:
        args.chunks, args.repeats, args.tokens = 4, 1, 32
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = EmbeddedModel.load(threads=args.threads)
    kv = {} if args.no_kv else kv_part(model, args)
    if args.kv_only:
        kv["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
        print(json.dumps(kv))
        return
    ex = model.enable_experts(kind=args.expert_kind)
    res: dict = {"load_s_with_plan": round(time.perf_counter() - t0, 1), "n_experts": ex.n_experts}
    res["expert_kind"] = args.expert_kind
    res["expert_size"] = ex.expert_size
    res["router_rank"] = getattr(ex, "rank", None)  # the grouped experts' low-rank router
    res["sparse_ffn_kernel"] = bool(getattr(ex, "kernel", False))
    cfg = model.config
    dense_macs = 3 * cfg.dim * cfg.ffn_dim
    res["router_cost_ratio"] = round(ex.router_macs() / dense_macs, 4)
    flops = {"dense": 2 * dense_macs * cfg.n_layers}
    for f in FRACTIONS:
        k = experts_for(f, ex.n_experts)
        macs = ex.ffn_macs(k) + (ex.router_macs() if k < ex.n_experts else 0)
        flops[str(f)] = 2 * macs * cfg.n_layers
    res["ffn_flops_per_token"] = flops
    res["experts_per_fraction"] = {str(f): experts_for(f, ex.n_experts) for f in FRACTIONS}
    if args.expert_kind == "neurons":  # the gate-first rule's work on neurons it then drops
        ks = {str(f): experts_for(f, ex.n_experts) for f in FRACTIONS}
        res["dropped_work_ratio"] = {f: dropped_work(ex, k) for f, k in ks.items()}
    chunks = heldout_chunks(model, args.data, args.chunks, args.chunk)
    res["heldout_tokens"] = sum(len(c) for c in chunks)
    if not args.speed_only:
        t1 = time.perf_counter()
        res["moe_top1"], res["moe_kl"] = run_in_fresh_thread(quality, model, chunks, FRACTIONS)
        if args.expert_kind == "neurons":
            res["moe_kernel"] = run_in_fresh_thread(kernel_quality, model, chunks, (0.35, 0.6, 0.92))
        res["quality_s"] = round(time.perf_counter() - t1, 1)
    llama, reason = start_llamacpp(args, model.artifact.path)  # the file the engine loaded
    try:
        res["decode_tps_1"], res["decode_tps_32"], lc = asyncio.run(speed(model, args, llama))
    finally:
        if llama is not None:
            res["llamacpp_version"] = llama.info.get("version")
            res["llamacpp_n_batch"] = llama.n_batch
            res["llamacpp_extra_bufts"] = llama.info.get("extra_bufts")
            if llama.fallback:
                res["llamacpp_fallback"] = llama.fallback
            llama.close()
    d1 = res["decode_tps_1"]["dense"]
    res["decode_ratio_1"] = {k: round(v / d1, 3) for k, v in res["decode_tps_1"].items()}
    if res["decode_tps_32"]:
        d32 = res["decode_tps_32"]["dense"]
        res["decode_ratio_32"] = {k: round(v / d32, 3) for k, v in res["decode_tps_32"].items()}
    res["nonthink_expert_fraction"] = expert_fraction_for_mode("non-think")
    llama_tps = median_or_none([v for v in lc["tok_s"] if v]) if llama is not None else None
    tps1 = res["decode_tps_1"]
    res.update(
        side_by_side(
            {"nonthink": tps1["nonthink"], "dense": tps1["dense"], "target_nonthink": tps1.get("0.35")},
            llama_tps,
            reason,
        )
    )
    if llama is not None:
        res["llamacpp_tok_s_llama"] = median_or_none([v for v in lc["tok_s_llama"] if v])
        res["llamacpp_runs"] = {k: lc[k] for k in ("tok_s", "tok_s_llama", "n")}
        res["llamacpp_threads"] = args.threads
    res.update(kv)
    if not args.no_variants:
        t2 = time.perf_counter()
        res.update(variant_mode_table(model, chunks, args))
        res["variant_mode_s"] = round(time.perf_counter() - t2, 1)
    res.update(gain_report(64))
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
