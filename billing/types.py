"""Small shared vocabulary of the billing room (policy imports `Variant` from here)."""

from __future__ import annotations

from enum import StrEnum


class Variant(StrEnum):
    """The served model variant; the value is what usage records and price files use."""

    FLASH = "flash"
    PRO = "pro"


class TokenClass(StrEnum):
    """The three metered token classes. Reasoning tokens are billed as OUTPUT."""

    CACHE_HIT = "cache_hit"
    CACHE_MISS = "cache_miss"
    OUTPUT = "output"


# Reasoning modes are plain strings in billing (the policy room owns their meaning).
MODES: tuple[str, ...] = ("non-think", "think-high", "think-max")
