"""The model zoo: a registry from model config to Keras model, one builder per family.

Importing this package does not import TensorFlow; building a model or counting its FLOPs does.
Families: unet (unet.py), unet3plus (unet3plus.py), resunetpp (resunetpp.py), attention_unet
(attention_unet.py); their options and defaults are in options.py, the configs in configs/model/.
"""

from brats_seg.models.flops import count_flops
from brats_seg.models.registry import build_model, divisor, load_model_config, model_config_names

__all__ = ["build_model", "count_flops", "divisor", "load_model_config", "model_config_names"]
