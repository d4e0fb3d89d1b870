"""Forward FLOPs of a built Keras model, computed analytically from its layer shapes.

Counted: the multiply-accumulates of the layers that carry weights, FLOPs = 2 x MAC, for one sample:
* Conv2D (any dilation or groups): H_out * W_out * kh * kw * (C_in / groups) * C_out;
* DepthwiseConv2D / SeparableConv2D: the same rule applied to each kernel, at the output resolution;
* Conv2DTranspose: H_in * W_in * kh * kw * C_in * C_out;
* Dense: (number of positions it is applied to) * C_in * C_out.
Not counted (as in docs/architectures.md section 6): bias adds, batch norm, activations, pooling,
upsampling, concatenation, add and multiply. For the study's models they are well under 1% of the
total.
"""

from __future__ import annotations

import math


def count_flops(model) -> int:
    """Forward FLOPs (2 x multiply-accumulates of conv / transposed-conv / dense layers) for one
    sample."""
    return 2 * sum(layer_macs(layer) for layer in _leaf_layers(model))


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer, 0 for layers without weights."""
    from keras import layers

    if isinstance(layer, layers.Conv2DTranspose):
        return _positions(layer.input.shape) * _kernel_size(layer.kernel)
    if isinstance(layer, layers.SeparableConv2D):
        kernels = _kernel_size(layer.depthwise_kernel) + _kernel_size(layer.pointwise_kernel)
        return _positions(layer.output.shape) * kernels
    if isinstance(layer, layers.DepthwiseConv2D):
        return _positions(layer.output.shape) * _kernel_size(layer.kernel)
    if isinstance(layer, (layers.Conv2D, layers.Dense)):
        # Conv2D's kernel is (kh, kw, C_in / groups, C_out); Dense's is (C_in, C_out).
        spatial = layer.output.shape if isinstance(layer, layers.Conv2D) else layer.input.shape
        return _positions(spatial) * _kernel_size(layer.kernel)
    return 0


def _positions(shape) -> int:
    """Number of positions a kernel is applied at: the product of the dims between batch and
    channels."""
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(f"FLOPs need a fixed input size; got a layer shape {tuple(shape)}")
    return math.prod(dims)


def _kernel_size(kernel) -> int:
    return math.prod(kernel.shape)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer
