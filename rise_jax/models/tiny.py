"""A tiny CNN classifier for tests, demos and the CPU benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rise_jax.models.common import tap


class TinyCNN(nn.Module):
  """A small conv net: ``len(features)`` conv-ReLU-pool stages, global pool, dense head.

  Attributes:
    num_classes: Number of output logits ``C``.
    features: Channels of each conv stage.
  """

  num_classes: int
  features: Sequence[int] = (16, 32, 64)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Applies the network.

    Args:
      x: float32[B, H, W, C_in] images.
      train: Unused (no batch norm or dropout); kept for the common model signature.

    Returns:
      ``(logits, features)``: logits float32[B, num_classes] and a dict of named stage
      outputs ``"stage1"``... (each float32[B, h, w, c]) plus ``"pre_logits"`` [B, c].
    """
    del train
    feats = {}
    for i, width in enumerate(self.features):
      x = nn.relu(nn.Conv(width, (3, 3), name=f"conv{i + 1}")(x))
      x = tap(self, f"stage{i + 1}", x, feats)
      if i < len(self.features) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = tap(self, "last_conv", x, feats)
    x = jnp.mean(x, axis=(1, 2))
    feats["pre_logits"] = x
    logits = nn.Dense(self.num_classes, name="head")(x)
    return logits, feats
