"""Attention U-Net: a U-Net whose skip connections pass through additive attention gates
(Oktay et al. 2018).

Design (this project's; not one of the study's rows):
* encoder enc1..encN and bridge as the U-Net family with batch norm on (conv3x3 -> BN -> ReLU units,
  `convs_per_block` per block, MaxPool 2x2 between levels), widths 64..512 and a 1024 bridge by
  default;
* decoder step at level l, with g the coarser decoder tensor (the bridge for the deepest step)
  and x = enc_l with F channels, and F_int = F // 2:
    theta = Conv2x2(F_int, stride 2, no bias)(x)            -> x brought down to g's resolution
    phi   = Conv1x1(F_int)(g)
    alpha = sigmoid(Conv1x1(1)(ReLU(theta + phi)))          -> one weight per coarse pixel
    alpha = bilinear x2 (alpha)                             -> back to x's resolution
    x_hat = BN(Conv1x1(F)(x * alpha))                       -> gated skip
  then up = Conv2DTranspose(F, 2x2, stride 2)(g) (or nearest), concat([up, x_hat]) ->
  conv block of F;
* head Conv1x1 -> float32 softmax.
The gate adds 3 F^2 + F_int (C_g + 2) + 5 F + 1 parameters per level (C_g = channels of g).
"""

from __future__ import annotations

import keras
from keras import layers

from brats_seg.models.blocks import DropoutPlan, conv_block, softmax_head, upsample
from brats_seg.models.options import AttentionUNetOptions
from brats_seg.models.unet import encode, up_step


def build_attention_unet(
    options: AttentionUNetOptions, *, name: str, input_shape: tuple[int, int, int], num_classes: int
):
    dropout = DropoutPlan(name, options.dropout_rate, options.dropout_after)
    inputs = keras.Input(shape=input_shape, name="image")
    skips, x = encode(inputs, options.filters, (1,) * len(options.filters), options, dropout)
    x = conv_block(
        x,
        options.bridge_filters,
        "bridge",
        convs=options.convs_per_block,
        batch_norm=options.batch_norm,
        dilation=1,
        dropout=dropout,
    )
    for level in range(len(skips), 0, -1):
        width = options.filters[level - 1]
        gated = attention_gate(skips[level - 1], x, f"dec{level}_att")
        up = up_step(x, width, options.upsample, f"dec{level}_up")
        x = layers.Concatenate(name=f"dec{level}_concat")([up, gated])
        x = conv_block(
            x,
            width,
            f"dec{level}",
            convs=options.convs_per_block,
            batch_norm=options.batch_norm,
            dilation=1,
            dropout=dropout,
        )
    outputs = softmax_head(x, num_classes)
    dropout.check()
    return keras.Model(inputs, outputs, name=name)


def attention_gate(skip, gating, prefix: str):
    """Additive attention gate: weight each pixel of `skip` by a map computed from `skip` and the
    coarser `gating`."""
    width = skip.shape[-1]
    inner = max(width // 2, 1)
    theta = layers.Conv2D(inner, 2, strides=2, use_bias=False, name=f"{prefix}_theta")(skip)
    phi = layers.Conv2D(inner, 1, name=f"{prefix}_phi")(gating)
    a = layers.Add(name=f"{prefix}_add")([theta, phi])
    a = layers.Activation("relu", name=f"{prefix}_relu")(a)
    a = layers.Conv2D(1, 1, name=f"{prefix}_psi")(a)
    a = layers.Activation("sigmoid", name=f"{prefix}_sigmoid")(a)
    a = upsample(a, 2, "bilinear", f"{prefix}_up")
    x = layers.Multiply(name=f"{prefix}_scale")([skip, a])
    x = layers.Conv2D(width, 1, name=f"{prefix}_out")(x)
    return layers.BatchNormalization(name=f"{prefix}_bn")(x)
