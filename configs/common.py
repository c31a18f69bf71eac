"""Helpers shared by the config files."""

from __future__ import annotations

from collections.abc import Sequence


def variants(arg: str | None, allowed: Sequence[str]) -> list[str]:
  """Parses a config argument ``"a,b"`` into its variants, rejecting unknown ones."""
  chosen = [a for a in (arg or "").split(",") if a]
  for v in chosen:
    if v not in allowed:
      raise ValueError(f"config variant must be one of {tuple(allowed)}, got {v!r}")
  return chosen
