"""Variants as engine configurations: the catalog, the engine per variant, the mode's expert
fraction (no model: the engines are plain placeholders here; the slow test in
test_hca_engine.py serves both variants on the real model)."""

import pytest

from inference.types import EngineConfig, GenerationRequest, SamplingParams
from inference.variants import EMBEDDED_VARIANTS, VariantConfig, VariantEngines


def test_the_catalog_flash_compressed_pro_dense_both_dense_ffn():
    assert EMBEDDED_VARIANTS["flash"].kv_compression == "pq"
    assert EMBEDDED_VARIANTS["pro"].kv_compression is None
    for vc in EMBEDDED_VARIANTS.values():
        assert all(vc.expert_fraction(m) is None for m in ("non-think", "think-high", "think-max"))
    base = EngineConfig(kv_cache_tokens=1024, block_size=32)
    flash = EMBEDDED_VARIANTS["flash"].engine_config(base)
    assert (flash.kv_compression, flash.kv_cache_tokens, flash.block_size) == ("pq", 1024, 32)
    assert EMBEDDED_VARIANTS["pro"].engine_config(base) == base


def test_engine_per_variant_and_the_default():
    flash, pro = object(), object()
    ve = VariantEngines({"flash": flash, "pro": pro}, EMBEDDED_VARIANTS, "pro")
    assert ve.for_variant("flash") is flash and ve.for_variant("pro") is pro
    assert ve.for_variant(None) is pro and ve.for_variant("unknown") is pro
    assert ve.distinct() == [flash, pro]
    shared = VariantEngines({"flash": pro, "pro": pro}, EMBEDDED_VARIANTS, "pro")
    assert shared.distinct() == [pro]
    with pytest.raises(ValueError, match="default"):
        VariantEngines({"flash": flash}, EMBEDDED_VARIANTS, "pro")


def test_the_mode_sets_the_variants_expert_fraction_unless_the_request_has_one():
    configs = {
        "flash": VariantConfig("flash", "pq", {"non-think": 0.35, "think-max": None}),
        "pro": VariantConfig("pro"),
    }
    ve = VariantEngines({"flash": object(), "pro": object()}, configs, "pro")
    req = GenerationRequest("r", [1, 2], SamplingParams())
    assert ve.request_for("flash", "non-think", req).expert_fraction == 0.35
    assert ve.request_for("flash", "think-max", req) is req
    assert ve.request_for("pro", "non-think", req) is req
    own = GenerationRequest("r", [1, 2], SamplingParams(), expert_fraction=0.6)
    assert ve.request_for("flash", "non-think", own) is own
