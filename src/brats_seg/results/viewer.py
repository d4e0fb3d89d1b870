"""What ``brats-seg view`` shows, and the folder it writes (outputs.staged_output): the cases of a
folder of predictions beside their input cases, or a run's test patients, segmented by the run's
model into the view's own ``predictions/`` (as ``brats-seg predict`` writes them). The page itself
is viz/viewer.py's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from brats_seg.data.discovery import CaseFiles
from brats_seg.errors import ConfigError, DataError
from brats_seg.outputs import check_output_dir, staged_output
from brats_seg.runfolder import VIEW_DIR
from brats_seg.viz.viewer import DEFAULT_OPACITY, ViewedCase, write_viewer

COMMAND = "view"
# The sub-folder of ``view run=`` that holds the run's predictions (predict's output).
PREDICTIONS = "predictions"


def default_out(run: str | None, predictions: str | None) -> Path:
    """Where the view goes when ``out`` is not given: RUN_DIR/view, or <predictions>-view beside
    the folder of predictions."""
    if run:
        return Path(run) / VIEW_DIR
    folder = Path(predictions)
    return folder.parent / f"{folder.name}-{COMMAND}"


def view_predictions(
    pred_dir: Path,
    input_path: Path,
    out: Path,
    *,
    wanted: list[str] | None = None,
    opacity: float = DEFAULT_OPACITY,
) -> dict[str, Any]:
    """The view of every predicted case under ``pred_dir`` whose input case is under
    ``input_path`` (``wanted``: only those case ids)."""
    from brats_seg.data.labels import LabelRules

    check_output_dir(out, COMMAND)
    pairs, notes = _matched_predictions(Path(pred_dir), Path(input_path), wanted)
    with staged_output(out, COMMAND) as staging:
        written = write_viewer(
            _viewed(pairs, LabelRules.default()),
            staging,
            f"brats-seg view: {Path(pred_dir).name}",
            opacity,
        )
    return {"out": Path(out), "cases": written["cases"], "notes": notes}


def view_run(
    run_dir: Path,
    out: Path,
    *,
    input_root: Path | None = None,
    wanted: list[str] | None = None,
    opacity: float = DEFAULT_OPACITY,
    batch_size: int = 16,
    allow_incomplete: bool = False,
    use_last_checkpoint: bool = False,
) -> dict[str, Any]:
    """The view of a run's test patients (``wanted``: only those), predicted by its model into
    OUT/predictions; their files are looked for under ``input_root``, by default the run's data."""
    from brats_seg.data.labels import LabelRules
    from brats_seg.inference.predict import predict_cases
    from brats_seg.inference.scoring import prediction_files
    from brats_seg.runfolder import open_run
    from brats_seg.tf_import import import_tensorflow_quietly

    check_output_dir(out, COMMAND)
    opened = open_run(
        run_dir, allow_incomplete=allow_incomplete, use_last_checkpoint=use_last_checkpoint
    )
    cases = _chosen(_run_test_cases(opened, input_root), wanted)
    rules = LabelRules.from_cfg(opened.cfg.data.get("labels"))
    import_tensorflow_quietly()  # after every check: it takes seconds
    with staged_output(out, COMMAND) as staging:
        predicted = predict_cases(
            run_dir,
            None,
            staging / PREDICTIONS,
            shown_dir=Path(out) / PREDICTIONS,
            cases=cases,
            batch_size=batch_size,
            montage_slices=0,
            allow_incomplete=allow_incomplete,
            use_last_checkpoint=use_last_checkpoint,
        )
        files = prediction_files(staging / PREDICTIONS)
        pairs = [(case, files[case.case_id]) for case in cases]
        written = write_viewer(
            _viewed(pairs, rules, shown_dir=Path(out) / PREDICTIONS),
            staging,
            f"brats-seg view: {Path(run_dir).name}, test patients",
            opacity,
        )
    return {
        "out": Path(out),
        "cases": written["cases"],
        "notes": [n for check in predicted["inference"]["run_checks"] for n in check["notes"]],
        "metrics": predicted.get("metrics"),
    }


def _run_test_cases(opened, input_root: Path | None) -> list[CaseFiles]:
    """The run's test patients' files: under ``input_root``, else where the run's data is."""
    from brats_seg.data.dataset import data_root
    from brats_seg.data.discovery import find_cases

    test = sorted(opened.folder.read_split().get("test") or [])
    if not test:
        raise DataError(f"{opened.path}: the split has no test patients")
    root = Path(input_root) if input_root else data_root(opened.cfg.data)
    found = {case.case_id: case for case in find_cases(root)}
    missing = [case_id for case_id in test if case_id not in found]
    if missing:
        where = f"input={root}" if input_root else f"the run's data ({root})"
        raise DataError(
            f"{where}: no case {', '.join(missing[:4])}"
            f"{f' and {len(missing) - 4} more' if len(missing) > 4 else ''} of the run's test "
            "patients; give input=ROOT, the folder that holds them"
        )
    return [found[case_id] for case_id in test]


def _matched_predictions(
    pred_dir: Path, input_path: Path, wanted: list[str] | None
) -> tuple[list[tuple[CaseFiles, Path]], list[str]]:
    """(input case, its prediction) for every case both predicted and found, and notes on those
    that are only one of the two."""
    from brats_seg.inference.predict import input_cases
    from brats_seg.inference.scoring import prediction_files

    predictions = prediction_files(pred_dir)
    cases = {case.case_id: case for case in input_cases(input_path)}
    matched = sorted(set(predictions) & set(cases))
    if not matched:
        raise DataError(
            f"no case id is both predicted in predictions={pred_dir} and found under "
            f"input={input_path}"
        )
    chosen = _chosen([cases[case_id] for case_id in matched], wanted)
    notes = []
    orphans = sorted(set(predictions) - set(cases))
    if orphans:
        notes.append(
            f"{len(orphans)} prediction(s) have no input case under {input_path}, not shown: "
            + ", ".join(orphans[:4])
            + (" ..." if len(orphans) > 4 else "")
        )
    return [(case, predictions[case.case_id]) for case in chosen], notes


def _chosen(cases: list[CaseFiles], wanted: list[str] | None) -> list[CaseFiles]:
    if wanted is None:
        return cases
    ids = {case.case_id: case for case in cases}
    unknown = [case_id for case_id in wanted if case_id not in ids]
    if unknown:
        raise ConfigError(
            f"cases=[{','.join(wanted)}]: no case {', '.join(unknown)} among the {len(ids)} to "
            f"view ({', '.join(list(ids)[:4])}{' ...' if len(ids) > 4 else ''})"
        )
    if not wanted:
        raise ConfigError("cases=[]: name at least one case id, or cases=null for all")
    return [ids[case_id] for case_id in dict.fromkeys(wanted)]


def _viewed(
    pairs: list[tuple[CaseFiles, Path]], rules, shown_dir: Path | None = None
) -> Iterator[ViewedCase]:
    """Each case read and checked (images, truth, prediction on one grid), one at a time;
    ``shown_dir``: where the predictions will be once the view is in place."""
    from brats_seg.data.labels import decode_labels
    from brats_seg.data.nifti import check_geometry, load_case, read_nifti
    from brats_seg.inference.scoring import reference_and_prediction

    for case, pred_path in pairs:
        loaded = load_case(case, rules)
        if case.seg is not None:
            truth, prediction, _ = reference_and_prediction(case, pred_path, rules)
        else:
            truth = None
            raw, image = read_nifti(pred_path)
            check_geometry(
                pred_path,
                raw.shape,
                image.affine,
                case.images["t1"],
                loaded.image.shape[:3],
                loaded.affine,
            )
            prediction = decode_labels(raw, case.convention, str(pred_path), rules)[0]
        yield ViewedCase(
            case_id=case.case_id,
            images=case.images,
            affine=loaded.affine,
            header=loaded.header,
            truth=truth,
            prediction=prediction,
            prediction_file=(shown_dir / pred_path.name) if shown_dir else pred_path.resolve(),
        )
