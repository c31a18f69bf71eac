"""Flax linen ResNet-18/34/50/101 mirroring torchvision's architecture one-to-one.

The layout follows ``torchvision.models.resnet`` (v1.5: in the bottleneck the stride sits on
the 3x3 conv), so a torchvision ``state_dict`` maps onto these parameters 1:1. All convs use
explicit symmetric padding ``((p, p), (p, p))`` like torch, never ``"SAME"``, and the stem max
pool pads with ``-inf``. Batch norm uses ``epsilon=1e-5`` and ``momentum=0.9`` (torch's
``momentum=0.1``).

Parameter naming (Flax name -> torchvision name)::

  conv1                      -> conv1                (kernel [7, 7, 3, width], no bias)
  bn1                        -> bn1                  (scale/bias, batch_stats mean/var)
  layer{i}_{j}.conv1         -> layer{i}.{j}.conv1
  layer{i}_{j}.bn1           -> layer{i}.{j}.bn1
  layer{i}_{j}.conv2 / bn2   -> layer{i}.{j}.conv2 / bn2
  layer{i}_{j}.conv3 / bn3   -> layer{i}.{j}.conv3 / bn3   (bottleneck only)
  layer{i}_{j}.downsample_conv -> layer{i}.{j}.downsample.0
  layer{i}_{j}.downsample_bn   -> layer{i}.{j}.downsample.1
  fc                         -> fc                   (kernel [C, num_classes], bias)

with ``i`` in 1..4 and ``j`` the block index inside the stage (0-based). Flax conv kernels
are HWIO (torch is OIHW) and the dense kernel is [in, out] (torch is [out, in]); BN
``scale`` is torch's ``weight`` and ``mean``/``var`` live in the ``batch_stats`` collection.

Dilation (for dense prediction, e.g. :class:`rise_jax.models.deeplab.DeepLabV3`) follows
torchvision's ``replace_stride_with_dilation``: a flagged stage (layer2..layer4) keeps its
input resolution and multiplies the running dilation by the stride it drops. The first block
of such a stage loses its stride (its 1x1 downsample too) but still uses the *previous*
dilation for its 3x3 conv, the following blocks the new one; 3x3 convs pad by their dilation. So
``(False, True, True)`` gives output stride 8 (layer3 dilation 2, layer4 dilation 4) and
``(False, False, True)`` output stride 16. torchvision refuses dilation in ``BasicBlock``; here
a dilated BasicBlock applies its dilation to both of its 3x3 convs (documented extension, used
by the small ResNet-18 DeepLab for CPU training). ``num_classes=None`` drops ``fc`` (a
backbone, like torchvision's ``IntermediateLayerGetter`` without ``avgpool``/``fc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rise_jax.models.common import tap

_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _conv(features: int, kernel: int, stride: int, name: str, dtype: Any,
          dilation: int = 1) -> nn.Conv:
  """A bias-free conv with torch-style symmetric padding ``dilation * (kernel // 2)``."""
  pad = dilation * (kernel // 2)
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    kernel_dilation=(dilation, dilation),
    use_bias=False,
    dtype=dtype,
    kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    name=name,
  )


def _bn(train: bool, name: str, dtype: Any) -> nn.BatchNorm:
  """Batch norm with torch's defaults (eps 1e-5, torch momentum 0.1)."""
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=_BN_MOMENTUM,
    epsilon=_BN_EPSILON,
    dtype=dtype,
    name=name,
  )


def _shortcut(x: jax.Array, features: int, stride: int, downsample: bool, train: bool,
              dtype: Any) -> jax.Array:
  """The residual branch: identity, or a strided 1x1 conv + BN when the shape changes.

  Called from a block's compact ``__call__``, so its submodules belong to that block.
  """
  if not downsample:
    return x
  x = _conv(features, 1, stride, "downsample_conv", dtype)(x)
  return _bn(train, "downsample_bn", dtype)(x)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual connection (ResNet-18/34).

  Attributes:
    features: Output channels ``c`` of the block.
    stride: Stride of the first 3x3 conv (and of the downsample conv).
    downsample: Whether the shortcut is a 1x1 conv + BN (shape change).
    dilation: Dilation (and padding) of both 3x3 convs (torchvision supports only 1).
    dtype: Computation dtype.
  """

  features: int
  stride: int = 1
  downsample: bool = False
  dilation: int = 1
  dtype: Any = jnp.float32

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block.

    Args:
      x: [B, H, W, C_in] input.
      train: Whether batch norm uses (and updates) batch statistics.

    Returns:
      [B, H / stride, W / stride, features] output.
    """
    y = _conv(self.features, 3, self.stride, "conv1", self.dtype, self.dilation)(x)
    y = nn.relu(_bn(train, "bn1", self.dtype)(y))
    y = _conv(self.features, 3, 1, "conv2", self.dtype, self.dilation)(y)
    y = _bn(train, "bn2", self.dtype)(y)
    return nn.relu(y + _shortcut(x, self.features, self.stride, self.downsample, train,
                                 self.dtype))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 convs with a residual connection (ResNet-50/101).

  Attributes:
    features: Bottleneck width ``c``; the block outputs ``4 * c`` channels.
    stride: Stride of the 3x3 conv (and of the downsample conv).
    downsample: Whether the shortcut is a 1x1 conv + BN (shape change).
    dilation: Dilation (and padding) of the 3x3 conv.
    dtype: Computation dtype.
  """

  features: int
  stride: int = 1
  downsample: bool = False
  dilation: int = 1
  dtype: Any = jnp.float32

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block.

    Args:
      x: [B, H, W, C_in] input.
      train: Whether batch norm uses (and updates) batch statistics.

    Returns:
      [B, H / stride, W / stride, 4 * features] output.
    """
    out_features = self.features * self.expansion
    y = _conv(self.features, 1, 1, "conv1", self.dtype)(x)
    y = nn.relu(_bn(train, "bn1", self.dtype)(y))
    y = _conv(self.features, 3, self.stride, "conv2", self.dtype, self.dilation)(y)
    y = nn.relu(_bn(train, "bn2", self.dtype)(y))
    y = _conv(out_features, 1, 1, "conv3", self.dtype)(y)
    y = _bn(train, "bn3", self.dtype)(y)
    return nn.relu(y + _shortcut(x, out_features, self.stride, self.downsample, train,
                                 self.dtype))


_BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
  """torchvision-compatible ResNet (see the module docstring for parameter names).

  Attributes:
    stage_sizes: Number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)``.
    block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
    num_classes: Number of output logits; ``None`` builds no ``fc`` (a backbone) and returns
      ``None`` logits.
    width: Channels of the stem and base width of the first stage (torchvision: 64).
    replace_stride_with_dilation: Three flags for layer2..layer4, torchvision's argument of the
      same name: a flagged stage trades its stride 2 for dilation (see the module docstring).
      ``(False, True, True)``: output stride 8; ``(False, False, True)``: 16.
    stem: ``"imagenet"`` (torchvision: 7x7 stride-2 conv + 3x3 stride-2 max pool) or
      ``"small"`` (a 3x3 stride-1 conv and no pool, as ResNets for 32-64 px images use; the
      stem conv keeps the name ``conv1``, so it is not torchvision-convertible).
    dtype: Computation dtype; logits are always returned as float32.
  """

  stage_sizes: Sequence[int]
  block: str
  num_classes: int | None = 1000
  width: int = 64
  replace_stride_with_dilation: Sequence[bool] = (False, False, False)
  stem: str = "imagenet"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array,
               train: bool = False) -> tuple[jax.Array | None, dict[str, jax.Array]]:
    """Applies the network.

    Args:
      x: float32[B, H, W, 3] images (NHWC).
      train: If True, batch norm uses batch statistics and updates ``batch_stats`` (apply
        with ``mutable=["batch_stats"]``); otherwise it uses the running averages.

    Returns:
      ``(logits, features)``: logits float32[B, num_classes] (``None`` when ``num_classes``
      is ``None``) and a dict with ``"stem"`` [B, H/4, W/4, width] (after the max pool),
      ``"stage1"``..``"stage4"`` (outputs of layer1..layer4, strides 4, 8, 16, 32 without
      dilation, 4, 8, 8, 8 at output stride 8; channels ``width * 2**k`` times the block
      expansion, e.g. 256/512/1024/2048 for ResNet-50), ``"last_conv"`` (same as
      ``"stage4"``) and ``"pre_logits"`` [B, C] (global average pool of stage4).

    Raises:
      ValueError: If ``x`` is not of shape [B, H, W, 3], ``block`` is unknown, or
        ``replace_stride_with_dilation`` does not have ``len(stage_sizes) - 1`` flags.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"ResNet expects input of shape [B, H, W, 3]; got shape {tuple(x.shape)}")
    if self.block not in _BLOCKS:
      raise ValueError(f"block must be one of {sorted(_BLOCKS)}; got {self.block!r}")
    dilate_flags = tuple(bool(f) for f in self.replace_stride_with_dilation)
    if len(dilate_flags) != len(self.stage_sizes) - 1:
      raise ValueError(
        f"replace_stride_with_dilation must have {len(self.stage_sizes) - 1} flags (one per "
        f"stage after the first); got {self.replace_stride_with_dilation!r}")
    block_cls = _BLOCKS[self.block]
    feats: dict[str, jax.Array] = {}

    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"stem must be 'imagenet' or 'small'; got {self.stem!r}")
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = _conv(self.width, 7, 2, "conv1", self.dtype)(x)
      x = nn.relu(_bn(train, "bn1", self.dtype)(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = nn.relu(_bn(train, "bn1", self.dtype)(_conv(self.width, 3, 1, "conv1", self.dtype)(x)))
    x = tap(self, "stem", x, feats)

    in_channels = self.width
    dilation = 1
    for i, num_blocks in enumerate(self.stage_sizes):
      features = self.width * 2**i
      out_channels = features * block_cls.expansion
      stage_stride = 1 if i == 0 else 2
      previous_dilation = dilation
      if i > 0 and dilate_flags[i - 1]:
        dilation *= stage_stride
        stage_stride = 1
      for j in range(num_blocks):
        stride = stage_stride if j == 0 else 1
        x = block_cls(
          features=features,
          stride=stride,
          downsample=(stride != 1 or in_channels != out_channels),
          dilation=previous_dilation if j == 0 else dilation,
          dtype=self.dtype,
          name=f"layer{i + 1}_{j}",
        )(x, train=train)
        in_channels = out_channels
      x = tap(self, f"stage{i + 1}", x, feats)
    x = tap(self, "last_conv", x, feats)

    x = jnp.mean(x, axis=(1, 2))
    feats["pre_logits"] = x
    if self.num_classes is None:
      return None, feats
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return logits.astype(jnp.float32), feats


def ResNet18(num_classes: int = 1000, **kw: Any) -> ResNet:
  """ResNet-18 (torchvision ``resnet18``, 11,689,512 params at 1000 classes)."""
  return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", num_classes=num_classes, **kw)


def ResNet34(num_classes: int = 1000, **kw: Any) -> ResNet:
  """ResNet-34 (torchvision ``resnet34``, 21,797,672 params at 1000 classes)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block="basic", num_classes=num_classes, **kw)


def ResNet50(num_classes: int = 1000, **kw: Any) -> ResNet:
  """ResNet-50 (torchvision ``resnet50`` v1.5, 25,557,032 params at 1000 classes)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", num_classes=num_classes, **kw)


def ResNet101(num_classes: int = 1000, **kw: Any) -> ResNet:
  """ResNet-101 (torchvision ``resnet101`` v1.5, 44,549,160 params at 1000 classes)."""
  return ResNet(stage_sizes=(3, 4, 23, 3), block="bottleneck", num_classes=num_classes, **kw)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101"]
