"""Config fingerprints: what decides whether a finished run folder can be reused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

SKIP = ("progress", "workdir")  # entries that never change a run's results


def _strip(d: Any) -> Any:
  if isinstance(d, dict):
    return {k: _strip(v) for k, v in d.items() if k not in SKIP}
  if isinstance(d, list | tuple):
    return [_strip(v) for v in d]
  return d


def config_fingerprint(config) -> tuple[dict, str]:
  """The config as a JSON-able dict without ``progress``/``workdir`` (at any depth), and the
  SHA-256 of its sorted JSON: two configs with the same fingerprint give the same results."""
  d = _strip(config.to_dict() if hasattr(config, "to_dict") else dict(config))
  text = json.dumps(d, sort_keys=True, default=str)
  return json.loads(text), hashlib.sha256(text.encode()).hexdigest()
