"""Randomised decision invariants: whatever the policy and request, the decision obeys it."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from policy import (
    CostCeilingExceeded,
    DecisionRequest,
    PolicyForbidden,
    PolicyValidationError,
    compile_policy,
    decide,
    validate,
)
from policy.types import MODE_ORDER, MODE_RANK, VARIANT_ORDER, VARIANT_RANK
from tests.policy.conftest import PRICES

MODELS = ("deepseek-v4-flash", "deepseek-v4-pro", "auto")
THINKING = (None, "enabled", "disabled")
EFFORTS = (None, "low", "high", "max", "xhigh")


def random_policy(rng: random.Random) -> dict:
    variants = rng.sample(VARIANT_ORDER, rng.randint(1, 2))
    modes = rng.sample(MODE_ORDER, rng.randint(1, 3))
    doc: dict = {
        "variants": {"allowed": [str(v) for v in variants]},
        "modes": {"allowed": [str(m) for m in modes]},
        "on_over_ask": rng.choice(["downgrade", "reject"]),
        "cost": {"on_exceeded": rng.choice(["downgrade", "reject"])},
        "cascade": {"enabled": rng.random() < 0.5, "models": ["auto", "deepseek-v4-flash"]},
    }
    if rng.random() < 0.6:
        doc["cost"]["max_request_usd"] = str(Decimal(rng.randint(1, 4000)) / 10000)
    if rng.random() < 0.5:
        doc["max_mode"] = str(rng.choice(MODE_ORDER))
    doc["use_cases"] = {
        "a": {"max_mode": str(rng.choice(MODE_ORDER)), "on_over_ask": rng.choice(["downgrade", "reject"])},
        "b": {"max_variant": str(rng.choice(VARIANT_ORDER))},
    }
    return doc


@pytest.mark.parametrize("seed", range(5))
def test_decisions_respect_the_policy(seed):
    rng = random.Random(seed)
    checked = 0
    for _ in range(60):
        doc = random_policy(rng)
        try:
            policy = compile_policy(validate(doc), "r")
        except PolicyValidationError as err:  # caps that leave nothing allowed
            assert all("leaves none of" in e for e in err.errors)
            continue
        for _ in range(25):
            req = DecisionRequest(
                model=rng.choice(MODELS),
                prompt_tokens=rng.randint(0, 50000),
                thinking=rng.choice(THINKING),
                reasoning_effort=rng.choice(EFFORTS),
                use_case=rng.choice([None, "a", "b", "zzz"]),
                max_tokens=rng.choice([None, 1, 500, 4000, 40000]),
            )
            score = rng.random() if rng.random() < 0.8 else None
            rules = policy.rules_for(req.use_case)
            assert rules is not None
            try:
                d = decide(policy, req, PRICES, router_score=score)
            except PolicyForbidden as err:
                # only an explicit over-ask under a reject rule (or an impossible fit) is refused
                assert err.rule is not None
                continue
            except CostCeilingExceeded:
                assert rules.ceiling is not None
                continue
            checked += 1
            assert rules.variant_block[d.variant] is None
            assert rules.mode_block[d.mode] is None
            if rules.ceiling is not None:
                assert d.worst_case_cost_usd <= rules.ceiling
                assert d.worst_case_total_usd <= rules.ceiling
            if req.max_tokens is not None:
                assert d.max_output_tokens == req.max_tokens
            quote = PRICES[d.variant]
            expected = (req.prompt_tokens * quote.cache_miss + d.max_output_tokens * quote.output) / 10**6
            assert d.worst_case_cost_usd == expected
            if d.cascade is not None:
                assert VARIANT_RANK[d.cascade.variant] > VARIANT_RANK[d.variant]
                assert rules.variant_block[d.cascade.variant] is None
                assert rules.mode_block[d.cascade.mode] is None
                assert d.worst_case_total_usd == d.worst_case_cost_usd + d.cascade.worst_case_cost_usd
            else:
                assert d.worst_case_total_usd == d.worst_case_cost_usd
            if req.thinking == "disabled" and rules.mode_block["non-think"] is None:
                assert d.mode == "non-think"
            assert d.model == f"deepseek-v4-{d.variant}"
            assert MODE_RANK[d.mode] >= 0
    assert checked > 200
