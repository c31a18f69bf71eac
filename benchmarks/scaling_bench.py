"""Scaling benchmark: rise_jax RISE time vs the number of masks N and vs the image size.

Measured in one run on the current machine (``python -m benchmarks.scaling_bench``) with
:func:`rise_jax.rise` (all 1000 class maps, batch 100, s = 7, p1 = 0.5) on a Flax ResNet-18 at
width 16 (:func:`rise_jax.models.resnet.ResNet18` with ``width=16``: torchvision's layout with
1/4 of the channels, about 1/16 of the MACs; random init, softmax scores), small enough for the
whole run to take a few minutes on 2 CPU cores:

* ``slope_n``: the slope of log(time) vs log(N), N in 500, 1000, 2000, 4000, 8000 at 112x112
  (1 = time linear in N), fitted with ``np.polyfit``; ``details.seconds_per_mask`` and
  ``details.fixed_seconds`` are the linear fit ``time = a * N + c``.
* ``slope_size``: the slope of log(time) vs log(image side), sides 112, 224, 448 at N = 1000
  (2 = time linear in the number of pixels).

Each point is the median wall time of ``--repeats`` >= 3 interleaved rounds after one warm-up
call of each (:func:`benchmarks.common.timed`; its first call, compilation included, and the
process CPU times are kept in ``timings``; the slopes of the CPU times are in the details).
Writes ``benchmarks/results/scaling.json`` (``--out`` elsewhere). ``--quick`` (a smoke run, 3
compilations): N in 50, 100 at 32x32 and sides 32, 64 at N = 100, batch 50 (the batch is
capped at the smallest N: a smaller N would be padded to a whole batch and flatten the N
curve).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import rise_jax
from benchmarks import common
from rise_jax.models.resnet import ResNet18

WIDTH = 16


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
  """The exponent ``a`` of the least-squares fit ``y = c * x**a`` (a line on log-log axes).

  Args:
    x: float[P] positive abscissae (e.g. N or the image side).
    y: float[P] positive times.

  Returns:
    The slope of ``log(y)`` against ``log(x)``.
  """
  return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
  """Least-squares ``y = a * x + c``.

  Args:
    x: float[P] abscissae (e.g. N).
    y: float[P] times.

  Returns:
    ``(a, c)``: the slope (e.g. seconds per mask) and the intercept (fixed seconds).
  """
  a, c = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
  return float(a), float(c)


def _black_box():
  module = ResNet18(num_classes=1000, width=WIDTH)
  variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))

  @jax.jit
  def model_fn(x):
    return jax.nn.softmax(module.apply(variables, x)[0], axis=-1)

  return model_fn


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
  parser.add_argument("--batch-size", type=int, default=100, help="masks per model call")
  parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS,
                      help="interleaved timing rounds (>= 3)")
  parser.add_argument("--out", default=None, help="JSON path (default results/scaling.json)")
  args = parser.parse_args(argv)
  meta = common.start_meta("benchmarks.scaling_bench", argv, args.quick)
  if args.quick:
    ns, n_size, sizes, fixed_n = (50, 100), 32, (32, 64), 100
  else:
    ns, n_size, sizes, fixed_n = (500, 1000, 2000, 4000, 8000), 112, (112, 224, 448), 1000
  b = min(args.batch_size, min(ns))  # N < batch would be padded to a whole batch
  model_fn = _black_box()

  def run(n, size):
    image = jax.random.normal(jax.random.key(1), (size, size, 3))
    return lambda: rise_jax.rise(model_fn, image, 0, num_masks=n, batch_size=b)

  points = list(dict.fromkeys([(n, n_size) for n in ns] + [(fixed_n, s) for s in sizes]))
  t = common.timed({f"N={n},size={s}": run(n, s) for n, s in points}, args.repeats)
  times = {(n, s): t[f"N={n},size={s}"].wall for n, s in points}
  cpu = {(n, s): t[f"N={n},size={s}"].cpu for n, s in points}
  t_n = [times[(n, n_size)] for n in ns]
  t_size = [times[(fixed_n, s)] for s in sizes]
  per_mask, fixed = linear_fit(ns, t_n)
  headlines = {
      "slope_n": common.headline(loglog_slope(ns, t_n), "~ 1 +- 0.1", clock="fit",
                                 note="log-log slope of wall time vs N"),
      "slope_size": common.headline(loglog_slope(sizes, t_size), "~ 2 +- 0.2", clock="fit",
                                    note="log-log slope of wall time vs image side"),
  }
  details = {
      "model": (f"Flax ResNet-18 at width {WIDTH} (torchvision layout, 1/4 of the channels), "
                "1000 classes, random init, softmax scores"),
      "method": "rise_jax.rise, all 1000 class maps, grid 7, p1 0.5",
      "batch_size": b, "clock": common.clock_note(args.repeats),
      "n_scaling": {"input_size": n_size, "num_masks": list(ns), "seconds": t_n},
      "size_scaling": {"num_masks": fixed_n, "input_size": list(sizes), "seconds": t_size},
      "seconds_per_mask": per_mask, "fixed_seconds": fixed,
      "ms_per_mask_per_point": {f"N={n},size={s}": 1e3 * times[(n, s)] / n for n, s in points},
      "slope_n_cpu_time": loglog_slope(ns, [cpu[(n, n_size)] for n in ns]),
      "slope_size_cpu_time": loglog_slope(sizes, [cpu[(fixed_n, s)] for s in sizes]),
  }
  common.print_headlines(headlines, [
      ("seconds per mask (linear fit in N)", f"{per_mask * 1e3:.3f} ms"),
      ("fixed seconds (intercept)", f"{fixed:.3f}"),
      *[(f"seconds N={n} ({n_size}px)", f"{x:.3f}") for n, x in zip(ns, t_n)],
      *[(f"seconds {s}px (N={fixed_n})", f"{x:.3f}") for s, x in zip(sizes, t_size)],
  ])
  print(f"wrote {common.write_result('scaling', meta, headlines, details, t, args.out)}")


if __name__ == "__main__":
  main()
