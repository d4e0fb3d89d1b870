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

Each field may also carry a domain (``epochs: int = option(at_least(1))``), and a schema may add
rules that relate its fields (``fold < folds``, in ``RULES``). ``check_domains`` walks a composed
config, finds the schema of every node from the node itself, and raises ConfigError naming the first
key whose value lies outside its domain, its value and what is allowed. Every command calls it
(brats_seg.config.check_options) right after composition, before any folder is made. A model's
options are typed and checked by brats_seg.models.options (the train command's check).

Also here: ``to_plain``, the one way a config node becomes plain dicts and lists, and
``run_setting``, the rule of evaluate and predict that null means the run's own setting.

Foundation layer: imports only brats_seg.errors; the choice tuples of the other layers are derived
from the enums here (``PRECISIONS = choices(Precision)``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from brats_seg.errors import ConfigError

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


class NumberedChoice(Choice):
    """A choice whose members are numbers such as years: Hydra parses ``key=2017`` as the integer
    2017, which is taken as the member ``'2017'``."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.__members__.get(str(value))
        return None


# The label values of a segmentation: auto, the ones the case's file names imply; 2017: BraTS
# 2017-2021 (ET is 4); 2023: BraTS 2023 (ET is 3); 2024: BraTS 2023 labels plus 4, the
# post-treatment resection cavity. (Members named by the functional API: a name cannot start with a
# digit in a class body.)
LabelConvention = NumberedChoice(
    "LabelConvention", {name: name for name in ("auto", "2017", "2023", "2024")}
)


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


class InferenceBackend(Choice):
    """The runtime of the model's forward pass in evaluate and predict (inference/backends.py)."""

    keras = "keras"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    openvino_int8 = "openvino_int8"
    auto = "auto"


class LesionRegion(Choice):
    tumour = "tumour"
    edema = "edema"


class TuneObjective(Choice):
    """What a trial of an Optuna search reports (configs/train.yaml, tune.objective)."""

    val_wt_dice = "val_wt_dice"
    val_tc_dice = "val_tc_dice"
    val_et_dice = "val_et_dice"
    val_loss = "val_loss"


# The direction Optuna optimises each objective in: the one home of that fact.
OBJECTIVE_DIRECTIONS = {
    TuneObjective.val_wt_dice: "maximize",
    TuneObjective.val_tc_dice: "maximize",
    TuneObjective.val_et_dice: "maximize",
    TuneObjective.val_loss: "minimize",
}


def objective_direction(objective: str) -> str:
    """``maximize`` or ``minimize``: how Optuna treats ``objective`` (a TuneObjective)."""
    if objective not in choices(TuneObjective):
        raise ConfigError(
            f"tune.objective={objective}: must be one of {', '.join(choices(TuneObjective))}"
        )
    return OBJECTIVE_DIRECTIONS[TuneObjective(objective)]


def choices(enum: type[Choice]) -> tuple[str, ...]:
    """The allowed values of a choice, in their declared order."""
    return tuple(member.value for member in enum)


# The side of a crop is a multiple of this: the study's models halve the image four times.
CROP_MULTIPLE = 16
# At most this many neighbouring slices on each side as 2.5D context.
MAX_CONTEXT = 4
# Every class weight list (loss.class_weights) holds one weight per class.
NUM_CLASSES = 4


@dataclass(frozen=True)
class Domain:
    """The numbers an option allows: a range (each end open or closed), optionally a multiple of
    something; for a list, the rule for each item and the list's length. ``None`` passes when the
    option's type allows it (OmegaConf has checked the type)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    multiple_of: int | None = None
    length: int | None = None
    null: str | None = None  # what null means, where it is allowed

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, (list, tuple)) or _is_list_config(value):
            items = list(value)
            return (self.length is None or len(items) == self.length) and all(
                self._allows_number(item) for item in items
            )
        return self.length is None and self._allows_number(value)

    def _allows_number(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return self.multiple_of is None or value % self.multiple_of == 0

    def describe(self) -> str:
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = " and ".join(bounds) or "a number"
        if self.multiple_of is not None:
            text += f", a multiple of {self.multiple_of}"
        if self.length is not None:
            text = f"a list of {self.length} numbers, each {text}"
        if self.null:
            text += f", or null ({self.null})"
        return text


def _is_list_config(value: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)


def at_least(low: float, null: str | None = None, **kw: Any) -> Domain:
    return Domain(low=low, null=null, **kw)


def share(null: str | None = None, high_open: bool = False) -> Domain:
    """A share in [0, 1] (or [0, 1))."""
    return Domain(low=0.0, high=1.0, high_open=high_open, null=null)


def positive(null: str | None = None) -> Domain:
    return Domain(low=0.0, low_open=True, null=null)


def option(domain: Domain | None = None) -> Any:
    """A schema field with no default (the YAML holds it) and, optionally, a domain."""
    return field(default=MISSING, metadata={"domain": domain} if domain else {})


# A rule that relates fields of one node: yields (key, value, what is allowed) for each breach.
Rule = Callable[[Any], Iterator[tuple[str, Any, str]]]


# Each class subclasses Dict[str, Any]: open to keys added in YAML by later work (see the module
# docstring).


@dataclass
class EarlyStoppingSchema(Dict[str, Any]):
    enabled: bool = MISSING
    monitor: str = MISSING
    patience: int = option(at_least(0))


@dataclass
class TrainerSchema(Dict[str, Any]):
    """configs/trainer/*.yaml."""

    epochs: int = option(at_least(1))
    batch_size: int = option(at_least(1))
    steps_per_epoch: Optional[int] = option(at_least(1, "one pass over the training slices"))
    validation_steps: Optional[int] = option(at_least(1, "one pass over the validation slices"))
    precision: Precision = MISSING
    strategy: Strategy = MISSING
    cpu_devices: Optional[int] = option(at_least(1, "TensorFlow's own devices"))
    device: Device = MISSING
    job_gpus: JobGpus = MISSING
    fully_convolutional: bool = MISSING
    run_eagerly: bool = MISSING
    checkpoint_monitor: str = MISSING
    save_last: bool = MISSING
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)
    tensorboard: bool = MISSING
    verbose: Any = MISSING  # auto | Keras' 0 | 1 | 2 (a rule below)
    force: bool = MISSING


VERBOSE_CHOICES = ("auto", 0, 1, 2)


def _trainer_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    verbose = node.get("verbose")
    if isinstance(verbose, bool) or verbose not in VERBOSE_CHOICES:
        yield "verbose", verbose, "auto, 0, 1 or 2"


@dataclass
class CropSchema(Dict[str, Any]):
    enabled: bool = MISSING
    size: List[int] = option(Domain(low=CROP_MULTIPLE, multiple_of=CROP_MULTIPLE, length=2))


@dataclass
class PreprocessSchema(Dict[str, Any]):
    normalization: Normalization = MISSING
    percentiles: List[float] = option(Domain(low=0.0, high=100.0, length=2))
    fifth_channel: Optional[FifthChannel] = MISSING
    fifth_channel_sigma: float = option(positive())
    crop: CropSchema = field(default_factory=CropSchema)
    context_slices: int = option(Domain(low=0, high=MAX_CONTEXT))


def _preprocess_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    low, high = node.percentiles
    if not low < high:
        yield "percentiles", list(node.percentiles), "[low, high] with low < high"


@dataclass
class SelectionSchema(Dict[str, Any]):
    rule: SelectionRule = MISSING
    threshold: int = option(at_least(0))


@dataclass
class SplitSchema(Dict[str, Any]):
    train: Optional[float] = option(share("what val and test leave"))
    val: float = option(share())
    test: float = option(share())
    seed: int = MISSING
    folds: Optional[int] = option(at_least(2, "no cross-validation"))
    fold: int = option(at_least(0))
    fold_seed: Optional[int] = MISSING
    train_patients: Optional[int] = option(at_least(1, "no learning-curve draw"))
    draw: int = option(at_least(0))


def _split_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    if node.train_patients is not None:
        if node.folds is not None:
            yield "folds", node.folds, "null with data.split.train_patients (a draw is not a fold)"
        if node.val > 0:
            yield "val", node.val, "0 with data.split.train_patients (a draw tests the others)"
    elif node.folds is not None:
        if node.fold >= node.folds:
            yield "fold", node.fold, f"0 to {node.folds - 1} (data.split.folds={node.folds})"
        if node.val >= 1:
            yield "val", node.val, "a share in [0, 1) of the patients outside the test fold"
    elif node.train is None:
        if node.val + node.test >= 1:
            yield "test", node.test, f"with val={node.val}, less than {1 - node.val:g}"
    elif abs(node.train + node.val + node.test - 1.0) > 1e-6:
        total = node.train + node.val + node.test
        yield "train", node.train, f"train + val + test = 1 (they add up to {total:g}; or null)"


@dataclass
class AugmentSchema(Dict[str, Any]):
    enabled: bool = MISSING
    flip: bool = MISSING
    rotation_deg: float = option(Domain(low=0.0, high=180.0))
    scale: float = option(Domain(low=0.0, high=0.9))
    intensity: float = option(Domain(low=0.0, high=1.0))
    gamma: float = option(Domain(low=0.0, high=2.0))
    blur: float = option(Domain(low=0.0, high=3.0))
    noise: float = option(Domain(low=0.0, high=1.0))
    lesion_contrast: float = option(share())
    lesion_region: LesionRegion = MISSING


@dataclass
class SamplingSchema(Dict[str, Any]):
    foreground: Optional[float] = option(share("every cached slice once per epoch"))


@dataclass
class PatchSchema(Dict[str, Any]):
    # Also a multiple of the model's divisor: brats_seg.models.registry.check_patch_size.
    size: Optional[List[int]] = option(Domain(low=1, length=2, null="whole slices"))


@dataclass
class PostprocessSchema(Dict[str, Any]):
    """BraTS post-processing (evaluate.postprocess, predict's postprocess); null: the run's own
    value where a run is given, else off."""

    min_component: Optional[int] = option(at_least(0))
    et_min_volume: Optional[int] = option(at_least(0))
    min_component_share: Optional[float] = option(share())
    tc_min_component: Optional[int] = option(at_least(0))
    et_min_component: Optional[int] = option(at_least(0))
    wt_threshold: Optional[float] = option(share(high_open=True))
    tc_threshold: Optional[float] = option(share(high_open=True))
    et_threshold: Optional[float] = option(share(high_open=True))


@dataclass
class LabelsSchema(Dict[str, Any]):
    convention: LabelConvention = MISSING  # type: ignore[valid-type]
    resection_cavity: ResectionCavity = MISSING


@dataclass
class DataSchema(Dict[str, Any]):
    """configs/data/brats.yaml (and data/synthetic.yaml, which extends it)."""

    name: str = MISSING
    root: Optional[str] = MISSING
    cases: Optional[List[str]] = MISSING
    cache_dir: str = MISSING
    workers: int = option(at_least(1))
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

    cases: int = option(at_least(1))
    # The smallest sides are the generator's to say (brats_seg.data.synthetic.MIN_SIDE).
    shape: List[int] = option(Domain(low=1, length=3))
    seed: int = option(at_least(0))


# ----------------------------------------------------------------------------------- losses
# One schema per loss name (configs/loss/*.yaml); the key `name` says which.


@dataclass
class LossSchema(Dict[str, Any]):
    name: str = MISSING


@dataclass
class SmoothLossSchema(LossSchema):
    """dice, bce_dice, soft_dice."""

    smooth: float = option(positive())


@dataclass
class EllLossSchema(SmoothLossSchema):
    """The study's ell_loss: alpha * BCE + (1 - alpha) * soft Dice."""

    alpha: float = option(share())


@dataclass
class DiceCELossSchema(SmoothLossSchema):
    regions: bool = MISSING


@dataclass
class FocalLossSchema(LossSchema):
    gamma: float = option(at_least(0.0))
    alpha: float = option(at_least(0.0))


@dataclass
class TverskyLossSchema(SmoothLossSchema):
    alpha: float = option(at_least(0.0))
    beta: float = option(at_least(0.0))


_CLASS_WEIGHTS = Domain(low=0.0, length=NUM_CLASSES, null="from the training label counts")


@dataclass
class WeightedLossSchema(LossSchema):
    class_weights: Optional[List[float]] = option(_CLASS_WEIGHTS)
    weight_power: float = option(at_least(0.0))


@dataclass
class ExpLogLossSchema(SmoothLossSchema):
    w_dice: float = option(at_least(0.0))
    w_cross: float = option(at_least(0.0))
    gamma_dice: float = option(positive())
    gamma_cross: float = option(positive())
    class_weights: Optional[List[float]] = option(_CLASS_WEIGHTS)


# ------------------------------------------------------------------------------- optimizers


class ScheduleName(Choice):
    constant = "constant"
    cosine = "cosine"
    plateau = "plateau"


@dataclass
class ScheduleSchema(Dict[str, Any]):
    name: ScheduleName = MISSING
    min_lr: float = option(at_least(0.0))
    factor: float = option(Domain(low=0.0, high=1.0, low_open=True, high_open=True))
    patience: int = option(at_least(0))


@dataclass
class OptimizerSchema(Dict[str, Any]):
    """adam, adamw; the others add their own keys."""

    name: str = MISSING
    lr: float = option(positive())
    weight_decay: Optional[float] = option(at_least(0.0, "none"))
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)


@dataclass
class AdagradSchema(OptimizerSchema):
    initial_accumulator_value: float = option(at_least(0.0))


@dataclass
class SgdSchema(OptimizerSchema):
    momentum: float = option(share(high_open=True))
    nesterov: bool = MISSING


def _optimizer_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    if node.name == "adamw" and node.weight_decay is None:
        yield "weight_decay", None, "a number >= 0 (optimizer=adamw decays weights)"
    if node.schedule.min_lr > node.lr:
        yield "schedule.min_lr", node.schedule.min_lr, f"at most optimizer.lr ({node.lr:g})"


# ---------------------------------------------------------------------------------- loggers


class LoggerName(Choice):
    none = "none"
    mlflow = "mlflow"


@dataclass
class LoggerSchema(Dict[str, Any]):
    """configs/logger/none.yaml; each tracker's schema adds its own keys."""

    name: LoggerName = MISSING


@dataclass
class MlflowLoggerSchema(LoggerSchema):
    """configs/logger/mlflow.yaml."""

    tracking_uri: Optional[str] = MISSING
    experiment_name: Optional[str] = MISSING
    log_artifacts: bool = MISSING


def _mlflow_logger_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    if node.experiment_name is not None and not str(node.experiment_name).strip():
        yield "experiment_name", node.experiment_name, "a name, or null (the run group or sweep)"
    if node.tracking_uri is not None and not str(node.tracking_uri).strip():
        yield "tracking_uri", node.tracking_uri, "an MLflow tracking URI, or null (a SQLite store)"


# -------------------------------------------------------------------------------- inference


@dataclass
class TrainEvaluateSchema(Dict[str, Any]):
    """The evaluate node of configs/train.yaml: how a run scores its test patients."""

    empty_rule: EmptyRule = MISSING
    batch_size: int = option(at_least(1))
    overlays: int = option(at_least(0))
    lesionwise: bool = MISSING
    tta: bool = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    calibration: bool = MISSING
    backend: InferenceBackend = MISSING


@dataclass
class TuneSchema(Dict[str, Any]):
    """The tune node of configs/train.yaml: what a trial of an Optuna search reports."""

    objective: TuneObjective = MISSING


@dataclass
class TrainSchema(Dict[str, Any]):
    """The top-level keys of configs/train.yaml (the groups are typed by their own schemas)."""

    seed: int = MISSING
    experiment_id: Optional[str] = MISSING
    study: Any = MISSING
    run_group: str = MISSING
    sweep_name: str = MISSING


def _train_rules(node: Any) -> Iterator[tuple[str, Any, str]]:
    evaluate, split = node.get("evaluate"), (node.get("data") or {}).get("split")
    if evaluate is not None and split is not None and evaluate.get("calibration"):
        if not split.get("val"):
            yield (
                "evaluate.calibration",
                True,
                "false with data.split.val=0 (the temperature is fitted on validation patients)",
            )


@dataclass
class EvaluateOptionsSchema(Dict[str, Any]):
    """The evaluate node of configs/evaluate.yaml (options of scoring a prediction folder)."""

    allow_missing: bool = MISSING


@dataclass
class EvaluateSchema(Dict[str, Any]):
    """configs/evaluate.yaml; null: the run's own setting (brats_seg.config_schema.run_setting)."""

    run: Any = MISSING  # a run folder, a list of them (an ensemble) or a sweep folder
    pred: Optional[str] = MISSING
    ref: Optional[str] = MISSING
    out: Optional[str] = MISSING
    empty_rule: Optional[EmptyRule] = MISSING
    lesionwise: Optional[bool] = MISSING
    batch_size: int = option(at_least(1))
    labels: LabelsSchema = field(default_factory=LabelsSchema)
    tta: Optional[bool] = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    tune_postprocess: bool = MISSING
    calibration: Optional[bool] = MISSING
    backend: Optional[InferenceBackend] = MISSING
    evaluate: EvaluateOptionsSchema = field(default_factory=EvaluateOptionsSchema)
    allow_incomplete: bool = MISSING
    use_last_checkpoint: bool = MISSING


@dataclass
class PredictSchema(Dict[str, Any]):
    """configs/predict.yaml; null: the run's own setting (brats_seg.config_schema.run_setting)."""

    run: Any = MISSING  # a run folder, a list of them (an ensemble) or a sweep folder
    input: str = MISSING
    output: str = MISSING
    batch_size: int = option(at_least(1))
    montage_slices: int = option(at_least(0))
    empty_rule: EmptyRule = MISSING
    naming: PredictNaming = MISSING
    lesionwise: bool = MISSING
    tta: Optional[bool] = MISSING
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    tuned_postprocess: Optional[bool] = MISSING
    backend: Optional[InferenceBackend] = MISSING
    brain_box: bool = MISSING
    calibrated: bool = MISSING
    save_probabilities: bool = MISSING
    allow_incomplete: bool = MISSING
    use_last_checkpoint: bool = MISSING


# ------------------------------------------------------------------------------------ tools


@dataclass
class EdaSchema(Dict[str, Any]):
    """configs/eda.yaml."""

    out: str = MISSING
    overlays: int = option(at_least(0))
    montage_case: Optional[str] = MISSING
    gif: bool = MISSING
    seed: int = option(at_least(0))


@dataclass
class ModelsSchema(Dict[str, Any]):
    """configs/models.yaml."""

    in_channels: int = option(at_least(1))
    height: int = option(at_least(1))
    width: int = option(at_least(1))
    num_classes: int = option(at_least(2))
    names: Any = MISSING  # null, one name or a list of names


@dataclass
class SynthToolSchema(Dict[str, Any]):
    """configs/synth.yaml."""

    out: str = MISSING
    cases: int = option(at_least(1))
    # The smallest sides are the generator's to say (brats_seg.data.synthetic.MIN_SIDE).
    shape: List[int] = option(Domain(low=1, length=3))
    seed: int = option(at_least(0))
    workers: int = option(at_least(1))


# Fewer bootstrap resamples give intervals that change from run to run.
MIN_BOOTSTRAP = 100


@dataclass
class TableSchema(Dict[str, Any]):
    """configs/table.yaml."""

    out: Optional[str] = MISSING
    printed: bool = MISSING
    intervals: bool = MISSING
    bootstrap: int = option(at_least(1))


@dataclass
class CompareSchema(Dict[str, Any]):
    """configs/compare.yaml."""

    out: Optional[str] = MISSING
    bootstrap: int = option(at_least(MIN_BOOTSTRAP))
    seed: int = MISSING


@dataclass
class ReportSchema(Dict[str, Any]):
    """configs/report.yaml."""

    out: Optional[str] = MISSING
    bootstrap: int = option(at_least(MIN_BOOTSTRAP))
    overlays: bool = MISSING


@dataclass
class ViewSchema(Dict[str, Any]):
    """configs/view.yaml."""

    run: Optional[str] = MISSING
    predictions: Optional[str] = MISSING
    input: Optional[str] = MISSING
    cases: Optional[List[str]] = MISSING
    out: Optional[str] = MISSING
    open: bool = MISSING
    opacity: float = option(share())
    batch_size: int = option(at_least(1))
    allow_incomplete: bool = MISSING
    use_last_checkpoint: bool = MISSING


class ExportFormat(Choice):
    savedmodel = "savedmodel"
    onnx = "onnx"
    openvino = "openvino"


class Quantization(Choice):
    int8 = "int8"


@dataclass
class ExportSchema(Dict[str, Any]):
    """configs/export.yaml."""

    run: Optional[str] = MISSING
    format: ExportFormat = MISSING
    quantize: Optional[Quantization] = MISSING
    out: Optional[str] = MISSING
    allow_incomplete: bool = MISSING
    use_last_checkpoint: bool = MISSING


# name in the schema group -> schema; the YAML file that extends it names it as /schema/<name>.
SCHEMAS: dict[str, type] = {
    "trainer": TrainerSchema,
    "data": DataSchema,
    "synth": SynthSchema,
    "train": TrainSchema,
    "train_evaluate": TrainEvaluateSchema,
    "tune": TuneSchema,
    "evaluate": EvaluateSchema,
    "predict": PredictSchema,
    "eda": EdaSchema,
    "models": ModelsSchema,
    "synth_tool": SynthToolSchema,
    "table": TableSchema,
    "compare": CompareSchema,
    "report": ReportSchema,
    "export": ExportSchema,
    "view": ViewSchema,
    "loss_smooth": SmoothLossSchema,
    "loss_ell": EllLossSchema,
    "loss_dice_ce": DiceCELossSchema,
    "loss_focal": FocalLossSchema,
    "loss_tversky": TverskyLossSchema,
    "loss_weighted": WeightedLossSchema,
    "loss_exp_log": ExpLogLossSchema,
    "optimizer": OptimizerSchema,
    "optimizer_adagrad": AdagradSchema,
    "optimizer_sgd": SgdSchema,
    "logger": LoggerSchema,
    "logger_mlflow": MlflowLoggerSchema,
}

# Rules that relate the fields of one node, by its schema.
RULES: dict[type, Rule] = {
    TrainSchema: _train_rules,
    TrainerSchema: _trainer_rules,
    PreprocessSchema: _preprocess_rules,
    SplitSchema: _split_rules,
    OptimizerSchema: _optimizer_rules,
    AdagradSchema: _optimizer_rules,
    SgdSchema: _optimizer_rules,
    MlflowLoggerSchema: _mlflow_logger_rules,
}


def check_domains(cfg: Any, prefix: str = "") -> None:
    """Raise ConfigError for the first option of a composed config outside its domain.

    Each node's schema is the one it was composed with (``OmegaConf.get_type``); a node without one
    (the model, whose options brats_seg.models.options types) is walked for nested schemas. The
    message names the key as given on the command line, its value and what is allowed.
    """
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(cfg)
    breaches: list[tuple[str, Any, str]] = []
    if is_dataclass(schema):
        for spec in fields(schema):
            domain = spec.metadata.get("domain")
            if domain is not None and not OmegaConf.is_missing(cfg, spec.name):
                value = cfg[spec.name]
                if not domain.allows(value):
                    breaches.append((spec.name, value, domain.describe()))
        if not breaches and schema in RULES:
            breaches.extend(RULES[schema](cfg))
    if breaches:
        key, value, allowed = breaches[0]
        raise ConfigError(f"{prefix}{key}={_shown(value)}: must be {allowed}")
    for key in cfg:
        if key == "hydra" or OmegaConf.is_missing(cfg, key):
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            check_domains(child, f"{prefix}{key}.")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)) or _is_list_config(value):
        return "[" + ",".join(_shown(item) for item in value) + "]"
    return str(value)


def to_plain(cfg: Any) -> Any:
    """A config node (DictConfig/ListConfig) as plain, resolved dicts and lists, enums as their
    strings; anything else unchanged. The one way the code turns a config into a dict."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def run_setting(given: Any, run_value: Any) -> Any:
    """An option of evaluate or predict where null means the run's own setting: ``given`` unless
    it is null, else the run's recorded ``run_value``."""
    return run_value if given is None else given


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
