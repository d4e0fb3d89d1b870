"""Typed schemas of the configs: a wrong type or an unknown choice is refused when the config is
composed.

Each dataclass below is stored in Hydra's ConfigStore under the group ``schema`` and extended by a
YAML file through its defaults list (``- /schema/trainer@_here_`` in configs/trainer/default.yaml).
The YAML files hold the defaults; the schemas hold only types and choices, so no value is written
twice.

The schemas are open to keys they do not name (they subclass ``Dict[str, Any]``): a key added to a
YAML file composes without a schema change, untyped. On the command line Hydra's struct mode still
refuses a key that no file defines (``trainer.epoch=3``). To type a new key, add a field here with
``MISSING`` as its default, and the key with its default and a comment to the YAML file of its
group.

Foundation layer: imports nothing of brats_seg; the choice tuples of the other layers are derived
from the enums here (``PRECISIONS = choices(Precision)``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

SCHEMA_GROUP = "schema"


class Choice(str, Enum):
    """A config choice that behaves as its plain string everywhere (comparison, str(), f-strings,
    JSON).

    Member names equal their values, which is what OmegaConf writes to YAML.
    """

    __str__ = str.__str__
    __format__ = str.__format__


class Precision(Choice):
    auto = "auto"
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


class Strategy(Choice):
    auto = "auto"
    none = "none"
    mirrored = "mirrored"
    multiworker = "multiworker"


class EmptyRule(Choice):
    brats = "brats"
    nan = "nan"


class Normalization(Choice):
    zscore = "zscore"
    minmax = "minmax"
    percentile = "percentile"


class FifthChannel(Choice):
    flair_edges = "flair_edges"


class Plane(Choice):
    axial = "axial"
    sagittal = "sagittal"
    coronal = "coronal"


class SelectionRule(Choice):
    threshold = "threshold"
    tumour = "tumour"
    brain = "brain"


class ResectionCavity(Choice):
    error = "error"
    background = "background"


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


class JobGpus(Choice):
    auto = "auto"
    all = "all"
    one = "one"


class PredictNaming(Choice):
    brats = "brats"
    submission = "submission"


def choices(enum: type[Choice]) -> tuple[str, ...]:
    """The allowed values of a choice, in their declared order."""
    return tuple(member.value for member in enum)


# Each class subclasses Dict[str, Any]: open to keys added in YAML by later work (see the module
# docstring).


@dataclass
class EarlyStoppingSchema(Dict[str, Any]):
    enabled: bool = MISSING
    monitor: str = MISSING
    patience: int = MISSING


@dataclass
class TrainerSchema(Dict[str, Any]):
    """configs/trainer/*.yaml."""

    epochs: int = MISSING
    batch_size: int = MISSING
    steps_per_epoch: Optional[int] = MISSING
    validation_steps: Optional[int] = MISSING
    precision: Precision = MISSING
    strategy: Strategy = MISSING
    cpu_devices: Optional[int] = MISSING
    device: Device = MISSING
    job_gpus: JobGpus = MISSING
    fully_convolutional: bool = MISSING
    run_eagerly: bool = MISSING
    checkpoint_monitor: str = MISSING
    save_last: bool = MISSING
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)
    tensorboard: bool = MISSING
    verbose: Any = MISSING  # auto | Keras' 0 | 1 | 2 (checked by the trainer)
    force: bool = MISSING


@dataclass
class CropSchema(Dict[str, Any]):
    enabled: bool = MISSING
    size: List[int] = MISSING


@dataclass
class PreprocessSchema(Dict[str, Any]):
    normalization: Normalization = MISSING
    percentiles: List[float] = MISSING
    fifth_channel: Optional[FifthChannel] = MISSING
    fifth_channel_sigma: float = MISSING
    crop: CropSchema = field(default_factory=CropSchema)
    context_slices: int = MISSING


@dataclass
class SelectionSchema(Dict[str, Any]):
    rule: SelectionRule = MISSING
    threshold: int = MISSING


@dataclass
class SplitSchema(Dict[str, Any]):
    train: Optional[float] = MISSING
    val: float = MISSING
    test: float = MISSING
    seed: int = MISSING
    folds: Optional[int] = MISSING
    fold: int = MISSING


@dataclass
class AugmentSchema(Dict[str, Any]):
    enabled: bool = MISSING
    flip: bool = MISSING
    rotation_deg: float = MISSING
    scale: float = MISSING
    intensity: float = MISSING
    gamma: float = MISSING
    blur: float = MISSING
    noise: float = MISSING
    lesion_contrast: float = MISSING
    lesion_region: str = MISSING


@dataclass
class SamplingSchema(Dict[str, Any]):
    foreground: Optional[float] = MISSING


@dataclass
class PatchSchema(Dict[str, Any]):
    size: Optional[List[int]] = MISSING


@dataclass
class PostprocessSchema(Dict[str, Any]):
    min_component: Optional[int] = MISSING
    et_min_volume: Optional[int] = MISSING
    min_component_share: Optional[float] = MISSING


@dataclass
class LabelsSchema(Dict[str, Any]):
    resection_cavity: ResectionCavity = MISSING


@dataclass
class DataSchema(Dict[str, Any]):
    """configs/data/brats.yaml (and data/synthetic.yaml, which extends it)."""

    name: str = MISSING
    root: Optional[str] = MISSING
    cases: Optional[List[str]] = MISSING
    cache_dir: str = MISSING
    workers: int = MISSING
    plane: Plane = MISSING
    preprocess: PreprocessSchema = field(default_factory=PreprocessSchema)
    labels: LabelsSchema = field(default_factory=LabelsSchema)
    selection: SelectionSchema = field(default_factory=SelectionSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    augment: AugmentSchema = field(default_factory=AugmentSchema)
    sampling: SamplingSchema = field(default_factory=SamplingSchema)
    patch: PatchSchema = field(default_factory=PatchSchema)


@dataclass
class SynthSchema(Dict[str, Any]):
    """data.synth of configs/data/synthetic.yaml."""

    cases: int = MISSING
    shape: List[int] = MISSING
    seed: int = MISSING


@dataclass
class TrainEvaluateSchema(Dict[str, Any]):
    """The evaluate node of configs/train.yaml."""

    empty_rule: EmptyRule = MISSING
    batch_size: int = MISSING
    overlays: int = MISSING
    lesionwise: bool = MISSING
    tta: bool = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)


@dataclass
class TrainSchema(Dict[str, Any]):
    """The top-level keys of configs/train.yaml (the groups are typed by their own schemas)."""

    seed: int = MISSING
    experiment_id: Optional[str] = MISSING
    study: Any = MISSING
    run_group: str = MISSING
    sweep_name: str = MISSING


@dataclass
class EvaluateOptionsSchema(Dict[str, Any]):
    """The evaluate node of configs/evaluate.yaml (options of scoring a prediction folder)."""

    allow_missing: bool = MISSING


@dataclass
class EvaluateSchema(Dict[str, Any]):
    """configs/evaluate.yaml."""

    run: Any = MISSING  # a run folder, a list of them (an ensemble) or a sweep folder
    pred: Optional[str] = MISSING
    ref: Optional[str] = MISSING
    out: Optional[str] = MISSING
    empty_rule: Optional[EmptyRule] = MISSING
    lesionwise: Optional[bool] = MISSING
    batch_size: int = MISSING
    tta: Optional[bool] = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    evaluate: EvaluateOptionsSchema = field(default_factory=EvaluateOptionsSchema)


@dataclass
class PredictSchema(Dict[str, Any]):
    """configs/predict.yaml."""

    run: Any = MISSING  # a run folder, a list of them (an ensemble) or a sweep folder
    input: str = MISSING
    output: str = MISSING
    batch_size: int = MISSING
    montage_slices: int = MISSING
    empty_rule: EmptyRule = MISSING
    naming: PredictNaming = MISSING
    lesionwise: bool = MISSING
    tta: Optional[bool] = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    brain_box: bool = MISSING


@dataclass
class EdaSchema(Dict[str, Any]):
    """configs/eda.yaml."""

    out: str = MISSING
    overlays: int = MISSING
    montage_case: Optional[str] = MISSING
    gif: bool = MISSING
    seed: int = MISSING


@dataclass
class ModelsSchema(Dict[str, Any]):
    """configs/models.yaml."""

    in_channels: int = MISSING
    height: int = MISSING
    width: int = MISSING
    num_classes: int = MISSING
    names: Any = MISSING  # null, one name or a list of names


@dataclass
class SynthToolSchema(Dict[str, Any]):
    """configs/synth.yaml."""

    out: str = MISSING
    cases: int = MISSING
    shape: List[int] = MISSING
    seed: int = MISSING
    workers: int = MISSING


@dataclass
class TableSchema(Dict[str, Any]):
    """configs/table.yaml."""

    out: Optional[str] = MISSING
    printed: bool = MISSING
    intervals: bool = MISSING
    bootstrap: int = MISSING


@dataclass
class CompareSchema(Dict[str, Any]):
    """configs/compare.yaml."""

    out: Optional[str] = MISSING
    bootstrap: int = MISSING
    seed: int = MISSING


@dataclass
class ReportSchema(Dict[str, Any]):
    """configs/report.yaml."""

    out: Optional[str] = MISSING
    bootstrap: int = MISSING
    overlays: bool = MISSING


class ExportFormat(Choice):
    savedmodel = "savedmodel"


@dataclass
class ExportSchema(Dict[str, Any]):
    """configs/export.yaml."""

    run: Optional[str] = MISSING
    format: ExportFormat = MISSING
    out: Optional[str] = MISSING


# name in the schema group -> schema; the YAML file that extends it names it as /schema/<name>.
SCHEMAS: dict[str, type] = {
    "trainer": TrainerSchema,
    "data": DataSchema,
    "synth": SynthSchema,
    "train": TrainSchema,
    "train_evaluate": TrainEvaluateSchema,
    "evaluate": EvaluateSchema,
    "predict": PredictSchema,
    "eda": EdaSchema,
    "models": ModelsSchema,
    "synth_tool": SynthToolSchema,
    "table": TableSchema,
    "compare": CompareSchema,
    "report": ReportSchema,
    "export": ExportSchema,
}


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    with warnings.catch_warnings():
        # OmegaConf 2.x deprecates structured configs that subclass Dict; it is how a schema stays
        # open to keys it does not name (omegaconf is pinned below 2.4 in pyproject.toml).
        warnings.filterwarnings("ignore", message=".*subclasses `Dict`.*")
        for name, schema in SCHEMAS.items():
            store.store(group=SCHEMA_GROUP, name=name, node=schema)
