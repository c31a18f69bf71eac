"""Causal-metric benchmark: batched deletion + insertion vs the forward floor and a step loop.

Measured in one run (``python -m benchmarks.metrics_bench``), same Flax ResNet-18 (1000 classes,
softmax) at 224x224 as the RISE benchmark, 4 images, step 224 (225 steps + 1 per curve):

* ``causal_overhead``: time of ``deletion`` + ``insertion`` for the 4 images / time of a plain
  jitted batched forward of the same number of images (2 x 4 x 225).
* ``causal_speedup``: time of the authors' per-step loop (one forward call per step, pixels
  changed on the host, as RISE's ``evaluation.py`` does; both metrics, all images) / time of
  the batched version; ``causal_speedup_first_call`` is the same ratio of the first calls.

Times: :func:`benchmarks.common.timed` (wall time, median of ``--repeats`` >= 3 interleaved
rounds after one warm-up call of each side: the loop gets the same full warm-up as the
batched metrics).

Writes ``benchmarks/results/metrics.json``. ``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import math

import jax.numpy as jnp
import numpy as np

import rise_jax
from benchmarks import common
from benchmarks.rise_bench import QUICK_SIZE, _model, plain_forward
from rise_jax import substrates
from rise_jax.metrics import causal


def step_loop(model_fn, images, saliency, class_ids, step, mode):
  """RISE's evaluation.py CausalMetric.single_run, one image at a time, in NumPy + JAX."""
  aucs = []
  for x, sal, c in zip(images, saliency, class_ids):
    x = np.asarray(x)
    h, w, _ = x.shape
    n = math.ceil(h * w / step)
    if mode == "deletion":
      start, finish = x.copy(), np.zeros_like(x)
    else:
      start, finish = np.array(substrates.blur(jnp.asarray(x))), x.copy()
    order = np.argsort(-sal.reshape(-1), kind="stable")
    scores = np.empty(n + 1)
    flat_s, flat_f = start.reshape(-1, 3), finish.reshape(-1, 3)
    for i in range(n + 1):
      scores[i] = float(model_fn(jnp.asarray(start)[None])[0, c])
      if i < n:
        idx = order[step * i:step * (i + 1)]
        flat_s[idx] = flat_f[idx]
    aucs.append(causal.auc(scores))
  return np.asarray(aucs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS,
                      help="interleaved timing rounds (>= 3)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  meta = common.start_meta("benchmarks.metrics_bench", argv, args.quick)
  size = QUICK_SIZE if args.quick else 224
  step = size
  num_images = 2 if args.quick else 4
  b = args.batch_size
  model_fn = _model(size)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(num_images, size, size, 3)), jnp.float32)
  sal = rng.random((num_images, size, size)).astype(np.float32)
  ids = np.asarray(jnp.argmax(model_fn(images), axis=1))
  n_steps = math.ceil(size * size / step) + 1
  n_forward = 2 * num_images * n_steps
  n_forward -= n_forward % b

  def batched():
    d = causal.deletion(model_fn, images, sal, ids, step=step, batch_size=b)
    i = causal.insertion(model_fn, images, sal, ids, step=step, batch_size=b)
    return d[1], i[1]

  def program():  # the two jitted curve programs alone, inputs prepared (no host checks)
    return [causal._curves(model_fn, cfg, mesh, images, sal_dev, ids_dev, zero)[0]
            for cfg in cfgs]

  mesh = rise_jax.batch_mesh()
  sal_dev, ids_dev, zero = jnp.asarray(sal), jnp.asarray(ids, jnp.int32), jnp.zeros(())
  cfgs = [causal._Config(mode=m, step=step, num_steps=n_steps - 1, batch_size=b, substrate=sub)
          for m, sub in (("deletion", "zeros"), ("insertion", "blur"))]
  forward = plain_forward(model_fn, images[0], n_forward, b)
  fwd_scale = 2 * num_images * n_steps / n_forward  # same image count as the metrics

  last = {}

  def loop():  # the authors' per-step loop, deletion and insertion, all images
    last["loop"] = (step_loop(model_fn, images, sal, ids, step, "deletion"),
                    step_loop(model_fn, images, sal, ids, step, "insertion"))
    return last["loop"]

  t = common.timed({"forward": forward, "batched": batched, "program": program,
                    "step_loop": loop}, args.repeats)
  t_forward = t["forward"].wall * fwd_scale
  d_ref, i_ref = last["loop"]  # the last timed call's AUCs
  d_curve, i_curve = batched()
  d_auc, i_auc = causal.auc(d_curve), causal.auc(i_curve)
  headlines = {
      "causal_overhead": common.headline(t["batched"].wall / t_forward, "<= 1.15"),
      "causal_speedup": common.headline(t["step_loop"].wall / t["batched"].wall, ">= 3"),
      "causal_speedup_first_call": common.headline(
          t["step_loop"].first / t["batched"].first,
          note="first calls (compilation included on both sides)"),
  }
  details = {
      "model": "Flax ResNet-18, 1000 classes, random init, softmax scores",
      "clock": common.clock_note(args.repeats),
      "input_size": size, "step": step, "num_images": num_images, "batch_size": b,
      "forward_images": 2 * num_images * n_steps,
      "forward_images_timed": n_forward, "forward_seconds_scaled": t_forward,
      "program_overhead": t["program"].wall / t_forward,
      "causal_overhead_cpu_time": t["batched"].cpu / (t["forward"].cpu * fwd_scale),
      "causal_speedup_cpu_time": t["step_loop"].cpu / t["batched"].cpu,
      "max_abs_auc_diff_vs_loop": float(max(np.abs(d_auc - d_ref).max(),
                                            np.abs(i_auc - i_ref).max())),
  }
  common.print_headlines(headlines, [
      ("batched seconds", f"{t['batched'].wall:.2f}"),
      ("forward seconds (scaled to the metrics' image count)", f"{t_forward:.2f}"),
      ("jitted curve programs alone, seconds", f"{t['program'].wall:.2f}"),
      ("step-loop seconds", f"{t['step_loop'].wall:.2f}"),
      ("max |AUC batched - AUC loop|", f"{details['max_abs_auc_diff_vs_loop']:.2e}"),
  ])
  print(f"wrote {common.write_result('metrics', meta, headlines, details, t, args.out)}")


if __name__ == "__main__":
  main()
