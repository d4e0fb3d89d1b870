"""The options of each model family: their fields, validation and the input-size divisor.

No TensorFlow here: the data layer asks for `divisor()` and a bad option fails before any graph is
built. The fields of each class are exactly the keys a model config holds besides `name` and
`family`. Their defaults live in one place, the family base `configs/base/model/<family>.yaml` that
every `configs/model/*.yaml` extends, so the classes here have none: a config missing a key is
refused, naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from brats_seg.errors import ConfigError


@dataclass(frozen=True)
class UNetOptions:
    """Plain U-Net family (architectures A-F of docs/architectures.md)."""

    filters: tuple[int, ...]
    bridge: bool
    bridge_filters: int
    convs_per_block: int
    batch_norm: bool
    # Which normalisation batch_norm inserts after each conv: "batch" (BatchNormalization) or
    # "instance" (per sample and channel, as nnU-Net uses).
    norm_layer: str
    upsample: str
    # Overrides `upsample` for the deepest decoder step only (architecture F: transpose, then
    # nearest).
    first_upsample: str | None
    # One rate for every encoder conv, or one per encoder level followed by one for the bridge.
    encoder_dilation: int | tuple[int, ...]
    dropout_rate: float
    # Unit names ("enc3_conv1") or block names ("enc3", "bridge", "dec4") followed by
    # Dropout(dropout_rate).
    dropout_after: tuple[str, ...]

    family: ClassVar[str] = "unet"
    upsample_modes: ClassVar[tuple[str, ...]] = ("transpose", "nearest")
    norm_layers: ClassVar[tuple[str, ...]] = ("batch", "instance")

    def divisor(self) -> int:
        # The MaxPool after the deepest level stays even without a bridge (architecture B).
        return 2 ** len(self.filters)

    def level_dilations(self) -> tuple[int, ...]:
        """Dilation rate of each encoder level, then of the bridge."""
        rates = self.encoder_dilation
        if isinstance(rates, int):
            return (rates,) * (len(self.filters) + 1)
        if len(rates) == len(self.filters):
            return (*rates, 1)
        return tuple(rates)

    def validate(self, model: str) -> None:
        _check_widths(model, "filters", self.filters)
        _check_bool(model, "bridge", self.bridge)
        _check_positive_int(model, "bridge_filters", self.bridge_filters)
        _check_positive_int(model, "convs_per_block", self.convs_per_block)
        _check_bool(model, "batch_norm", self.batch_norm)
        _check_choice(model, "norm_layer", self.norm_layer, self.norm_layers)
        _check_choice(model, "upsample", self.upsample, self.upsample_modes)
        if self.first_upsample is not None:
            _check_choice(model, "first_upsample", self.first_upsample, self.upsample_modes)
        _check_level_rates(model, self.encoder_dilation, len(self.filters), self.bridge)
        _check_dropout(model, self.dropout_rate, self.dropout_after)


@dataclass(frozen=True)
class UNet3PlusOptions:
    """U-Net 3+ family (architectures G and H, and the full five-scale model of Huang et al. 2020).

    The number of scales is len(filters) + 1 with a bridge (the paper's model: filters 64..512,
    bridge 1024, five scales) and len(filters) without (the study's models: every level gets a
    fusion stage).
    """

    filters: tuple[int, ...]
    bridge: bool
    bridge_filters: int
    convs_per_block: int
    cat_channels: int
    # One rate for every 3x3 conv: encoder units, skip branches and fusion units.
    dilation: int
    upsample: str
    deep_supervision: bool
    dropout_rate: float
    dropout_after: tuple[str, ...]

    family: ClassVar[str] = "unet3plus"

    def scales(self) -> int:
        return len(self.filters) + int(self.bridge)

    def divisor(self) -> int:
        return 2 ** (self.scales() - 1)

    def validate(self, model: str) -> None:
        _check_widths(model, "filters", self.filters)
        _check_bool(model, "bridge", self.bridge)
        _check_positive_int(model, "bridge_filters", self.bridge_filters)
        _check_positive_int(model, "convs_per_block", self.convs_per_block)
        _check_positive_int(model, "cat_channels", self.cat_channels)
        _check_positive_int(model, "dilation", self.dilation)
        _check_choice(model, "upsample", self.upsample, ("bilinear", "nearest"))
        _check_bool(model, "deep_supervision", self.deep_supervision)
        if self.scales() < 2:
            raise ConfigError(
                f"model {model}: U-Net 3+ needs at least two scales (filters plus bridge)"
            )
        _check_dropout(model, self.dropout_rate, self.dropout_after)


@dataclass(frozen=True)
class ResUNetPPOptions:
    """ResUNet++ (architecture I): residual units with squeeze-and-excitation, ASPP and
    attention."""

    # The stem's width, then one width per strided residual level.
    filters: tuple[int, ...]
    # ASPP bridge; off feeds the deepest residual level straight into the decoder.
    bridge: bool
    bridge_filters: int
    aspp_rates: tuple[int, ...]
    se_ratio: int
    dropout_rate: float
    dropout_after: tuple[str, ...]

    family: ClassVar[str] = "resunetpp"

    def divisor(self) -> int:
        return 2 ** (len(self.filters) - 1)

    def validate(self, model: str) -> None:
        _check_widths(model, "filters", self.filters)
        if len(self.filters) < 2:
            raise ConfigError(
                f"model {model}: model.filters needs a stem width and at least one level"
            )
        _check_bool(model, "bridge", self.bridge)
        _check_positive_int(model, "bridge_filters", self.bridge_filters)
        _check_widths(model, "aspp_rates", self.aspp_rates)
        if len(set(self.aspp_rates)) != len(self.aspp_rates):
            raise _fail(model, "aspp_rates", "distinct dilation rates", list(self.aspp_rates))
        _check_positive_int(model, "se_ratio", self.se_ratio)
        if min(self.filters) < self.se_ratio:
            raise ConfigError(
                f"model {model}: model.se_ratio {self.se_ratio} is larger than the narrowest width "
                f"{min(self.filters)} in model.filters"
            )
        _check_dropout(model, self.dropout_rate, self.dropout_after)


@dataclass(frozen=True)
class AttentionUNetOptions:
    """Attention U-Net (Oktay et al. 2018 style; see attention_unet.py for the design)."""

    filters: tuple[int, ...]
    bridge_filters: int
    convs_per_block: int
    batch_norm: bool
    upsample: str
    dropout_rate: float
    dropout_after: tuple[str, ...]

    family: ClassVar[str] = "attention_unet"

    def divisor(self) -> int:
        return 2 ** len(self.filters)

    def validate(self, model: str) -> None:
        _check_widths(model, "filters", self.filters)
        _check_positive_int(model, "bridge_filters", self.bridge_filters)
        _check_positive_int(model, "convs_per_block", self.convs_per_block)
        _check_bool(model, "batch_norm", self.batch_norm)
        _check_choice(model, "upsample", self.upsample, UNetOptions.upsample_modes)
        if min(self.filters) < 2:
            raise ConfigError(
                f"model {model}: model.filters must be at least 2 "
                "(the gates use half of each width)"
            )
        _check_dropout(model, self.dropout_rate, self.dropout_after)


OPTION_CLASSES: dict[str, type] = {
    cls.family: cls
    for cls in (UNetOptions, UNet3PlusOptions, ResUNetPPOptions, AttentionUNetOptions)
}


def parse_options(model: str, family: str, raw: dict[str, Any]) -> Any:
    """Turn the keys of a model config (without `name` and `family`) into a validated options
    object."""
    cls = OPTION_CLASSES.get(family)
    if cls is None:
        raise ConfigError(
            f"model {model}: unknown model.family '{family}' (known: {', '.join(OPTION_CLASSES)})"
        )
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"model {model}: unknown option(s) "
            f"{', '.join('model.' + key for key in unknown)} for family "
            f"{family} (valid: {', '.join(known)})"
        )
    missing = [key for key in known if key not in raw]
    if missing:
        raise ConfigError(
            f"model {model}: missing option(s) {', '.join('model.' + key for key in missing)} "
            f"(a model config extends configs/base/model/{family}.yaml, which sets them all)"
        )
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
    if values["dropout_after"] is None:
        values["dropout_after"] = ()
    options = cls(**values)
    options.validate(model)
    return options


def _fail(model: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"model {model}: model.{key} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bool(model: str, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(model, key, "true or false", value)


def _check_positive_int(model: str, key: str, value: Any) -> None:
    if not (_is_int(value) and value > 0):
        raise _fail(model, key, "a positive integer", value)


def _check_widths(model: str, key: str, value: Any) -> None:
    if not (isinstance(value, tuple) and value and all(_is_int(v) and v > 0 for v in value)):
        shown = list(value) if isinstance(value, tuple) else value
        raise _fail(model, key, "a non-empty list of positive integers", shown)


def _check_choice(model: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(model, key, "one of " + ", ".join(choices), value)


def _check_level_rates(model: str, rates: Any, levels: int, bridge: bool) -> None:
    if _is_int(rates) and rates > 0:
        return
    lengths = (levels, levels + 1) if not bridge else (levels + 1,)
    shape = " or ".join(str(n) for n in lengths)
    if not (
        isinstance(rates, tuple)
        and len(rates) in lengths
        and all(_is_int(r) and r > 0 for r in rates)
    ):
        shown = list(rates) if isinstance(rates, tuple) else rates
        raise _fail(
            model,
            "encoder_dilation",
            f"a positive integer or a list of {shape} (levels, then bridge)",
            shown,
        )


def _check_dropout(model: str, rate: Any, names: Any) -> None:
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1):
        raise _fail(model, "dropout_rate", "a number in [0, 1)", rate)
    if not (isinstance(names, tuple) and all(isinstance(name, str) for name in names)):
        raise _fail(model, "dropout_after", "a list of layer-block names", names)
