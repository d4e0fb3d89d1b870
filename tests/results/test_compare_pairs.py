"""`compare` pairs every patient on the BraTS empty-region rule and says which pairs it leaves out
and when the Wilcoxon test cannot reach p < 0.05 (issue 25, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brats_seg.atomic import write_json
from brats_seg.metrics.regions import region_scores
from brats_seg.results.compare import Side, compare_sides, compare_text, load_side
from brats_seg.results.table import ResultRow

SHAPE = (10, 10, 10)
CUBE = (slice(2, 6), slice(2, 6), slice(2, 6))  # 64 voxels


def _write_run(run_dir: Path, scores: dict[str, dict], empty_rule: str) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("experiment_id: x\nmodel:\n  name: unet\n")
    (run_dir / "run.json").write_text(json.dumps({"status": "completed"}))
    per_patient = [{"case": case, **s} for case, s in scores.items()]
    write_json(run_dir / "metrics.json", {"per_patient": per_patient, "empty_rule": empty_rule})


def _eight_patients() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Six patients with an enhancing tumour, two with edema only. A segments the six a little
    worse than B, and predicts no ET where there is none; B hallucinates ET on the two."""
    ref, pred_a, pred_b = {}, {}, {}
    for i in range(8):
        case = f"P{i}"
        r, a, b = (np.zeros(SHAPE, np.uint8) for _ in range(3))
        if i < 6:
            r[CUBE] = 3
            a[3:7, 2:6, 2:6] = 3  # shifted by one voxel: Dice 0.75
            b[CUBE] = 3
            b.reshape(-1)[np.flatnonzero(b)[: i + 1]] = 0  # i + 1 voxels missed: Dice > 0.96
        else:
            r[CUBE] = 2
            a[CUBE] = 2
            b[CUBE] = 2
            b[8, 8, 8] = 3  # a hallucinated ET voxel
        ref[case], pred_a[case], pred_b[case] = r, a, b
    return ref, pred_a, pred_b


def test_compare_pairs_nan_rule_runs_on_the_brats_rule_and_keeps_the_deciding_patients(tmp_path):
    ref, pred_a, pred_b = _eight_patients()
    for name, preds in (("A", pred_a), ("B", pred_b)):
        scores = {c: region_scores(preds[c], ref[c], empty_rule="nan") for c in ref}
        _write_run(tmp_path / name / "run1", scores, "nan")
    a, b = load_side(str(tmp_path / "A")), load_side(str(tmp_path / "B"))
    result = compare_sides(a, b, samples=2000)
    et = result["regions"]["ET"]
    # per case on the BraTS rule: A 0.75 on six and 1 on the two without ET; B > 0.96, then 0
    b_six = [2 * (64 - k) / (128 - k) for k in range(1, 7)]
    assert et["n"] == 8 and et["dropped"] == []
    assert et["mean_a"] == pytest.approx((6 * 0.75 + 2) / 8)
    assert et["mean_b"] == pytest.approx(sum(b_six) / 8)
    assert et["mean_difference"] > 0  # A is better; pairing only the six said B was
    assert et["wilcoxon_p"] > 0.05
    assert any("empty_rule=nan" in note for note in result["notes"])
    assert "| ET | 8 | 8 |" in compare_text(result)


def test_compare_lists_every_dropped_pair_with_its_reason(tmp_path):
    ref, pred_a, pred_b = _eight_patients()
    scores_a = {c: region_scores(pred_a[c], ref[c]) for c in ref}
    scores_a["P0"]["TC"]["dice"] = float("nan")  # undefined under the BraTS rule: cannot be paired
    scores_b = {c: region_scores(pred_b[c], ref[c]) for c in ref if c != "P7"}
    _write_run(tmp_path / "A" / "run1", scores_a, "brats")
    _write_run(tmp_path / "B" / "run1", scores_b, "brats")
    result = compare_sides(load_side(str(tmp_path / "A")), load_side(str(tmp_path / "B")), 500)
    tc = result["regions"]["TC"]
    assert [d["case"] for d in tc["dropped"]] == ["P0", "P7"] and tc["n"] == 6
    reason = tc["dropped"][0]["reason"]
    assert reason.startswith("A: run") and "empty_rule=brats" in reason
    assert tc["dropped"][1]["reason"] == "tested on A only"
    assert [d["case"] for d in result["regions"]["WT"]["dropped"]] == ["P7"]
    text = compare_text(result)
    assert "TC: 2 patient(s) left out of the pairs: P0 (A: run" in text


def _side(label: str, dice: dict[str, float]) -> Side:
    return Side(
        label=label,
        runs=[ResultRow(run_dir=Path(label), status="completed")],
        patients={c: {"WT": v, "TC": v, "ET": v} for c, v in dice.items()},
    )


def test_wilcoxon_note_counts_only_non_zero_differences():
    # six pairs, one of them equal: scipy tests five, and five can give at best p = 2 / 2**5
    a = _side("A", {f"P{i}": 0.9 for i in range(6)})
    b = _side("B", {"P0": 0.9, **{f"P{i}": 0.9 - 0.01 * i for i in range(1, 6)}})
    result = compare_sides(a, b, samples=500)
    wt = result["regions"]["WT"]
    assert (wt["n"], wt["nonzero"]) == (6, 5)
    assert wt["smallest_p"] == pytest.approx(2 / 2**5)
    assert wt["wilcoxon_p"] == pytest.approx(2 / 2**5)
    notes = [n for n in result["notes"] if n.startswith("WT: Too few patients")]
    assert len(notes) == 1 and "5 with a non-zero difference" in notes[0]
    assert "unreachable" in notes[0]
    # six non-zero differences can reach it: no note
    b6 = _side("B", {f"P{i}": 0.9 - 0.01 * (i + 1) for i in range(6)})
    reachable = compare_sides(a, b6, samples=500)
    assert reachable["regions"]["WT"]["wilcoxon_p"] == pytest.approx(2 / 2**6)
    assert not any("Too few" in n for n in reachable["notes"])


def test_groups_say_whether_their_runs_share_one_test_set(tmp_path):
    """mean ± sd over seeds is over models only when the runs were scored on one test set; the
    group says how many test sets its runs had (the run's seed re-draws a fractional split)."""
    from brats_seg.results.table import group_records

    def run(name: str, test: list[str]) -> ResultRow:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "split.json").write_text(json.dumps({"train": [], "val": [], "test": test}))
        return ResultRow(run_dir=folder, status="completed", group="g", seeds={"seed": name})

    same = group_records([run("s1", ["P1", "P2"]), run("s2", ["P2", "P1"])])
    assert same[0]["test sets"] == "one"
    redrawn = group_records([run("s3", ["P1", "P2"]), run("s4", ["P3", "P1"])])
    assert redrawn[0]["test sets"] == "2 different"
