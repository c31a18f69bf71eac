"""Flax linen VGG-16 (with and without batch norm) mirroring torchvision's ``vgg16``/``vgg16_bn``.

The layout follows ``torchvision.models.vgg`` configuration "D": five conv blocks of 3x3 convs
(padding 1, bias, optional BN, ReLU) each closed by a 2x2/2 max pool (floor mode), an adaptive
average pool to 7x7 with torch's ``AdaptiveAvgPool2d`` windows for any input size, a flatten
in torch's channel-major (C, H, W) order and the classifier
``Linear(25088, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Dropout-Linear(4096, C)``. Dropout
(p = 0.5) is active only with ``train=True``, which then needs a ``"dropout"`` rng.

Parameter naming: every Flax module is named after the index of its torchvision counterpart
in the ``features`` / ``classifier`` ``nn.Sequential``, with ``_`` for torch's ``.``::

  features_{i}   -> features.{i}    conv: kernel [3, 3, in, out] (torch OIHW), bias
                                    BN (vgg16_bn): scale/bias + batch_stats mean/var
  classifier_0   -> classifier.0    kernel [25088, 4096] (torch [out, in] transposed)
  classifier_3   -> classifier.3    kernel [4096, 4096]
  classifier_6   -> classifier.6    kernel [4096, num_classes]

The conv indices are 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 for ``vgg16`` (conv,
ReLU, ..., max pool) and 0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40 for ``vgg16_bn``
(conv at ``i``, BN at ``i + 1``, ReLU at ``i + 2``); :func:`layer_indices` lists them.
Because the flatten is channel-major like torch's, ``classifier_0``'s kernel is exactly the
transpose of torch's ``classifier.0.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rise_jax.models.common import tap

# torchvision's configuration "D" (VGG-16): channels of each conv, "M" = 2x2 max pool.
CFG_D: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512,
                                "M", 512, 512, 512, "M")

_BN_MOMENTUM = 0.9  # torch momentum 0.1
_BN_EPSILON = 1e-5


def layer_indices(cfg: Sequence[int | str] = CFG_D, batch_norm: bool = False) -> list[int]:
  """torchvision ``features`` indices of the convs of ``cfg`` (BN, if any, at index + 1).

  Args:
    cfg: Channels per conv, ``"M"`` for a max pool (torchvision's ``cfgs`` entry).
    batch_norm: Whether each conv is followed by a BN (``vgg16_bn``).

  Returns:
    One index per conv, in order (13 for VGG-16).
  """
  idx, out = 0, []
  for v in cfg:
    if v == "M":
      idx += 1
    else:
      out.append(idx)
      idx += 3 if batch_norm else 2
  return out


def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """float32[out_size, in_size] averaging matrix of torch's ``AdaptiveAvgPool`` along one axis.

  Output ``i`` averages inputs ``floor(i * in / out) .. ceil((i + 1) * in / out) - 1``.
  """
  mat = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)  # ceil
    mat[i, start:end] = 1.0 / (end - start)
  return mat


def adaptive_avg_pool(x: jax.Array, output_size: int | tuple[int, int]) -> jax.Array:
  """torch ``AdaptiveAvgPool2d`` on NHWC input, exact for any input size.

  Args:
    x: [B, H, W, C] input (any H, W >= 1; smaller than ``output_size`` repeats pixels).
    output_size: ``(oh, ow)`` or one int for both.

  Returns:
    [B, oh, ow, C]: output ``(i, j)`` is the mean of rows ``floor(i H / oh) ..
    ceil((i + 1) H / oh) - 1`` and the matching columns, like torch.

  Raises:
    ValueError: If ``x`` is not 4-D or ``output_size`` is not positive.
  """
  oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
  if x.ndim != 4:
    raise ValueError(f"adaptive_avg_pool expects [B, H, W, C] input; got shape {x.shape}")
  if oh < 1 or ow < 1:
    raise ValueError(f"output_size must be positive; got {output_size}")
  h, w = x.shape[1], x.shape[2]
  if (h, w) == (oh, ow):
    return x
  ph = jnp.asarray(_adaptive_pool_matrix(h, oh), x.dtype)
  pw = jnp.asarray(_adaptive_pool_matrix(w, ow), x.dtype)
  return jnp.einsum("ih,bhwc,jw->bijc", ph, x, pw, precision=jax.lax.Precision.HIGHEST)


class VGG(nn.Module):
  """torchvision-compatible VGG (see the module docstring for parameter names).

  Attributes:
    cfg: Channels per conv and ``"M"`` for max pools (torchvision's ``cfgs``; default "D").
    batch_norm: Whether every conv is followed by batch norm (``vgg*_bn``).
    num_classes: Number of output logits.
    dropout_rate: Dropout probability of the two hidden classifier layers (train mode only).
    dtype: Computation dtype; logits are always returned as float32.
  """

  cfg: Sequence[int | str] = CFG_D
  batch_norm: bool = False
  num_classes: int = 1000
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Applies the network.

    Args:
      x: float32[B, H, W, 3] images (NHWC), H, W >= 32 (five 2x2 max pools).
      train: If True, dropout is active (apply with ``rngs={"dropout": key}``) and batch norm
        uses batch statistics and updates ``batch_stats`` (``mutable=["batch_stats"]``).

    Returns:
      ``(logits, features)``: logits float32[B, num_classes] and a dict with
      ``"stage1"``..``"stage5"`` (the output of the last conv + ReLU of each of the five
      conv blocks, *before* its max pool: [B, H / 2**k, W / 2**k, 64/128/256/512/512] for
      k = 0..4, e.g. 224, 112, 56, 28, 14 at 224), ``"last_conv"`` (same as ``"stage5"``:
      torchvision ``features.29`` of ``vgg16``, the Grad-CAM layer) and ``"pre_logits"``
      [B, 4096] (the input of ``classifier.6``, after the second ReLU and dropout).

    Raises:
      ValueError: If ``x`` is not [B, H, W, 3] with H, W >= 32, or ``train`` without a
        ``"dropout"`` rng.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"VGG expects input of shape [B, H, W, 3]; got shape {tuple(x.shape)}")
    num_pools = sum(1 for v in self.cfg if v == "M")
    if min(x.shape[1], x.shape[2]) < 2**num_pools:
      raise ValueError(f"VGG needs H, W >= {2**num_pools} ({num_pools} max pools); got shape "
                       f"{tuple(x.shape)}")
    if train and self.dropout_rate > 0 and not self.has_rng("dropout"):
      raise ValueError("VGG(train=True) applies dropout: pass rngs={'dropout': key} to apply")
    feats: dict[str, jax.Array] = {}

    x = x.astype(self.dtype)
    idx, stage = 0, 0
    for v in self.cfg:
      if v == "M":
        stage += 1
        x = tap(self, f"stage{stage}", x, feats)
        if stage == num_pools:
          x = tap(self, "last_conv", x, feats)
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        idx += 1
        continue
      x = nn.Conv(
        int(v), (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=f"features_{idx}",
      )(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                         epsilon=_BN_EPSILON, dtype=self.dtype, name=f"features_{idx + 1}")(x)
      x = nn.relu(x)
      idx += 3 if self.batch_norm else 2

    x = adaptive_avg_pool(x, 7)
    # torch.flatten of NCHW: channel-major, so classifier_0 is torch's weight transposed.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    dense_init = nn.initializers.normal(0.01)
    for i in (0, 3):
      x = nn.Dense(4096, dtype=self.dtype, kernel_init=dense_init, name=f"classifier_{i}")(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    feats["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                      name="classifier_6")(x)
    return logits.astype(jnp.float32), feats


def VGG16(num_classes: int = 1000, **kw: Any) -> VGG:
  """VGG-16 (torchvision ``vgg16``, 138,357,544 params at 1000 classes)."""
  return VGG(cfg=CFG_D, batch_norm=False, num_classes=num_classes, **kw)


def VGG16BN(num_classes: int = 1000, **kw: Any) -> VGG:
  """VGG-16 with batch norm (torchvision ``vgg16_bn``, 138,365,992 params at 1000 classes)."""
  return VGG(cfg=CFG_D, batch_norm=True, num_classes=num_classes, **kw)


__all__ = ["CFG_D", "VGG", "VGG16", "VGG16BN", "adaptive_avg_pool", "layer_indices"]
