"""The transfer protocol: folds never share a row, baselines are computed, bad CSVs are named."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from policy.router.areas import AREAS, area_of
from policy.router.baselines import fit_length
from policy.router.data import Labelled, read_csv
from policy.router.transfer import disjoint, folds, run_fold, summarise

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "routing"
SUBJECTS = {
    "stem": "college_physics",
    "humanities": "philosophy",
    "social_sciences": "sociology",
    "other": "virology",
}


def _mmlu(n: int = 80, seed: int = 0) -> Labelled:
    rng = np.random.default_rng(seed)
    prompts, weak, strong, subjects = [], [], [], []
    for i in range(n):
        area = list(SUBJECTS)[i % 4]
        words = int(rng.integers(3, 40))
        prompts.append(f"q{i} " + "word " * words + "\nA. x\nB. y\nC. z\nD. w\nAnswer:")
        hard = words > 20  # long prompts are the ones the weak model misses
        weak.append(not hard)
        strong.append(True)
        subjects.append(SUBJECTS[area])
    # the same question filed under two subjects (MMLU does this): it must not straddle a fold
    prompts.append(prompts[0])
    weak.append(weak[0])
    strong.append(strong[0])
    subjects.append(SUBJECTS["humanities"])
    return Labelled(prompts, weak, strong, subjects)


def _gsm(n: int = 40) -> Labelled:
    prompts = [f"Tom has {i} apples. " * (1 + i % 5) + "How many?" for i in range(n)]
    return Labelled(prompts, [i % 5 < 3 for i in range(n)], [True] * n)


def test_every_fold_is_disjoint_and_covers_the_areas():
    fs = list(folds(_gsm(), _mmlu()))
    assert [f.name for f in fs] == [
        "gsm8k->mmlu",
        "mmlu->gsm8k",
        "loao:humanities",
        "loao:other",
        "loao:social_sciences",
        "loao:stem",
        "heldout:gsm8k",
        "heldout:mmlu",
    ]
    for f in fs:
        assert not set(f.train.prompts) & set(f.test.prompts), f.name
        assert f.train.prompts and f.test.prompts
    stem = next(f for f in fs if f.name == "loao:stem")
    assert {area_of(s) for s in stem.test.subjects} == {"stem"}
    # the duplicated question is a stem and a humanities row: left out of training when tested
    human = next(f for f in fs if f.name == "loao:humanities")
    assert human.dropped_from_train == 1 and _mmlu().prompts[0] in human.test.prompts


def test_disjoint_drops_test_prompts_from_training():
    train = Labelled(["a", "b", "c"], [True, False, True], [True, True, True])
    test = Labelled(["b", "d"], [False, True], [True, True])
    fold = disjoint("x", train, test)
    assert fold.train.prompts == ["a", "c"] and fold.dropped_from_train == 1
    with pytest.raises(ValueError, match="empty train"):
        disjoint("y", Labelled(["b"], [True], [True]), test)


def test_areas_partition_the_57_subjects():
    names = [s for group in AREAS.values() for s in group]
    assert len(names) == len(set(names)) == 57
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        area_of("astrology")


def test_baselines_are_computed_from_the_rows():
    fold = disjoint("t", _mmlu(seed=1), _mmlu(seed=2).subset([True] * 80 + [False]))
    row = run_fold(fold, {"length": fit_length}, 256, {})
    # long = hard here: length ranks like the oracle (whose APGR is ~0.75 with half the rows hard)
    assert row["length"]["apgr"] > 0.7
    assert 0.3 < row["random"]["apgr"] < 0.7
    # the same prompts with the labels flipped (short = hard): the figure follows the labels
    flipped = Labelled(fold.test.prompts, [not w for w in fold.test.weak], [True] * 80)
    row2 = run_fold(disjoint("t2", fold.train, flipped), {"length": fit_length}, 256, {})
    assert row2["length"]["apgr"] < 0.5 < row["length"]["apgr"]
    assert 0 < row["length"]["cost_share_at_95"] <= 1


def test_tfidf_baseline_and_summary():
    pytest.importorskip("sklearn")
    from policy.router.baselines import fit_tfidf_lr

    gsm, mmlu = _gsm(), _mmlu()
    cache: dict = {}
    per_fold = {
        f.name: run_fold(
            f, {"length": fit_length, "tfidf_lr": fit_tfidf_lr, "router": fit_length}, 256, cache
        )
        for f in folds(gsm, mmlu, heldout=False)
    }
    s = summarise(per_fold, ["random", "length", "tfidf_lr", "router"])
    assert s["router"] == s["length"]  # the same scorer: the same figures
    assert s["router_minus_tfidf_lr"]["worst_fold"] in per_fold
    assert s["tfidf_lr"]["loao_apgr_min"] <= s["tfidf_lr"]["loao_apgr_max"]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_bad_csv_errors_name_the_row(tmp_path):
    missing = _write(tmp_path / "m.csv", ["prompt", "weak_correct"], [["x", "True"]])
    with pytest.raises(ValueError, match="header row: missing column.*strong_correct"):
        read_csv(missing)
    rows = [["two\nlines", "True", "False"], ["ok", "1", "0"], ["bad", "0.7", "True"]]
    bad = _write(tmp_path / "b.csv", ["prompt", "weak_correct", "strong_correct"], rows)
    with pytest.raises(ValueError, match=r"row 3 \(line 5\): column weak_correct expected True/False.*'0.7'"):
        read_csv(bad)
    short = tmp_path / "s.csv"
    short.write_text("prompt,weak_correct,strong_correct\nx,True\n")
    with pytest.raises(ValueError, match="row 1"):
        read_csv(short)


def test_cli_reports_a_bad_csv_cleanly(tmp_path):
    bad = _write(tmp_path / "b.csv", ["prompt", "weak_correct", "strong_correct"], [["x", "yes", "maybe"]])
    result = CliRunner().invoke(cli, ["router", "eval", "--data", str(bad)])
    assert result.exit_code == 1 and "row 1" in result.output and "strong_correct" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "mmlu.csv").exists(), reason="routing data not present")
def test_transfer_protocol_on_the_routing_data():
    pytest.importorskip("sklearn")
    from policy.router.transfer import transfer_report

    # one fold keeps it short (the whole protocol is bench/router_transfer.py, ~6.5 min)
    report = transfer_report(DATA, heldout=False, only=("gsm8k->mmlu",))
    fold = report["folds"]["gsm8k->mmlu"]
    assert (fold["train_rows"], fold["test_rows"]) == (1319, 14042)
    assert abs(fold["random"]["apgr"] - 0.5) < 0.02
    # the figures docs/routing.md quotes for this fold (router 0.586, TF-IDF 0.473)
    assert fold["router"]["apgr"] > fold["tfidf_lr"]["apgr"] + 0.05
    s = report["summary"]
    assert s["router"]["transfer_apgr_mean"] == fold["router"]["apgr"]


def test_each_training_set_is_fitted_once():
    fits = []

    def counting(train):
        fits.append(len(train.prompts))
        return fit_length(train)

    cache: dict = {}
    names = [f.name for f in folds(_gsm(), _mmlu())]
    for f in folds(_gsm(), _mmlu()):
        run_fold(f, {"router": counting}, 256, cache)
    assert len(names) == 8 and len(fits) == 7  # the two held-out folds share their training rows
