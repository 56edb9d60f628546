"""bench/variant_modes.py's table layout: one row per variant and mode, rows that run the same
engine configuration named alike (so one measurement serves them), the catalog's own."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import variant_modes as vm  # noqa: E402

from inference.variants import EMBEDDED_VARIANTS, VariantConfig  # noqa: E402


def test_every_variant_has_every_mode_with_its_configuration() -> None:
    table = vm.rows(EMBEDDED_VARIANTS)
    assert set(table) == set(EMBEDDED_VARIANTS)
    for variant, modes in table.items():
        assert tuple(modes) == vm.MODES
        vc = EMBEDDED_VARIANTS[variant]
        for mode, row in modes.items():
            assert row["kv"] == vc.kv_compression
            assert row["expert_fraction"] == vc.expert_fraction(mode)
            assert row["config"] == vm.config_name(row["kv"], row["expert_fraction"])
    assert table["flash"]["non-think"]["kv"] == "pq"
    assert table["pro"]["think-max"]["kv"] is None


def test_modes_with_other_fractions_are_other_configurations() -> None:
    fractions = {"non-think": 0.35, "think-high": 0.6, "think-max": None}
    table = vm.rows({"flash": VariantConfig("flash", "pq", fractions), "pro": VariantConfig("pro")})
    flash = {m: r["config"] for m, r in table["flash"].items()}
    assert flash == {
        "non-think": "kv=pq,experts=0.35",
        "think-high": "kv=pq,experts=0.6",
        "think-max": "kv=pq,experts=dense",
    }
    assert {r["config"] for r in table["pro"].values()} == {"kv=full,experts=dense"}
