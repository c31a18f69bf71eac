"""Layout helpers shared by the converters (NumPy only; torch tensors are converted first)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """A torch ``state_dict`` (tensors) as float32/int NumPy arrays, ``num_batches_tracked``
  entries dropped."""
  out = {}
  for k, v in state_dict.items():
    if k.endswith("num_batches_tracked"):
      continue
    arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    out[k] = arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating) else arr
  return out


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """torch conv weight [O, I, kh, kw] -> Flax [kh, kw, I, O] (depthwise: I = 1 in both)."""
  if w.ndim != 4:
    raise ValueError(f"conv weight must be 4-D [O, I, kh, kw], got shape {w.shape}")
  return np.transpose(w, (2, 3, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """torch linear weight [out, in] -> Flax [in, out]."""
  if w.ndim != 2:
    raise ValueError(f"linear weight must be 2-D [out, in], got shape {w.shape}")
  return w.T


def batch_norm(sd: Mapping[str, np.ndarray], prefix: str) -> tuple[dict, dict]:
  """``(params, batch_stats)`` of a Flax BatchNorm from torch ``prefix.{weight,bias,
  running_mean,running_var}``."""
  return ({"scale": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]},
          {"mean": sd[f"{prefix}.running_mean"], "var": sd[f"{prefix}.running_var"]})


class Consumer:
  """Reads a state_dict once per key and reports keys never used (a naming mismatch)."""

  def __init__(self, state_dict: Mapping[str, np.ndarray]):
    self._sd = dict(state_dict)
    self._used: set[str] = set()

  def __getitem__(self, key: str) -> np.ndarray:
    if key not in self._sd:
      raise KeyError(f"state_dict has no entry {key!r} (has e.g. {sorted(self._sd)[:5]})")
    self._used.add(key)
    return self._sd[key]

  def check_all_used(self) -> None:
    unused = sorted(set(self._sd) - self._used)
    if unused:
      raise ValueError(f"state_dict entries not converted (architecture mismatch?): "
                       f"{unused[:10]}{' ...' if len(unused) > 10 else ''}")
