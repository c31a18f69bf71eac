"""Peak memory of the current process, without importing jax or torch (for memory children)."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
  """Peak RSS of this process's own address space in MiB (``VmHWM`` of ``/proc/self/status``).

  Not ``ru_maxrss``: Linux carries it over fork and exec, so a child process started by a
  parent that already holds more memory would report the parent's peak. ``ru_maxrss`` is the
  fallback where ``/proc`` is missing (macOS: bytes there, KiB on Linux).
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
