"""The U-Net 3+ family (Huang et al., ICASSP 2020; architectures G and H of docs/architectures.md).

Every conv is a unit conv3x3 -> BN -> ReLU with the same dilation. With S scales, decoder stage i
fuses one `cat_channels` branch from every scale j, in order j = 1..S: the encoder tensor enc_j
max-pooled by 2^(i-j) when j <= i, else the decoder tensor dec_j upsampled by 2^(j-i); the
concatenation (S * cat_channels) goes through one fusion unit of the same width.

* bridge off (the study's "nobridge" models): S = len(filters) and every scale has a fusion stage.
* bridge on (the paper's model): S = len(filters) + 1; the bridge block is the deepest decoder
  tensor.

Deep supervision adds, for each deeper decoder tensor dec_i (i = 2..S, the bridge included), a
Conv1x1 head upsampled bilinearly to full size with its own float32 softmax. The outputs are then
ordered [final, dec2, dec3, ..., decS] (names "softmax", "dec2_softmax", ..., "bridge_softmax"), all
of shape (H, W, num_classes). Training: Keras 3 does not spread one loss over several outputs, so
compile with a list of one loss per output (optionally `loss_weights`) and feed the same one-hot
target to each, e.g. a dataset mapped to (x, (y,) * len(model.outputs)). Prediction and evaluation:
use the first output only.
"""

from __future__ import annotations

import keras

from brats_seg.models.blocks import (
    DropoutPlan,
    conv_block,
    conv_unit,
    max_pool,
    softmax_head,
    upsample,
)
from brats_seg.models.options import UNet3PlusOptions


def build_unet3plus(
    options: UNet3PlusOptions, *, name: str, input_shape: tuple[int, int, int], num_classes: int
):
    dropout = DropoutPlan(name, options.dropout_rate, options.dropout_after)
    inputs = keras.Input(shape=input_shape, name="image")
    encoders = encode(inputs, options, dropout)
    scales = options.scales()
    decoders: dict[int, object] = {}
    if options.bridge:
        pooled = max_pool(encoders[-1], 2, f"enc{len(encoders)}_pool")
        decoders[scales] = conv_block(
            pooled,
            options.bridge_filters,
            "bridge",
            convs=options.convs_per_block,
            batch_norm=True,
            dilation=options.dilation,
            dropout=dropout,
        )
    for stage in range(len(encoders), 0, -1):
        decoders[stage] = fuse_stage(stage, encoders, decoders, options, dropout)
    outputs = [softmax_head(decoders[1], num_classes)]
    if options.deep_supervision:
        outputs += [
            side_output(decoders[i], i, node_name(i, options), num_classes)
            for i in range(2, scales + 1)
        ]
    dropout.check()
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=name)


def encode(x, options: UNet3PlusOptions, dropout: DropoutPlan) -> list:
    """Encoder tensors enc1..encN; no pool after the deepest level (the bridge adds its own)."""
    encoders = []
    for level, width in enumerate(options.filters, start=1):
        if encoders:
            x = max_pool(x, 2, f"enc{level - 1}_pool")
        x = conv_block(
            x,
            width,
            f"enc{level}",
            convs=options.convs_per_block,
            batch_norm=True,
            dilation=options.dilation,
            dropout=dropout,
        )
        encoders.append(x)
    return encoders


def node_name(scale: int, options: UNet3PlusOptions) -> str:
    return "bridge" if options.bridge and scale == options.scales() else f"dec{scale}"


def fuse_stage(
    stage: int, encoders: list, decoders: dict, options: UNet3PlusOptions, dropout: DropoutPlan
):
    """Decoder stage `stage`: one branch per scale, concatenated, then one fusion unit."""
    branches = []
    for scale in range(1, options.scales() + 1):
        if scale <= stage:
            source, x = f"enc{scale}", encoders[scale - 1]
            if scale < stage:
                x = max_pool(x, 2 ** (stage - scale), f"dec{stage}_from_{source}_pool")
        else:
            source = node_name(scale, options)
            x = upsample(
                decoders[scale],
                2 ** (scale - stage),
                options.upsample,
                f"dec{stage}_from_{source}_up",
            )
        branches.append(
            conv_unit(
                x,
                options.cat_channels,
                f"dec{stage}_from_{source}",
                batch_norm=True,
                dilation=options.dilation,
            )
        )
    x = keras.layers.Concatenate(name=f"dec{stage}_concat")(branches)
    x = conv_unit(
        x,
        options.cat_channels * options.scales(),
        f"dec{stage}_fuse",
        batch_norm=True,
        dilation=options.dilation,
    )
    return dropout.after(x, f"dec{stage}")


def side_output(x, scale: int, source: str, num_classes: int):
    """Deep-supervision output of decoder tensor `source` at `scale`: Conv1x1, bilinear up to full
    size, softmax."""
    x = keras.layers.Conv2D(num_classes, 1, name=f"{source}_head")(x)
    x = upsample(x, 2 ** (scale - 1), "bilinear", f"{source}_head_up")
    return keras.layers.Activation("softmax", dtype="float32", name=f"{source}_softmax")(x)
