"""The inner cross-validation that chooses the router's recipe per fold (no test rows seen)."""

from __future__ import annotations

from policy.router.data import Labelled
from policy.router.selection import _inner_folds, groups_by_source, pick


def rows(prompts: list[str], subjects: list[str] | None = None) -> Labelled:
    n = len(prompts)
    return Labelled(prompts, [i % 2 == 0 for i in range(n)], [True] * n, subjects or [])


def test_groups_by_source_and_leave_one_group_out():
    gsm8k = rows(["How many apples?", "How far is it?"])
    mmlu = rows(
        ["Q about law", "Q about atoms", "Q about money"],
        ["professional_law", "college_physics", "econometrics"],
    )
    group_of = groups_by_source(gsm8k, mmlu)
    assert [group_of(p) for p in [*gsm8k.prompts, *mmlu.prompts]] == [
        "gsm8k",
        "gsm8k",
        "humanities",
        "stem",
        "social_sciences",
    ]
    train = Labelled([*gsm8k.prompts, *mmlu.prompts], [True] * 5, [True] * 5)
    inner = _inner_folds(train, group_of)
    assert [name for name, _, _ in inner] == ["gsm8k", "humanities", "social_sciences", "stem"]
    for _, rest, test in inner:
        assert not set(rest.prompts) & set(test.prompts)
        assert sorted(rest.prompts + test.prompts) == sorted(train.prompts)


def test_one_source_falls_back_to_hash_folds():
    train = rows([f"word problem {i}" for i in range(40)])
    inner = _inner_folds(train, lambda _p: "gsm8k")
    assert len(inner) == 4 and sum(len(t.prompts) for _, _, t in inner) == 40
    assert all(name.startswith("split") for name, _, _ in inner)


def test_criterion_prefers_never_below_then_best_worst_margin():
    # candidate 0 has the best mean but dips below TF-IDF once: 1 (never below) wins
    assert pick([[0.10, -0.01], [0.01, 0.02], [0.0, 0.0]], [0.62, 0.58, 0.57]) == 1
    # none never below: the smallest worst shortfall
    assert pick([[0.10, -0.05], [0.01, -0.02], [-0.03, 0.2]], [0.6, 0.5, 0.7]) == 1
