"""The configs compose to exactly the values recorded in tests/fixtures/config_snapshot.json.

The snapshot was written from the configs as they stood before they were refactored to inherit
(family bases, the study base, the shared tool block); any change to a resolved value, a key, a
Hydra run setting or a model's parameter count shows up here. After an intended change of a config,
rewrite it and review the diff:

    .venv/bin/python tests/cli/test_config_equivalence.py --write
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import pytest

# Found from the repository root: this module also runs as a script, without conftest.py.
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SNAPSHOT = REPO / "tests" / "fixtures" / "config_snapshot.json"
TOOLS = ("eda", "evaluate", "models", "predict", "synth", "table")
# The Hydra settings a config file chooses (the rest is Hydra's own or depends on the machine).
HYDRA_KEYS = ("run", "sweep", "output_subdir", "job_logging", "hydra_logging")
HYDRA_JOB_KEYS = ("name", "chdir", "config")


def _group(name: str) -> list[str]:
    folder = resources.files("brats_seg.configs").joinpath(name)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False, enum_to_str=True)


def _hydra_part(hydra) -> dict:
    from omegaconf import OmegaConf

    out = {
        key: OmegaConf.to_container(hydra[key], resolve=False, enum_to_str=True)
        if OmegaConf.is_config(hydra[key])
        else hydra[key]
        for key in HYDRA_KEYS
    }
    out["job"] = {
        key: OmegaConf.to_container(hydra.job[key], resolve=False)
        if OmegaConf.is_config(hydra.job[key])
        else hydra.job[key]
        for key in HYDRA_JOB_KEYS
    }
    # Under version_base 1.3 an unset hydra.job.chdir means false.
    out["job"]["chdir"] = bool(out["job"]["chdir"])
    return out


def _composed(config_name: str, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf, open_dict

    from brats_seg.config import compose

    cfg = compose(config_name, overrides, return_hydra_config=True)
    hydra = _hydra_part(cfg.hydra)
    with open_dict(cfg):
        del cfg["hydra"]
    return {"config": _plain(cfg), "hydra": hydra, "missing": sorted(OmegaConf.missing_keys(cfg))}


def config_cases() -> dict[str, tuple[str, list[str]]]:
    """Every composition the snapshot records: name -> (config name, overrides)."""
    cases: dict[str, tuple[str, list[str]]] = {"train": ("train", [])}
    for group in ("experiment", "model", "data", "debug", "trainer", "loss", "optimizer"):
        for name in _group(group):
            cases[f"train {group}={name}"] = ("train", [f"{group}={name}"])
    for name in _group("experiment"):
        cases[f"train experiment={name} debug=smoke"] = (
            "train",
            [f"experiment={name}", "debug=smoke"],
        )
    for tool in TOOLS:
        cases[tool] = (tool, [])
    return cases


def current_configs() -> dict[str, dict]:
    return {case: _composed(name, overrides) for case, (name, overrides) in config_cases().items()}


def model_files() -> dict[str, dict]:
    """What the model registry reads for each model config (the `brats-seg models` path)."""
    from brats_seg.models import load_model_config, model_config_names

    return {name: load_model_config(name) for name in model_config_names()}


def parameter_counts() -> dict[str, int]:
    """Parameters of each model config (4 input channels) and of each experiment row's model and
    input."""
    import keras

    from brats_seg.config import compose
    from brats_seg.models import build_model, load_model_config, model_config_names

    built: dict[tuple[str, int], int] = {}

    def count(model_cfg, channels: int) -> int:
        key = (model_cfg["name"], channels)
        if key not in built:
            keras.backend.clear_session()
            built[key] = build_model(model_cfg, (32, 32, channels)).count_params()
        return built[key]

    counts = {f"model {name}": count(load_model_config(name), 4) for name in model_config_names()}
    for name in _group("experiment"):
        cfg = _plain(compose("train", [f"experiment={name}"]))
        channels = 5 if cfg["data"]["preprocess"]["fifth_channel"] else 4
        counts[f"experiment {name}"] = count(cfg["model"], channels)
    return counts


def snapshot() -> dict:
    return {
        "configs": current_configs(),
        "model_files": model_files(),
        "params": parameter_counts(),
    }


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(SNAPSHOT.read_text())


def test_the_snapshot_covers_every_row_and_model(recorded):
    assert len(_group("experiment")) == 22
    for name in _group("experiment") + _group("model"):
        kind = "experiment" if name in _group("experiment") else "model"
        assert f"train {kind}={name}" in recorded["configs"], name
    assert set(recorded["model_files"]) == set(_group("model"))


def _is_core(case: str) -> bool:
    """The study's rows, the models, the data, debug and trainer choices and the tools; the other
    compositions (each loss and optimizer, each row under debug=smoke) run in the slow lane."""
    other = case.startswith(("train loss=", "train optimizer=")) or case.endswith(" debug=smoke")
    return not other


def _check(recorded: dict, cases: list[str]) -> None:
    every = config_cases()
    current = {case: _composed(*every[case]) for case in cases}
    # Compared as JSON text, so that a value turning from 10 into 10.0 counts as a change.
    changed = [case for case in cases if _text(current[case]) != _text(recorded["configs"][case])]
    assert not changed, (
        f"{len(changed)} composition(s) changed, first: {changed[0]}: "
        + _first_difference(current[changed[0]], recorded["configs"][changed[0]])
    )


def test_the_recorded_compositions_are_the_current_ones(recorded):
    assert sorted(config_cases()) == sorted(recorded["configs"])


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_every_row_model_and_tool_composes_as_recorded(recorded):
    _check(recorded, [case for case in config_cases() if _is_core(case)])


@pytest.mark.slow
def test_every_loss_optimizer_and_smoke_row_composes_as_recorded(recorded):
    _check(recorded, [case for case in config_cases() if not _is_core(case)])


def test_model_registry_reads_the_recorded_model_configs(recorded):
    assert _text(model_files()) == _text(recorded["model_files"])


@pytest.mark.slow
def test_parameter_counts_are_as_recorded(recorded):
    assert parameter_counts() == recorded["params"]


def _text(value) -> str:
    return json.dumps(value, sort_keys=True)


def _first_difference(now, before, where: str = "") -> str:
    if isinstance(now, dict) and isinstance(before, dict):
        for key in sorted(set(now) | set(before)):
            if key not in now or key not in before:
                return f"{where}.{key}: {'added' if key in now else 'removed'}"
            if now[key] != before[key]:
                return _first_difference(now[key], before[key], f"{where}.{key}")
    return f"{where}: {before!r} -> {now!r}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/cli/test_config_equivalence.py --write")
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
