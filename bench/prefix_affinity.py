"""Prefix affinity: cache-hit ratio and cost with two real pool workers, affinity on vs off.

Two `gateway worker` processes (the embedded model, each with its own prefix cache) behind one
gateway (a pools file with one `backend: worker` pool of two replicas, GATEWAY_EMBEDDED_ENGINE
=false). Several tenants share long system prompts (~400 tokens each) and ask short, varied
questions (max_tokens small). The same request sequence runs twice, each time with freshly
started workers (empty caches): GATEWAY_DISPATCH_AFFINITY=false (the dispatcher takes the
least-loaded replica, ties at random) and =true (consistent hashing of the tenant's salt and
the prompt's first tokens, bounded load). The hit ratio is the sum of the
prompt_cache_hit_tokens over the sum of prompt_tokens in the usage the client receives; the
cost is the sum of the answers' exact `cost_usd`.

A prefix a replica has not seen costs a miss; with k requests per (tenant, prompt) on two
replicas, affinity misses it once, random choice about 2 - 2^(1-k) times (k=2: 1.5, k=3:
1.75), so affinity's advantage is largest when each prefix is seen a few times per replica's
cache lifetime, the regime of many tenants and prompts. `--per-prefix` sets k.

    .venv/bin/python bench/prefix_affinity.py [--quick] [--tenants 4] [--prompts 2] [--per-prefix 3]

The last line is one JSON object (hit_ratio_affinity, hit_ratio_random, cost_affinity_usd,
cost_random_usd, hit_ratio_gain, cost_ratio_random_over_affinity, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

# The checkout first and bench/ last on the path, not first (where Python puts a script's
# folder): a bench module named like one of the project's packages would shadow it (the
# editable install's finder is only reached after the path).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from _gateway_proc import (  # noqa: E402
    GATEWAY,
    GatewaySetup,
    Processes,
    free_port,
    sigterm_as_interrupt,
    wait_http,
)

COMPANIES = [
    "Northwind Freight",
    "Lumen Dental Group",
    "Kestrel Insurance",
    "Orbital Bikes",
    "Cedar Legal",
    "Arcadia Games",
]
ROLES = ["customer support assistant", "internal policy assistant", "sales desk assistant"]
TOPICS = [
    "refunds", "shipping delays", "account security", "invoices", "warranty claims", "data privacy",
    "opening hours", "contract renewals", "damaged goods", "loyalty points", "escalations", "payment plans",
]  # fmt: skip
RULES = [
    "Always greet the customer by name when it is known and keep a calm, friendly tone.",
    "Never promise a delivery date that the logistics system has not confirmed in writing.",
    "Quote prices only from the current price list and say when a price is an estimate.",
    "Escalate to a human agent when the customer asks for it twice or sounds distressed.",
    "Do not ask for full card numbers, passwords or one-time codes under any circumstances.",
    "Summarise the customer's problem in one sentence before proposing a solution.",
    "Offer at most two options at a time and explain the trade-off of each in plain words.",
    "When a policy forbids a request, name the policy and suggest the closest allowed path.",
    "Record every promise you make in the case notes so that colleagues can follow up.",
    "Use metric units and the customer's local currency unless they ask for something else.",
]
QUESTIONS = [
    "Where is my order?", "Can I get a refund?", "How do I reset my password?", "What are your hours?",
    "My parcel arrived damaged.", "Can I change my delivery address?", "Do you ship abroad?",
    "How long is the warranty?", "I was charged twice.", "Can I pay in instalments?",
    "How do I close my account?", "Is my data shared with anyone?", "Can I speak to a person?",
    "What is your returns policy?", "How do loyalty points work?", "Can I upgrade my plan?",
]  # fmt: skip


def system_prompt(tenant: int, prompt: int, target_words: int = 300) -> str:
    """A long, realistic system prompt, distinct from its first words (~1.3 tokens a word)."""
    rng = random.Random(tenant * 1000 + prompt)
    company = COMPANIES[tenant % len(COMPANIES)]
    role = ROLES[prompt % len(ROLES)]
    parts = [f"{company} {role}, edition {prompt + 1}. You are the {role} of {company}."]
    while sum(len(p.split()) for p in parts) < target_words:
        topic = rng.choice(TOPICS)
        rule = rng.choice(RULES)
        parts.append(
            f"On {topic}: {rule} Case reference prefix {company[:3].upper()}-{rng.randint(100, 999)}."
        )
    return " ".join(parts)


def workload(tenants: int, prompts: int, per_prefix: int, seed: int = 7) -> list[tuple[int, int, str]]:
    """(tenant, prompt, question) in a fixed shuffled order, the same for both runs."""
    rng = random.Random(seed)
    items = [
        (t, p, rng.choice(QUESTIONS))
        for t in range(tenants)
        for p in range(prompts)
        for _ in range(per_prefix)
    ]
    rng.shuffle(items)
    return items


def pools_yaml(ports: list[int]) -> str:
    replicas = "\n".join(f"      - url: http://127.0.0.1:{p}\n        capacity: 8" for p in ports)
    return f"""pools:
  - name: cpu-workers
    device_kind: cpu
    vendor: intel
    software_stack: CPU
    region: local
    variants: [flash, pro]
    backend: worker
    replicas:
{replicas}
"""


async def send_all(
    url: str,
    keys: list[str],
    prompts: dict[tuple[int, int], str],
    items: list[tuple[int, int, str]],
    conc: int,
) -> list[dict[str, Any]]:
    usages: list[dict[str, Any]] = [{} for _ in items]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t, p, question = items[i]
            body = {
                "model": "deepseek-v4-flash",
                "max_tokens": 4,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": prompts[(t, p)]},
                    {"role": "user", "content": question},
                ],
            }
            response = await client.post(url, json=body, headers={"authorization": f"Bearer {keys[t]}"})
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {response.text[:300]}")
            usages[i] = response.json()["usage"]

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(conc)))
    return usages


def run_phase(
    setup: GatewaySetup,
    log_dir: Path,
    affinity: bool,
    keys: list[str],
    prompts: dict[tuple[int, int], str],
    items: list[tuple[int, int, str]],
    worker_ports: list[int],
    token: str,
    conc: int,
) -> dict[str, Any]:
    """Fresh workers (empty prefix caches) and a gateway with affinity on or off."""
    name = "affinity" if affinity else "random"
    with Processes(log_dir) as procs:
        worker_env = {**setup.env, "GATEWAY_WORKER_TOKEN": token, "GATEWAY_THREADS": "1"}
        workers = [
            procs.start(
                f"{name}-worker-{i}",
                [GATEWAY, "worker", "--pool", "cpu-workers", "--device", "cpu", "--port", str(port)],
                worker_env,
            )
            for i, port in enumerate(worker_ports)
        ]
        for w, port in zip(workers, worker_ports, strict=True):
            wait_http(f"http://127.0.0.1:{port}/livez", w, timeout=600)
        port = free_port()
        gw_env = {
            **setup.env,
            "GATEWAY_WORKER_TOKEN": token,
            "GATEWAY_DISPATCH_AFFINITY": str(affinity).lower(),
        }
        gateway = procs.start(f"{name}-gateway", [GATEWAY, "serve", "--port", str(port)], gw_env)
        wait_http(f"http://127.0.0.1:{port}/readyz", gateway)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        started = time.perf_counter()
        usages = asyncio.run(send_all(url, keys, prompts, items, conc))
        elapsed = time.perf_counter() - started
    prompt_tokens = sum(u["prompt_tokens"] for u in usages)
    hit_tokens = sum(u["prompt_cache_hit_tokens"] for u in usages)
    cost = sum((Decimal(u["cost_usd"]) for u in usages), Decimal(0))
    return {
        "requests": len(usages),
        "prompt_tokens": prompt_tokens,
        "hit_tokens": hit_tokens,
        "hit_ratio": round(hit_tokens / prompt_tokens, 4) if prompt_tokens else 0.0,
        "cost_usd": str(cost),
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="cache hits and cost with prefix affinity on vs off")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 tenants x 1 prompt x 2")
    parser.add_argument("--tenants", type=int, default=None, help="default 4")
    parser.add_argument("--prompts", type=int, default=None, help="system prompts per tenant (default 2)")
    parser.add_argument("--per-prefix", type=int, default=None, help="requests per tenant prompt (default 3)")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    tenants = args.tenants or (2 if args.quick else 4)
    n_prompts = args.prompts or (1 if args.quick else 2)
    per_prefix = args.per_prefix or (2 if args.quick else 3)
    started = time.perf_counter()
    with sigterm_as_interrupt():
        setup = GatewaySetup("sqlite")
        try:
            worker_ports = [free_port(), free_port()]
            setup.prepare(pools_yaml(worker_ports))
            keys = [setup.tenant(f"tenant-{t}") for t in range(tenants)]
            prompts = {(t, p): system_prompt(t, p) for t in range(tenants) for p in range(n_prompts)}
            items = workload(tenants, n_prompts, per_prefix)
            token = "bench-worker-" + os.urandom(16).hex()
            phases = {
                affinity: run_phase(
                    setup, setup.dir, affinity, keys, prompts, items, worker_ports, token, args.concurrency
                )
                for affinity in (False, True)
            }
        finally:
            setup.cleanup()
    on, off = phases[True], phases[False]
    result = {
        "bench": "prefix_affinity",
        "tenants": tenants,
        "prompts_per_tenant": n_prompts,
        "requests_per_prefix": per_prefix,
        "requests": len(items),
        "concurrency": args.concurrency,
        "mean_prompt_tokens": round(on["prompt_tokens"] / len(items), 1),
        "hit_ratio_affinity": on["hit_ratio"],
        "hit_ratio_random": off["hit_ratio"],
        "hit_ratio_gain": round(on["hit_ratio"] / off["hit_ratio"], 2) if off["hit_ratio"] else None,
        "cost_affinity_usd": on["cost_usd"],
        "cost_random_usd": off["cost_usd"],
        "cost_ratio_random_over_affinity": round(float(Decimal(off["cost_usd"]) / Decimal(on["cost_usd"])), 3)
        if Decimal(on["cost_usd"])
        else None,
        "affinity": on,
        "random": off,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
