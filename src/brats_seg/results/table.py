"""The study's results table, rebuilt from run folders.

Every run folder found is one row. Only a run whose run.json says ``completed`` shows measured
values; failed, running, interrupted (``running`` but no live process holds its lock) and
not-started runs keep their row with their status and empty metrics, so nothing is dropped and
nothing is invented. A sweep folder's ``multirun.yaml`` says which experiments the sweep asked for,
so jobs that never got a folder are listed as not started. The table reads only files the runs and
Hydra wrote at launch; no end-of-sweep callback is involved.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brats_seg.atomic import atomic_path, write_text
from brats_seg.data.labels import REGIONS
from brats_seg.errors import ConfigError, RunError
from brats_seg.outputs import check_files_beside, files_beside
from brats_seg.results.groups import group_key, varying
from brats_seg.results.stats import bootstrap_mean_ci, fmt_interval, fmt_mean_sd, mean_sd
from brats_seg.runfolder import (
    COMPLETED,
    EDITED,
    METRICS_FILE,
    RunFolder,
    find_run_dirs,
)

MEASURED = ("recall", "f1", "precision", "specificity")
_METRIC_KEY = {
    "recall": "sensitivity",
    "f1": "f1",
    "precision": "precision",
    "specificity": "specificity",
}

# What `brats-seg table` writes into its out folder, beside what is there.
TABLE_FILES = ("results.md", "results.csv", "results.png", "groups.md", "groups.csv")


@dataclass
class ResultRow:
    run_dir: Path
    status: str
    row: int | None = None
    title: str = ""
    experiment_id: str = ""
    model: str = ""
    params: int | None = None
    expected_params: int | None = None
    params_flag: str | None = None
    optimizer: str = ""
    loss: str = ""
    base_model: str = ""
    preprocessing: str = ""
    measured: dict[str, float] = field(default_factory=dict)
    # the study's arithmetic (NaN propagates); None where undefined, absent in older metrics.json
    measured_study: dict[str, float | None] = field(default_factory=dict)
    collapsed: str = ""
    regions: dict[str, dict[str, float]] = field(default_factory=dict)
    lesionwise: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_patient: dict[str, dict[str, float]] = field(default_factory=dict)  # case -> region -> Dice
    empty_rule: str = "brats"  # the rule per_patient was scored with (metrics/regions.py)
    group: str = ""  # the config without seeds, folds and paths (results/groups.py)
    seeds: dict[str, Any] = field(default_factory=dict)
    printed: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds_per_case: float | None = None  # metrics.json's cost block (evaluation)
    train_seconds: float | None = None  # run.json (see training_seconds)
    device: str = ""  # where the evaluation ran


def _load_yaml(path: Path) -> dict[str, Any]:
    """A sweep's multirun.yaml (Hydra's, not a run folder's file)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


def read_run(run_dir: Path) -> ResultRow:
    folder = RunFolder(run_dir)
    info = folder.read() or {}
    status = folder.effective_status()
    if status == COMPLETED and folder.config_path.exists() and folder.config_edited():
        status = EDITED  # its metrics belong to another configuration than the one shown
    return _row_from_config(folder.read_config_dict(), run_dir, status, info)


def _row_from_config(
    cfg: dict[str, Any], run_dir: Path, status: str, info: dict[str, Any]
) -> ResultRow:
    study = cfg.get("study") or {}
    result = ResultRow(
        run_dir=run_dir,
        status=status,
        row=study.get("row"),
        title=study.get("title") or cfg.get("experiment_id") or run_dir.name,
        experiment_id=cfg.get("experiment_id") or "",
        model=(cfg.get("model") or {}).get("name", ""),
        expected_params=study.get("expected_params"),
        params_flag=study.get("params_flag"),
        base_model=study.get("base_model") or "",
        printed=study.get("printed") or {},
        error=info.get("error") or "",
        params=info.get(
            "params"
        ),  # recorded when the model is built, so unfinished runs show it too
    )
    result.optimizer, result.loss, result.preprocessing = _labels(cfg)
    result.group, result.seeds = group_key(cfg), varying(cfg)
    if status == COMPLETED and (run_dir / METRICS_FILE).exists():
        metrics = RunFolder(run_dir).read_metrics()
        result.params = metrics.get("params", result.params)
        if "col_ave" in metrics:  # a run trained on every patient (data.split.test=0) has no scores
            result.measured = {k: metrics["col_ave"][_METRIC_KEY[k]] for k in MEASURED}
        if "col_ave_study" in metrics:
            result.measured_study = {k: metrics["col_ave_study"][_METRIC_KEY[k]] for k in MEASURED}
        result.collapsed = metrics.get("collapsed") or ""
        result.regions = metrics.get("regions", {})
        result.lesionwise = metrics.get("lesionwise") or {}
        result.empty_rule = metrics.get("empty_rule") or "brats"
        result.per_patient = {
            p["case"]: {region: p[region]["dice"] for region in REGIONS if region in p}
            for p in metrics.get("per_patient", [])
            if "case" in p
        }
        cost = metrics.get("cost") or {}
        result.seconds_per_case = cost.get("seconds_per_case")
        result.device = cost.get("device") or ""
        result.train_seconds = training_seconds(info)
    return result


def training_seconds(info: dict[str, Any]) -> float | None:
    """A run's training time from its run.json: the sum of its ``epoch_seconds`` (every epoch it
    kept counted once, however many attempts it took), else (runs from before epoch_seconds) its
    ``train_seconds`` (the attempts that finished training)."""
    epochs = info.get("epoch_seconds")
    if epochs and all(isinstance(s, (int, float)) for s in epochs):
        return float(sum(epochs))
    value = info.get("train_seconds")
    return float(value) if isinstance(value, (int, float)) else None


def wt_dice(r: ResultRow) -> float | None:
    return r.regions.get("WT", {}).get("dice_mean")


def cost_fronts(rows: list[ResultRow]) -> dict[str, list[bool]]:
    """For each cost (``s/case``, ``train s``): which rows are on the Pareto front of mean WT
    Dice against it."""
    from brats_seg.results.pareto import pareto_front

    return {
        "s/case": pareto_front([(wt_dice(r), r.seconds_per_case) for r in rows]),
        "train s": pareto_front([(wt_dice(r), r.train_seconds) for r in rows]),
    }


def experiment_names() -> list[str]:
    from importlib.resources import files

    folder = files("brats_seg.configs") / "experiment"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def swept_experiments(sweep_dir: Path) -> tuple[list[str], list[str]]:
    """The experiments a sweep folder's multirun.yaml asked for, and the sweep's other overrides.

    Only the ``experiment`` override is expanded (a glob, a comma list or one name); ([], []) when
    the folder is not a sweep of experiments.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return [], []
    task = ((_load_yaml(path).get("hydra") or {}).get("overrides") or {}).get("task") or []
    parser = OverridesParser.create()
    wanted: list[str] = []
    others: list[str] = []
    for text in task:
        override = parser.parse_overrides([text])[0]
        if override.key_or_group != "experiment":
            others.append(text)
            continue
        value = override.value()
        if isinstance(value, Glob):
            wanted = value.filter(experiment_names())
        elif isinstance(value, ChoiceSweep):
            wanted = [str(v) for v in value.list]
        else:
            wanted = [str(value)]
    return wanted, others


def not_started_rows(paths: list[Path], rows: list[ResultRow]) -> list[ResultRow]:
    """A row for every experiment that a sweep under ``paths`` asked for but that has no run folder
    yet."""
    from omegaconf import OmegaConf

    from brats_seg.config import compose

    missing = []
    for root in paths:
        for multirun in sorted(root.rglob("multirun.yaml")):
            sweep = multirun.parent
            present = {r.experiment_id for r in rows if sweep in r.run_dir.parents}
            wanted, others = swept_experiments(sweep)
            for name in wanted:
                if name in present:
                    continue
                present.add(name)
                try:
                    cfg = compose("train", [f"experiment={name}", *others])
                except Exception:  # noqa: BLE001  (an experiment deleted since the sweep ran still gets its row)
                    missing.append(
                        ResultRow(
                            run_dir=sweep / name,
                            status="not started",
                            title=name,
                            experiment_id=name,
                        )
                    )
                    continue
                container = OmegaConf.to_container(cfg, resolve=False)
                missing.append(_row_from_config(container, sweep / name, "not started", {}))
    return missing


def _labels(cfg: dict[str, Any]) -> tuple[str, str, str]:
    from brats_seg.results.naming import loss_label, optimizer_label, preprocessing_label

    try:
        return (
            optimizer_label(cfg["optimizer"]),
            loss_label(cfg["loss"]),
            preprocessing_label(cfg["data"]),
        )
    except (KeyError, TypeError):
        return "", "", ""


def collect(paths: list[Path]) -> list[ResultRow]:
    rows = [read_run(d) for d in find_run_dirs(paths)]
    rows += not_started_rows(paths, rows)
    if not rows:
        raise ConfigError(f"no run folders under {', '.join(map(str, paths))}")
    return sorted(rows, key=lambda r: (r.row is None, r.row or 0, str(r.run_dir)))


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _nan_propagated(row: ResultRow, key: str) -> str:
    """The study's Col Ave: "nan" where one class's ratio is undefined; blank if not recorded."""
    if key not in row.measured_study:
        return ""
    value = row.measured_study[key]
    return "nan" if value is None or math.isnan(value) else _num(value)


def _params(value: int | None) -> str:
    return "" if value is None else f"{value} ({value * 4 / 2**20:.2f} MB)"


def lesionwise_columns(r: ResultRow) -> dict[str, str]:
    """Lesion-wise columns: the official convention's Dice and HD95 ("LW"), the 2023 script's Dice
    ("LW23")."""
    official, brats2023 = r.lesionwise.get("brats2024", {}), r.lesionwise.get("brats2023", {})
    rec = {}
    for region in REGIONS:
        rec[f"{region} LW Dice"] = _num(official.get(region, {}).get("dsc_mean"))
    for region in REGIONS:
        rec[f"{region} LW HD95"] = _num(official.get(region, {}).get("hd95_mean"), 2)
    for region in REGIONS:
        rec[f"{region} LW23 Dice"] = _num(brats2023.get(region, {}).get("dice_mean"))
    return rec


def dice_intervals(r: ResultRow, samples: int, seed: int = 0) -> dict[str, str]:
    """Bootstrap 95% interval of the run's mean region Dice over its test patients."""
    rec = {}
    for region in REGIONS:
        values = [
            p[region] for p in r.per_patient.values() if region in p and p[region] is not None
        ]
        low, high = bootstrap_mean_ci(values, samples=samples, seed=seed)
        rec[f"{region} Dice 95% CI"] = fmt_interval(low, high)
    return rec


def table_records(rows: list[ResultRow], printed: bool, intervals: int = 0) -> list[dict[str, str]]:
    """One record per run; ``intervals`` > 0 adds bootstrap 95% intervals of region Dice (that many
    resamples)."""
    # runs evaluated before lesion-wise metrics keep the old table
    with_lesions = any(r.lesionwise for r in rows)
    fronts = cost_fronts(rows)
    records = []
    for i, r in enumerate(rows):
        rec = {
            "#": "" if r.row is None else str(r.row),
            "title": r.title,
            "parameters (size)": _params(r.params),
            "opt": r.optimizer,
            "loss": r.loss,
        }
        for k in MEASURED:
            rec[k] = _num(r.measured.get(k))
        for k in MEASURED:
            rec[f"{k} (NaN propagates)"] = _nan_propagated(r, k)
        rec["base model"] = r.base_model
        rec["preprocessing"] = r.preprocessing
        for region in REGIONS:
            rec[f"{region} Dice"] = _num(r.regions.get(region, {}).get("dice_mean"))
        for region in REGIONS:
            rec[f"{region} HD95"] = _num(r.regions.get(region, {}).get("hd95_mean"), 2)
        if intervals:
            rec.update(dice_intervals(r, intervals))
        if with_lesions:
            rec.update(lesionwise_columns(r))
        rec["s/case"] = _num(r.seconds_per_case, 2)
        rec["train s"] = _num(r.train_seconds, 1)
        rec["Pareto front"] = ", ".join(cost for cost, front in fronts.items() if front[i])
        rec["device"] = r.device
        rec["flags"] = r.collapsed
        rec["status"] = r.status
        if printed:
            rec["study parameters"] = "" if not r.printed else _params(r.printed.get("params"))
            rec["params note"] = r.params_flag or ""
            for k in MEASURED:
                rec[f"study {k}"] = str(r.printed.get(k, "")) if r.printed else ""
        rec["run"] = str(r.run_dir)
        records.append(rec)
    return records


def to_markdown(records: list[dict[str, str]]) -> str:
    header = list(records[0])
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += [
        "| " + " | ".join(rec[h].replace("|", "\\|") for h in header) + " |" for rec in records
    ]
    return "\n".join(lines) + "\n"


def to_csv(records: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def bar_chart(rows: list[ResultRow], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [str(r.row) if r.row is not None else r.run_dir.name[:12] for r in rows]

    def value(v):  # an undefined metric is null in metrics.json
        return np.nan if v is None else v

    f1 = [value(r.measured.get("f1")) for r in rows]
    wt = [value(r.regions.get("WT", {}).get("dice_mean")) for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 3.8))
    ax.bar(x - 0.2, f1, 0.4, label="Col Ave F1 (pooled)")
    ax.bar(x + 0.2, wt, 0.4, label="mean WT Dice (per patient)")
    for i, r in enumerate(rows):
        if r.status != "completed":
            ax.text(i, 0.02, r.status, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_xlabel("experiment (study row)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("F1 and WT Dice per experiment")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


GROUP_METRICS = (
    *MEASURED,
    *(f"{r} Dice" for r in REGIONS),
    *(f"{r} HD95" for r in REGIONS),
    *(f"{r} LW Dice" for r in REGIONS),
)


def _metric_value(r: ResultRow, name: str) -> float | None:
    if name in MEASURED:
        return r.measured.get(name)
    region, what = name.split(" ", 1)
    if what == "Dice":
        return r.regions.get(region, {}).get("dice_mean")
    if what == "HD95":
        return r.regions.get(region, {}).get("hd95_mean")
    return r.lesionwise.get("brats2024", {}).get(region, {}).get("dsc_mean")


def group_rows(rows: list[ResultRow]) -> list[list[ResultRow]]:
    """Rows grouped by config without seeds and folds, in the table's order."""
    groups: dict[str, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault(r.group or str(r.run_dir), []).append(r)
    return list(groups.values())


def _test_sets(done: list[ResultRow]) -> str:
    """How many different test sets (split.json) the completed runs were scored on: one means the
    group's sd is over models alone; more (seeds that re-draw a fractional split, or folds) means it
    mixes test-set and model variance."""
    sets = set()
    for r in done:
        try:
            split = RunFolder(r.run_dir).read_split()
        except RunError:  # no split.json: that run says nothing about its test set
            continue
        sets.add(tuple(sorted(split.get("test") or [])))
    if not sets:
        return ""
    return "one" if len(sets) == 1 else f"{len(sets)} different"


def group_records(rows: list[ResultRow]) -> list[dict[str, str]]:
    """One record per group: mean ± sd (n) of each metric over its completed runs."""
    records = []
    for members in group_rows(rows):
        done = [r for r in members if r.status == "completed"]
        first = members[0]
        varied = sorted({k for r in members for k in r.seeds})
        rec = {
            "#": "" if first.row is None else str(first.row),
            "title": first.title if first.experiment_id else first.run_dir.name,
            "runs": f"{len(done)} of {len(members)} completed",
            "seeds / folds": "; ".join(
                f"{k}=" + ",".join(str(r.seeds.get(k)) for r in members)
                for k in varied
                if len({str(r.seeds.get(k)) for r in members}) > 1
            ),
        }
        rec["test sets"] = _test_sets(done)
        for name in GROUP_METRICS:
            digits = 2 if "HD95" in name else 4
            rec[name] = fmt_mean_sd(*mean_sd([_metric_value(r, name) for r in done]), digits=digits)
        rec["runs folders"] = " ".join(str(r.run_dir) for r in members)
        records.append(rec)
    return records


def write_table(
    paths: list[Path], out: Path, printed: bool = True, intervals: int = 0
) -> list[ResultRow]:
    check_files_beside(out, TABLE_FILES, "table")
    rows = collect(paths)
    records = table_records(rows, printed, intervals)
    groups = group_records(rows)
    with files_beside(out, TABLE_FILES, "table"):
        write_text(out / "results.md", to_markdown(records))
        write_text(out / "results.csv", to_csv(records))
        write_text(
            out / "groups.md",
            "Runs that differ only by seed or fold, as mean ± sd (n) over completed runs. "
            "`test sets`: how many different test sets they were scored on; more than one (a seed "
            "that re-draws the fractional split, data.split.seed=${seed}, or folds) makes the sd "
            "mix test-set and model variance.\n\n" + to_markdown(groups),
        )
        write_text(out / "groups.csv", to_csv(groups))
        bar_chart(rows, out / "results.png")
    return rows
