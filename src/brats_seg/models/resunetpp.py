"""ResUNet++ (Jha et al. 2019) as the study built it (architecture I of docs/architectures.md).

enc1 = stem; encK = residual unit with stride 2 (squeeze-and-excitation first); bridge = ASPP
(parallel dilated 3x3 convs + BN, summed, then Conv1x1); each decoder step = attention(skip, x) ->
nearest x2 -> concat([., skip]) -> residual unit; output = ASPP -> Conv1x1 -> softmax.
Decoder steps are named after the level they land on (dec3 at 1/4 size, ..., dec1 at full size).
"""

from __future__ import annotations

import keras
from keras import layers

from brats_seg.models.blocks import DropoutPlan, max_pool, softmax_head, upsample
from brats_seg.models.options import ResUNetPPOptions


def build_resunetpp(
    options: ResUNetPPOptions, *, name: str, input_shape: tuple[int, int, int], num_classes: int
):
    dropout = DropoutPlan(name, options.dropout_rate, options.dropout_after)
    inputs = keras.Input(shape=input_shape, name="image")
    skips = [dropout.after(stem(inputs, options.filters[0], "enc1"), "enc1")]
    for level, width in enumerate(options.filters[1:], start=2):
        x = residual_unit(skips[-1], width, 2, f"enc{level}", options.se_ratio)
        skips.append(dropout.after(x, f"enc{level}"))
    x = skips[-1]
    if options.bridge:
        x = dropout.after(aspp(x, options.bridge_filters, options.aspp_rates, "bridge"), "bridge")
    for level in range(len(skips) - 1, 0, -1):
        skip = skips[level - 1]
        x = attention(skip, x, f"dec{level}_att")
        x = upsample(x, 2, "nearest", f"dec{level}_up")
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = residual_unit(x, options.filters[level], 1, f"dec{level}", options.se_ratio)
        x = dropout.after(x, f"dec{level}")
    x = aspp(x, options.filters[0], options.aspp_rates, "head_aspp")
    outputs = softmax_head(x, num_classes)
    dropout.check()
    return keras.Model(inputs, outputs, name=name)


def bn_relu_conv(x, filters: int, prefix: str, suffix: str, strides: int = 1):
    """Pre-activation conv: BN -> ReLU -> Conv3x3."""
    x = layers.BatchNormalization(name=f"{prefix}_bn{suffix}")(x)
    x = layers.Activation("relu", name=f"{prefix}_relu{suffix}")(x)
    return layers.Conv2D(
        filters, 3, strides=strides, padding="same", name=f"{prefix}_conv{suffix}"
    )(x)


def stem(x, filters: int, prefix: str):
    """Conv3x3 -> BN -> ReLU -> Conv3x3, plus a Conv1x1 shortcut on the input (no SE, no shortcut
    BN)."""
    main = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv1")(x)
    main = layers.BatchNormalization(name=f"{prefix}_bn1")(main)
    main = layers.Activation("relu", name=f"{prefix}_relu1")(main)
    main = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv2")(main)
    shortcut = layers.Conv2D(filters, 1, name=f"{prefix}_shortcut")(x)
    return layers.Add(name=f"{prefix}_add")([main, shortcut])


def squeeze_excite(x, ratio: int, prefix: str):
    """Channel attention: global average -> Dense(C/ratio, ReLU) -> Dense(C, sigmoid) -> scale x."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_pool")(x)
    s = layers.Dense(channels // ratio, activation="relu", use_bias=False, name=f"{prefix}_reduce")(
        s
    )
    s = layers.Dense(channels, activation="sigmoid", use_bias=False, name=f"{prefix}_expand")(s)
    return layers.Multiply(name=f"{prefix}_scale")([x, s])


def residual_unit(x, filters: int, strides: int, prefix: str, se_ratio: int):
    """SE on the input, then BN-ReLU-Conv3x3 (strided) -> BN-ReLU-Conv3x3 plus a strided Conv1x1
    shortcut."""
    x = squeeze_excite(x, se_ratio, f"{prefix}_se")
    main = bn_relu_conv(x, filters, prefix, "1", strides)
    main = bn_relu_conv(main, filters, prefix, "2")
    shortcut = layers.Conv2D(filters, 1, strides=strides, name=f"{prefix}_shortcut")(x)
    return layers.Add(name=f"{prefix}_add")([main, shortcut])


def aspp(x, filters: int, rates, prefix: str):
    """Atrous spatial pyramid pooling: one Conv3x3 + BN per rate, summed, then Conv1x1."""
    branches = []
    for rate in rates:
        branch = layers.Conv2D(
            filters, 3, padding="same", dilation_rate=rate, name=f"{prefix}_rate{rate}_conv"
        )(x)
        branches.append(layers.BatchNormalization(name=f"{prefix}_rate{rate}_bn")(branch))
    x = layers.Add(name=f"{prefix}_sum")(branches) if len(branches) > 1 else branches[0]
    return layers.Conv2D(filters, 1, name=f"{prefix}_project")(x)


def attention(skip, x, prefix: str):
    """Gate `x` (decoder) with the finer encoder `skip`: both through BN-ReLU-Conv3x3, added,
    BN-ReLU-Conv3x3."""
    channels = x.shape[-1]
    g = bn_relu_conv(skip, channels, f"{prefix}_skip", "")
    g = max_pool(g, 2, f"{prefix}_skip_pool")
    h = bn_relu_conv(x, channels, f"{prefix}_x", "")
    a = layers.Add(name=f"{prefix}_add")([g, h])
    a = bn_relu_conv(a, channels, prefix, "")
    return layers.Multiply(name=f"{prefix}_scale")([a, x])
