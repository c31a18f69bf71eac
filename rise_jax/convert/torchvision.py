"""torchvision ``state_dict`` -> Flax variables for ResNet, VGG-16 and DeepLabV3-ResNet50.

Supported ``arch`` names and their Flax modules:

* ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``: :mod:`rise_jax.models.resnet`
* ``"vgg16"``, ``"vgg16_bn"``: :mod:`rise_jax.models.vgg`
* ``"deeplabv3_resnet50"``: :class:`rise_jax.models.deeplab.DeepLabV3` (``backbone="resnet50"``,
  output stride 8); torchvision's ``aux_classifier.*`` entries (present in its pretrained
  weights) are ignored because the Flax model has no auxiliary head.

The conversion is driven by the Flax module's own variable tree: every Flax module name maps
to a torchvision key prefix segment by segment (``_`` -> ``.``, e.g. ``layer1_0`` ->
``layer1.0``, ``features_10`` -> ``features.10``, ``classifier_0/convs_4_1`` ->
``classifier.0.convs.4.1``; ResNet's ``downsample_conv`` / ``downsample_bn`` ->
``downsample.0`` / ``downsample.1``). Convs (4-D kernels) are transposed OIHW -> HWIO, linear
weights [out, in] -> [in, out], BN ``weight``/``bias`` become ``scale``/``bias`` and
``running_mean``/``running_var`` the ``batch_stats`` ``mean``/``var``. Every Flax leaf must be
found in the state_dict with the expected shape, and every state_dict entry must be used, so
a state_dict of another architecture fails loudly instead of converting partially.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax.convert import common
from rise_jax.models import deeplab, resnet, vgg

# arch -> (state_dict key of the classifier weight, whose rows give num_classes; default).
_HEADS: dict[str, tuple[str, int]] = {
  "resnet18": ("fc.weight", 1000),
  "resnet34": ("fc.weight", 1000),
  "resnet50": ("fc.weight", 1000),
  "resnet101": ("fc.weight", 1000),
  "vgg16": ("classifier.6.weight", 1000),
  "vgg16_bn": ("classifier.6.weight", 1000),
  "deeplabv3_resnet50": ("classifier.4.weight", 21),
}
ARCHS = tuple(_HEADS)
_IGNORED_PREFIXES: dict[str, tuple[str, ...]] = {"deeplabv3_resnet50": ("aux_classifier.",)}
_SPECIAL_SEGMENTS = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}


def build_arch(arch: str, num_classes: int) -> Any:
  """The Flax module that :func:`convert` fills for ``arch``.

  Args:
    arch: One of :data:`ARCHS`.
    num_classes: Number of output classes.

  Returns:
    The (unbound) Flax module.

  Raises:
    ValueError: For an unknown ``arch``.
  """
  if arch.startswith("resnet") and arch in _HEADS:
    ctor = {"resnet18": resnet.ResNet18, "resnet34": resnet.ResNet34,
            "resnet50": resnet.ResNet50, "resnet101": resnet.ResNet101}[arch]
    return ctor(num_classes=num_classes)
  if arch in ("vgg16", "vgg16_bn"):
    return (vgg.VGG16BN if arch == "vgg16_bn" else vgg.VGG16)(num_classes=num_classes)
  if arch == "deeplabv3_resnet50":
    return deeplab.DeepLabV3(num_classes=num_classes, backbone="resnet50", output_stride=8)
  raise ValueError(f"unknown torchvision architecture {arch!r}; known: {list(ARCHS)}")


def load_state_dict(torch_weights: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
  """A state_dict from a ``.pth`` file (``torch.load``, tensors only) or a mapping."""
  if torch_weights is None:
    raise ValueError("torchvision converters need torch_weights: a .pth state_dict path or a "
                     "state_dict mapping")
  if isinstance(torch_weights, Mapping):
    return dict(torch_weights)
  import torch  # The "convert" extra; only needed to read .pth files.

  path = os.fspath(torch_weights)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no state_dict file at {path}")
  loaded = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(loaded, Mapping):
    raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state_dict mapping")
  return dict(loaded)


def _torch_prefix(path: tuple[str, ...]) -> str:
  return ".".join(_SPECIAL_SEGMENTS.get(seg, seg.replace("_", ".")) for seg in path)


def _check_shape(arch: str, key: str, torch_shape: tuple[int, ...], value: np.ndarray,
                 expected: tuple[int, ...], to_torch: Callable[[tuple[int, ...]], tuple],
                 flax_name: str) -> None:
  if tuple(value.shape) != tuple(expected):
    raise ValueError(
      f"{arch}: state_dict entry {key!r} has shape {tuple(torch_shape)}, the model expects "
      f"{tuple(to_torch(tuple(expected)))} (Flax {flax_name} {tuple(expected)})")


def _convert_module(arch: str, sd: common.Consumer, path: tuple[str, ...],
                    params_t: Mapping[str, Any], stats_t: Mapping[str, Any] | None
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
  """Params (and batch stats) of one leaf Flax module (conv, dense or BN) from the state_dict."""
  prefix = _torch_prefix(path)
  name = "/".join(path)
  params: dict[str, np.ndarray] = {}

  def take(torch_key: str, leaf: str, fn: Callable[[np.ndarray], np.ndarray],
           to_torch: Callable[[tuple[int, ...]], tuple], template: Mapping[str, Any],
           collection: str) -> np.ndarray:
    raw = sd[f"{prefix}.{torch_key}"]
    value = fn(raw) if raw.ndim == len(template[leaf].shape) else raw
    _check_shape(arch, f"{prefix}.{torch_key}", raw.shape, value, template[leaf].shape,
                 to_torch, f"{collection}/{name}/{leaf}")
    return np.ascontiguousarray(value, np.float32)

  same = lambda s: s
  if "scale" in params_t:  # BatchNorm
    if stats_t is None:
      raise ValueError(f"{arch}: Flax BN {name} has no batch_stats in the template")
    params["scale"] = take("weight", "scale", same, same, params_t, "params")
    params["bias"] = take("bias", "bias", same, same, params_t, "params")
    stats = {"mean": take("running_mean", "mean", same, same, stats_t, "batch_stats"),
             "var": take("running_var", "var", same, same, stats_t, "batch_stats")}
    return params, stats
  kernel_ndim = len(params_t["kernel"].shape)
  if kernel_ndim == 4:  # conv: torch [O, I, kh, kw] <-> Flax [kh, kw, I, O]
    params["kernel"] = take("weight", "kernel", common.conv_kernel,
                            lambda s: (s[3], s[2], s[0], s[1]), params_t, "params")
  elif kernel_ndim == 2:  # linear: torch [out, in] <-> Flax [in, out]
    params["kernel"] = take("weight", "kernel", common.dense_kernel, lambda s: s[::-1],
                            params_t, "params")
  else:
    raise ValueError(f"{arch}: unsupported Flax kernel {name} of shape {params_t['kernel'].shape}")
  if "bias" in params_t:
    params["bias"] = take("bias", "bias", same, same, params_t, "params")
  return params, None


def _walk(arch: str, sd: common.Consumer, path: tuple[str, ...], params_t: Mapping[str, Any],
          stats_t: Mapping[str, Any] | None, params_out: dict, stats_out: dict) -> None:
  """Fills ``params_out``/``stats_out`` (same nesting as the templates) below ``path``."""
  if "kernel" in params_t or "scale" in params_t:
    p, s = _convert_module(arch, sd, path, params_t, stats_t)
    params_out.update(p)
    if s is not None:
      stats_out.update(s)
    return
  for child, sub in params_t.items():
    sub_stats = None if stats_t is None else stats_t.get(child)
    stats_child: dict = {}
    params_out[child] = {}
    _walk(arch, sd, path + (child,), sub, sub_stats, params_out[child], stats_child)
    if stats_child:
      stats_out[child] = stats_child


def convert_variables(module: Any, state_dict: Mapping[str, Any], name: str = "model",
                      input_shape: tuple[int, ...] = (1, 64, 64, 3)) -> dict[str, Any]:
  """Fills the variables of any Flax module named like :mod:`rise_jax.models` from a state_dict.

  The lower-level half of :func:`convert`, for modules that are not one of :data:`ARCHS`
  (e.g. a small ``DeepLabV3(backbone="resnet18", width=16)`` trained in PyTorch).

  Args:
    module: An unbound Flax module; its ``init`` on ``input_shape`` gives the expected tree.
    state_dict: torch tensors or NumPy arrays under torchvision-style names
      (``num_batches_tracked`` entries are ignored).
    name: Used in error messages.
    input_shape: Shape of the dummy input used to trace ``module.init`` (never run).

  Returns:
    ``{"params": ...[, "batch_stats": ...]}`` matching ``module.init``'s collections.

  Raises:
    ValueError: Missing or unexpected state_dict entries, or a shape mismatch (naming the key,
      its shape and the expected one).
  """
  sd = common.to_numpy(state_dict)
  template = jax.eval_shape(
    lambda: module.init(jax.random.key(0), jnp.zeros(input_shape, jnp.float32)))
  consumer = common.Consumer(sd)
  params: dict = {}
  stats: dict = {}
  try:
    _walk(name, consumer, (), template["params"], template.get("batch_stats"), params, stats)
  except KeyError as err:
    raise ValueError(f"{name}: state_dict is missing a model parameter: {err.args[0]}") from err
  try:
    consumer.check_all_used()
  except ValueError as err:
    raise ValueError(f"{name}: {err}") from err

  out = {"params": params}
  if "batch_stats" in template:
    out["batch_stats"] = stats
  if jax.tree.structure(out) != jax.tree.structure(dict(template)):
    raise ValueError(f"{name}: converted variables do not cover the module's tree")
  return out


def convert(arch: str, torch_weights: str | os.PathLike | Mapping[str, Any],
            num_classes: int | None = None) -> dict[str, Any]:
  """Flax variables of ``arch`` from a torchvision-named state_dict.

  Args:
    arch: One of :data:`ARCHS` (``"resnet18"``.. ``"resnet101"``, ``"vgg16"``,
      ``"vgg16_bn"``, ``"deeplabv3_resnet50"``).
    torch_weights: Path of a ``torch.save``-d state_dict (``.pth``), or the state_dict itself
      (a mapping of names to torch tensors or NumPy arrays).
    num_classes: Output classes of the Flax module; ``None`` reads it from the classifier
      weight (``fc.weight``, ``classifier.6.weight`` or ``classifier.4.weight``).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` (nested dicts of float32 NumPy arrays) for the
    module of :func:`build_arch`; ``"batch_stats"`` only where the model has batch norm
    (not ``vgg16``), so the tree matches ``module.init``'s.

  Raises:
    ValueError: Unknown ``arch``; a state_dict entry the model lacks (unexpected key), a
      model parameter the state_dict lacks (missing key) or a shape mismatch (naming the
      key, its shape and the expected one).
    FileNotFoundError: ``torch_weights`` is a path that does not exist.
  """
  if arch not in _HEADS:
    raise ValueError(f"unknown torchvision architecture {arch!r}; known: {list(ARCHS)}")
  raw = load_state_dict(torch_weights)
  ignored = _IGNORED_PREFIXES.get(arch, ())
  raw = {k: v for k, v in raw.items() if not k.startswith(ignored)} if ignored else raw
  head_key, default_classes = _HEADS[arch]
  if num_classes is None:
    num_classes = int(raw[head_key].shape[0]) if head_key in raw else default_classes
  return convert_variables(build_arch(arch, num_classes), raw, name=arch)


__all__ = ["ARCHS", "build_arch", "convert", "convert_variables", "load_state_dict"]
