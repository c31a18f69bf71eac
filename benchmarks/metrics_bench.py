"""Causal-metric benchmark: batched deletion + insertion vs the forward floor and a step loop.

Measured in one run (``python -m benchmarks.metrics_bench``), same Flax ResNet-18 (1000 classes,
softmax) at 224x224 as the RISE benchmark, 4 images, step 224 (225 steps + 1 per curve):

* ``causal_overhead``: time of ``deletion`` + ``insertion`` for the 4 images / time of a plain
  jitted batched forward of the same number of images (2 x 4 x 225).
* ``causal_speedup``: time of the authors' per-step loop (one forward call per step, pixels
  changed on the host, as RISE's ``evaluation.py`` does) / time of the batched version.

Writes ``benchmarks/results/metrics.json``. ``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import time

import jax.numpy as jnp
import numpy as np

import rise_jax
from benchmarks import common
from benchmarks.rise_bench import _model, plain_forward
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
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  size = 64 if args.quick else 224
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
  t_forward, t_batched, t_program = common.interleaved_best([forward, batched, program],
                                                            repeats=2)
  t_forward *= 2 * num_images * n_steps / n_forward  # same image count as the metrics
  d_ref = step_loop(model_fn, images[:1], sal[:1], ids[:1], step, "deletion")  # warm-up
  start = time.perf_counter()
  d_ref = step_loop(model_fn, images, sal, ids, step, "deletion")
  i_ref = step_loop(model_fn, images, sal, ids, step, "insertion")
  t_loop = time.perf_counter() - start
  d_curve, i_curve = batched()
  d_auc, i_auc = causal.auc(d_curve), causal.auc(i_curve)
  result = {
      "causal_overhead": t_batched / t_forward,
      "causal_speedup": t_loop / t_batched,
      "details": {
          "model": "Flax ResNet-18, 1000 classes, random init, softmax scores",
          "input_size": size, "step": step, "num_images": num_images, "batch_size": b,
          "forward_images": 2 * num_images * n_steps, "batched_seconds": t_batched,
          "forward_seconds": t_forward, "loop_seconds": t_loop,
          "program_seconds": t_program,
          "program_overhead": t_program / t_forward,
          "max_abs_auc_diff_vs_loop": float(max(np.abs(d_auc - d_ref).max(),
                                                np.abs(i_auc - i_ref).max())),
      },
      "environment": common.environment(),
      "targets": {"causal_overhead": "<= 1.15", "causal_speedup": ">= 3"},
  }
  common.print_table([
      ("causal_overhead (metrics / forward)", f"{result['causal_overhead']:.3f}", "<= 1.15"),
      ("causal_speedup (step loop / batched)", f"{result['causal_speedup']:.2f}", ">= 3"),
      ("batched seconds", f"{t_batched:.2f}", ""),
      ("forward seconds", f"{t_forward:.2f}", ""),
      ("jitted curve programs alone, seconds", f"{t_program:.2f}", ""),
      ("step-loop seconds", f"{t_loop:.2f}", ""),
      ("max |AUC batched - AUC loop|", f"{result['details']['max_abs_auc_diff_vs_loop']:.2e}",
       ""),
  ])
  print(f"wrote {common.write_json('metrics', result, args.out)}")


if __name__ == "__main__":
  main()
