"""The policy a tenant gets until it sets its own."""

from __future__ import annotations

from functools import cache

from policy.compiled import CompiledPolicy, compile_policy
from policy.document import load

DEFAULT_VERSION = "default"

DEFAULT_POLICY_YAML = """\
description: Built-in default. Both variants and all modes; the router serves 'auto'.
variants:
  allowed: [flash, pro]
  default: flash
modes:
  allowed: [non-think, think-high, think-max]
  default: non-think
  default_thinking: think-high
on_over_ask: downgrade
cost:
  on_exceeded: downgrade
  default_max_tokens: {non-think: 8192, think-high: 32768, think-max: 65536}
router:
  enabled: true
  tiers:
    - {below: 0.5, variant: flash, mode: non-think}
    - {below: 0.8, variant: flash, mode: think-high}
    - {variant: pro, mode: think-high}
cascade:
  enabled: false
"""


@cache
def default_policy() -> CompiledPolicy:
    """The compiled built-in policy (immutable, so caching it is safe)."""
    return compile_policy(load(DEFAULT_POLICY_YAML), DEFAULT_VERSION)
