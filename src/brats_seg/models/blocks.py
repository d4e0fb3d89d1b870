"""Building blocks shared by the model families. Built-in Keras layers only, so `.keras` files
reload as is.

Naming: a unit with prefix "enc1" and suffix "1" creates "enc1_conv1", "enc1_bn1" (or "enc1_in1" for
instance normalisation) and "enc1_relu1".
"""

from __future__ import annotations

from collections.abc import Iterable

from keras import layers

from brats_seg.errors import ConfigError


class DropoutPlan:
    """Inserts Dropout after the units and blocks named in `dropout_after`, and checks every name
    was used."""

    def __init__(self, model: str, rate: float, names: Iterable[str]) -> None:
        self.model = model
        self.rate = rate
        self.wanted = list(names)
        self.offered: list[str] = []

    def after(self, x, name: str):
        """Return `x`, followed by Dropout if `name` is one of the requested placements."""
        self.offered.append(name)
        if name in self.wanted:
            x = layers.Dropout(self.rate, name=f"{name}_dropout")(x)
        return x

    def check(self) -> None:
        unused = [name for name in self.wanted if name not in self.offered]
        if unused:
            raise ConfigError(
                f"model {self.model}: model.dropout_after names {', '.join(unused)}, "
                "which this model does not "
                f"have (valid: {', '.join(self.offered)})"
            )


def conv_unit(
    x,
    filters: int,
    prefix: str,
    suffix: str = "",
    *,
    batch_norm: bool,
    dilation: int = 1,
    kernel_size: int = 3,
    norm_layer: str = "batch",
):
    """Conv(k x k, same, bias) -> [BatchNorm or InstanceNorm] -> ReLU. Without batch norm the ReLU
    is the conv's activation.

    ``norm_layer="instance"`` normalises each sample's channels over its own pixels (Keras'
    GroupNormalization with one group per channel), so the statistics come from the slice at hand,
    in training and at inference alike, instead of running averages over the training patients.
    """
    conv_name = f"{prefix}_conv{suffix}"
    if not batch_norm:
        return layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            dilation_rate=dilation,
            activation="relu",
            name=conv_name,
        )(x)
    x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation, name=conv_name)(
        x
    )
    if norm_layer == "instance":
        x = layers.GroupNormalization(groups=-1, name=f"{prefix}_in{suffix}")(x)
    else:
        x = layers.BatchNormalization(name=f"{prefix}_bn{suffix}")(x)
    return layers.Activation("relu", name=f"{prefix}_relu{suffix}")(x)


def conv_block(
    x,
    filters: int,
    prefix: str,
    *,
    convs: int,
    batch_norm: bool,
    dilation: int,
    dropout: DropoutPlan,
    norm_layer: str = "batch",
):
    """`convs` conv units; Dropout may follow any unit ("enc3_conv1") or the whole block
    ("enc3")."""
    for index in range(1, convs + 1):
        x = conv_unit(
            x,
            filters,
            prefix,
            str(index),
            batch_norm=batch_norm,
            dilation=dilation,
            norm_layer=norm_layer,
        )
        x = dropout.after(x, f"{prefix}_conv{index}")
    return dropout.after(x, prefix)


def max_pool(x, factor: int, name: str):
    return layers.MaxPooling2D(pool_size=factor, strides=factor, name=name)(x)


def upsample(x, factor: int, interpolation: str, name: str):
    return layers.UpSampling2D(size=factor, interpolation=interpolation, name=name)(x)


def softmax_head(x, num_classes: int, conv_name: str = "head", output_name: str = "softmax"):
    """Conv1x1(num_classes) -> softmax computed in float32 (so mixed precision never yields bf16
    outputs)."""
    x = layers.Conv2D(num_classes, 1, name=conv_name)(x)
    return layers.Activation("softmax", dtype="float32", name=output_name)(x)
