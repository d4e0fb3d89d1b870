"""The U-Net family (architectures A-F of docs/architectures.md).

enc1..encN: conv block -> skip -> MaxPool 2x2 (the pool after the deepest level stays without a
bridge); bridge: conv block of `bridge_filters`; decN..dec1: upsample (transposed conv or
nearest) -> concat([up, skip]) -> conv block; head: Conv1x1 -> softmax. Blocks are
`convs_per_block` units of conv[-BN]-ReLU.
"""

from __future__ import annotations

import keras

from brats_seg.models.blocks import DropoutPlan, conv_block, max_pool, softmax_head, upsample
from brats_seg.models.options import UNetOptions


def build_unet(
    options: UNetOptions, *, name: str, input_shape: tuple[int, int, int], num_classes: int
):
    dropout = DropoutPlan(name, options.dropout_rate, options.dropout_after)
    inputs = keras.Input(shape=input_shape, name="image")
    rates = options.level_dilations()
    skips, x = encode(inputs, options.filters, rates[:-1], options, dropout)
    if options.bridge:
        x = conv_block(
            x,
            options.bridge_filters,
            "bridge",
            convs=options.convs_per_block,
            batch_norm=options.batch_norm,
            norm_layer=options.norm_layer,
            dilation=rates[-1],
            dropout=dropout,
        )
    x = decode(x, skips, options, dropout)
    outputs = softmax_head(x, num_classes)
    dropout.check()
    return keras.Model(inputs, outputs, name=name)


def encode(x, filters, rates, options, dropout: DropoutPlan):
    """Encoder levels enc1..encN; returns the skips and the pooled output of the deepest level."""
    # The attention U-Net shares this encoder; its options have batch norm only.
    norm_layer = getattr(options, "norm_layer", "batch")
    skips = []
    for level, (width, rate) in enumerate(zip(filters, rates, strict=True), start=1):
        x = conv_block(
            x,
            width,
            f"enc{level}",
            convs=options.convs_per_block,
            batch_norm=options.batch_norm,
            norm_layer=norm_layer,
            dilation=rate,
            dropout=dropout,
        )
        skips.append(x)
        x = max_pool(x, 2, f"enc{level}_pool")
    return skips, x


def up_step(x, width: int, mode: str, name: str):
    """Double the resolution: Conv2DTranspose(width, 2x2, stride 2) or nearest-neighbour
    UpSampling2D."""
    if mode == "transpose":
        return keras.layers.Conv2DTranspose(width, 2, strides=2, padding="same", name=name)(x)
    return upsample(x, 2, "nearest", name)


def decode(x, skips, options: UNetOptions, dropout: DropoutPlan):
    """Decoder blocks decN..dec1 (decoder dilation is always 1)."""
    deepest = len(skips)
    for level in range(deepest, 0, -1):
        width = options.filters[level - 1]
        mode = (
            options.first_upsample
            if level == deepest and options.first_upsample
            else options.upsample
        )
        up = up_step(x, width, mode, f"dec{level}_up")
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([up, skips[level - 1]])
        x = conv_block(
            x,
            width,
            f"dec{level}",
            convs=options.convs_per_block,
            batch_norm=options.batch_norm,
            norm_layer=options.norm_layer,
            dilation=1,
            dropout=dropout,
        )
    return x
