"""Flax linen DeepLabV3 mirroring torchvision's ``deeplabv3_resnet50`` (without aux classifier).

Architecture (torchvision ``segmentation.deeplabv3``):

* ``backbone``: a :class:`rise_jax.models.resnet.ResNet` without ``fc``, with
  ``replace_stride_with_dilation=(False, True, True)`` at output stride 8 (layer3/layer4
  dilated 2/4; ``(False, False, True)`` at 16).
* ``classifier`` = DeepLabHead: ``ASPP`` -> 3x3 conv (no bias) -> BN -> ReLU -> 1x1 conv
  (bias) to ``num_classes``.
* ``ASPP``: five parallel branches of ``4 * width`` (256) channels, each conv-BN-ReLU: a 1x1
  conv, three 3x3 convs with dilation = padding = each of ``aspp_rates`` (12, 24, 36), and
  image pooling (global mean -> 1x1 conv -> BN -> ReLU -> broadcast back, i.e. torch's
  bilinear upsample of a 1x1 map); concatenated and projected by 1x1 conv -> BN -> ReLU ->
  dropout 0.5 (train mode only; needs a ``"dropout"`` rng).
* The logits are upsampled bilinearly to the input size with half-pixel centres
  (torch's ``F.interpolate(..., mode="bilinear", align_corners=False)``).

Parameter naming (Flax name -> torchvision name)::

  backbone/<resnet name>      -> backbone.<torchvision resnet name> (see rise_jax.models.resnet)
  classifier_0/convs_0_0, _1  -> classifier.0.convs.0.0 (1x1 conv), .0.1 (BN)
  classifier_0/convs_{k}_0, _1 -> classifier.0.convs.{k}.0 (3x3 atrous conv), .{k}.1, k = 1..3
  classifier_0/convs_4_1, _2  -> classifier.0.convs.4.1 (pooling 1x1 conv), .4.2 (BN)
  classifier_0/project_0, _1  -> classifier.0.project.0 (1x1 conv), .1 (BN)
  classifier_1, classifier_2  -> classifier.1 (3x3 conv), classifier.2 (BN)
  classifier_4                -> classifier.4 (1x1 conv with bias)

Small variant for CPU training: ``backbone="resnet18"`` (BasicBlocks; a dilated BasicBlock
dilates both of its 3x3 convs, an extension torchvision lacks) and ``width`` < 64: the backbone's
base width is ``width`` and the ASPP/head channels are ``4 * width``, so
``DeepLabV3(num_classes, backbone="resnet18", width=16)`` has 999,269 parameters at 21 classes
(``width=8``: about 0.25M) against 39,638,869 for the default. Weights of such a variant trained
in PyTorch convert with :func:`rise_jax.convert.torchvision.convert_variables`.

Grad-CAM style perturbations: ``"aspp"``, ``"last_conv"`` and ``"low_res_logits"`` are tapped
by this module; the backbone's features are tapped inside the ``backbone`` submodule (their
``perturbations`` live under ``backbone``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rise_jax.models.common import tap
from rise_jax.models.resnet import ResNet

_BN_MOMENTUM = 0.9  # torch momentum 0.1
_BN_EPSILON = 1e-5

BACKBONES: dict[str, tuple[tuple[int, ...], str]] = {
  "resnet18": ((2, 2, 2, 2), "basic"),
  "resnet34": ((3, 4, 6, 3), "basic"),
  "resnet50": ((3, 4, 6, 3), "bottleneck"),
  "resnet101": ((3, 4, 23, 3), "bottleneck"),
}
_DILATION_FLAGS = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


def _conv(features: int, kernel: int, name: str, dtype: Any, dilation: int = 1,
          use_bias: bool = False) -> nn.Conv:
  """A conv with torch-style symmetric padding ``dilation * (kernel // 2)``."""
  pad = dilation * (kernel // 2)
  return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                 kernel_dilation=(dilation, dilation), use_bias=use_bias, dtype=dtype, name=name)


def _bn(train: bool, name: str, dtype: Any) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                      dtype=dtype, name=name)


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """torch ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` on NHWC input.

  Args:
    x: [B, h, w, C] input.
    size: Output ``(H, W)``.

  Returns:
    [B, H, W, C], sampled at half-pixel centres (edge pixels clamp), without antialiasing.
  """
  b, _, _, c = x.shape
  return jax.image.resize(x, (b, size[0], size[1], c), "bilinear", antialias=False)


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling (torchvision ``segmentation.deeplabv3.ASPP``).

  Attributes:
    rates: Dilation of the three 3x3 branches.
    features: Channels of every branch and of the projection (torchvision: 256).
    dropout_rate: Dropout after the projection (train mode only).
    dtype: Computation dtype.
  """

  rates: Sequence[int] = (12, 24, 36)
  features: int = 256
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies ASPP.

    Args:
      x: [B, h, w, C_in] backbone features.
      train: BN batch statistics and dropout (needs a ``"dropout"`` rng).

    Returns:
      [B, h, w, features].
    """
    branches = []
    y = _conv(self.features, 1, "convs_0_0", self.dtype)(x)
    branches.append(nn.relu(_bn(train, "convs_0_1", self.dtype)(y)))
    for k, rate in enumerate(self.rates, start=1):
      y = _conv(self.features, 3, f"convs_{k}_0", self.dtype, dilation=int(rate))(x)
      branches.append(nn.relu(_bn(train, f"convs_{k}_1", self.dtype)(y)))
    k = len(self.rates) + 1
    y = jnp.mean(x, axis=(1, 2), keepdims=True)
    y = _conv(self.features, 1, f"convs_{k}_1", self.dtype)(y)
    y = nn.relu(_bn(train, f"convs_{k}_2", self.dtype)(y))
    branches.append(jnp.broadcast_to(y, x.shape[:3] + (self.features,)))
    y = jnp.concatenate(branches, axis=-1)
    y = _conv(self.features, 1, "project_0", self.dtype)(y)
    y = nn.relu(_bn(train, "project_1", self.dtype)(y))
    return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class DeepLabV3(nn.Module):
  """torchvision-compatible DeepLabV3 (see the module docstring for parameter names).

  Attributes:
    num_classes: Output channels (one per class).
    backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (torchvision's) or
      ``"resnet101"``.
    output_stride: 8 (torchvision, dilated layer3 and layer4), 16 or 32.
    aspp_rates: Dilations of ASPP's three 3x3 branches.
    width: Backbone base width (64 in torchvision); ASPP and head use ``4 * width`` channels.
    dropout_rate: ASPP projection dropout (train mode only).
    dtype: Computation dtype; logits are always returned as float32.
    stem: Backbone stem: ``"imagenet"`` (torchvision's 7x7 stride-2 conv and max pool) or
      ``"small"`` (3x3 stride-1 conv, no pool; for small images: every stride is 4x smaller,
      e.g. features at stride 2 with ``output_stride=8``).
  """

  num_classes: int
  backbone: str = "resnet50"
  output_stride: int = 8
  aspp_rates: Sequence[int] = (12, 24, 36)
  width: int = 64
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  stem: str = "imagenet"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Applies the network.

    Args:
      x: float32[B, H, W, 3] images (NHWC), any H, W.
      train: If True, batch norm uses batch statistics and updates ``batch_stats`` (apply with
        ``mutable=["batch_stats"]``) and dropout is active (``rngs={"dropout": key}``).

    Returns:
      ``(logits, features)``: logits float32[B, H, W, num_classes] (bilinearly upsampled) and
      a dict with the backbone's ``"stem"``, ``"stage1"``..``"stage4"`` (strides 4, 8, 8, 8
      at output stride 8), ``"aspp"`` [B, h, w, 4 * width] (ASPP output),
      ``"last_conv"`` [B, h, w, 4 * width] (the head's 3x3 conv-BN-ReLU, input of the
      classifier conv) and ``"low_res_logits"`` [B, h, w, num_classes] (before upsampling).

    Raises:
      ValueError: For an unknown backbone or output stride, input not [B, H, W, 3], or
        ``train`` without a ``"dropout"`` rng.
    """
    if self.backbone not in BACKBONES:
      raise ValueError(f"backbone must be one of {sorted(BACKBONES)}; got {self.backbone!r}")
    if self.output_stride not in _DILATION_FLAGS:
      raise ValueError(f"output_stride must be one of {sorted(_DILATION_FLAGS)}; got "
                       f"{self.output_stride}")
    if len(self.aspp_rates) != 3:
      raise ValueError(f"aspp_rates must have 3 dilations; got {self.aspp_rates!r}")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"DeepLabV3 expects input of shape [B, H, W, 3]; got shape "
                       f"{tuple(x.shape)}")
    if train and self.dropout_rate > 0 and not self.has_rng("dropout"):
      raise ValueError("DeepLabV3(train=True) applies dropout: pass rngs={'dropout': key}")
    stage_sizes, block = BACKBONES[self.backbone]
    head = 4 * self.width

    _, feats = ResNet(stage_sizes=stage_sizes, block=block, num_classes=None, width=self.width,
                      replace_stride_with_dilation=_DILATION_FLAGS[self.output_stride],
                      stem=self.stem, dtype=self.dtype, name="backbone")(x, train=train)
    feats = {k: feats[k] for k in ("stem", "stage1", "stage2", "stage3", "stage4")}
    y = feats["stage4"]
    y = ASPP(rates=tuple(self.aspp_rates), features=head, dropout_rate=self.dropout_rate,
             dtype=self.dtype, name="classifier_0")(y, train=train)
    y = tap(self, "aspp", y, feats)
    y = _conv(head, 3, "classifier_1", self.dtype)(y)
    y = nn.relu(_bn(train, "classifier_2", self.dtype)(y))
    y = tap(self, "last_conv", y, feats)
    y = _conv(self.num_classes, 1, "classifier_4", self.dtype, use_bias=True)(y)
    y = tap(self, "low_res_logits", y, feats)
    logits = resize_bilinear(y.astype(jnp.float32), (x.shape[1], x.shape[2]))
    return logits, feats


def DeepLabV3ResNet50(num_classes: int = 21, **kw: Any) -> DeepLabV3:
  """torchvision ``deeplabv3_resnet50`` without aux classifier (39,638,869 params at 21)."""
  return DeepLabV3(num_classes=num_classes, backbone="resnet50", **kw)


__all__ = ["ASPP", "BACKBONES", "DeepLabV3", "DeepLabV3ResNet50", "resize_bilinear"]
