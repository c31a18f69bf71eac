"""NN-Explainer benchmark: one Explainer pass vs RISE with N = 4000, per image (Stalder §4).

Measured in one run (``python -m benchmarks.explainer_bench``), random weights, 224x224,
20 classes (the paper's VOC setting) for both methods:

* Explainer: DeepLabV3-ResNet50 (output stride 8, ASPP 12/24/36), all 20 class masks in one
  forward pass (:func:`rise_jax.explainer.explain`), timed at batch 1 (per-image latency) and
  at ``--explainer-batch`` (per-image throughput).
* RISE: :func:`rise_jax.rise` on a VGG16 (20 classes, softmax scores), all class maps, timed at
  N = 200 and N = 400; the N = 4000 time is the N = 400 time x 10, valid because RISE time is
  linear in N (``rise_linearity`` = t(400) / (2 t(200)), 1.0 = exactly linear).
* ``explainer_speedup`` = RISE(N = 4000) time per image / Explainer time per image at batch 1
  (the conservative figure); ``explainer_speedup_batched`` uses the batched Explainer time.

Times are process CPU time on a CPU backend (robust to other jobs on the cores) and wall time on
an accelerator; both clocks are recorded. Writes ``benchmarks/results/explainer.json``
(``--out`` elsewhere). ``--quick`` shrinks every size for a smoke run.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rise_jax
from benchmarks import common
from rise_jax.explainer import create_explainer, explain
from rise_jax.models.vgg import VGG16

NUM_CLASSES = 20


def _vgg_black_box(size: int, num_classes: int):
  module = VGG16(num_classes=num_classes)
  variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, size, size, 3)))

  @jax.jit
  def model_fn(x):
    return jax.nn.softmax(module.apply(variables, x)[0], axis=-1)

  return model_fn


def _explainer(size: int, num_classes: int, backbone: str, width: int):
  module = create_explainer(num_classes, backbone=backbone, width=width, output_stride=8)
  variables = jax.jit(lambda k: module.init(k, jnp.zeros((1, size, size, 3))))(jax.random.key(2))
  return lambda images: explain(module, variables, images)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--batch-size", type=int, default=50, help="RISE masks per batch")
  parser.add_argument("--explainer-batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  size = 64 if args.quick else 224
  n_small, n_large = (20, 40) if args.quick else (200, 400)
  backbone, width = ("resnet18", 8) if args.quick else ("resnet50", 64)
  b = min(args.batch_size, n_small)

  image = jax.random.normal(jax.random.key(1), (size, size, 3))
  model_fn = _vgg_black_box(size, NUM_CLASSES)
  explainer = _explainer(size, NUM_CLASSES, backbone, width)
  one = image[None]
  many = jnp.broadcast_to(image, (args.explainer_batch, size, size, 3)) + jnp.arange(
      args.explainer_batch, dtype=jnp.float32)[:, None, None, None] * 1e-3

  def rise_run(n):
    return lambda: rise_jax.rise(model_fn, image, 0, num_masks=n, batch_size=b)

  wall, cpu = common.interleaved_best_wall_cpu(
      [rise_run(n_small), rise_run(n_large), lambda: explainer(one), lambda: explainer(many)],
      repeats=args.repeats)
  clock = common.headline_clock()
  t_small, t_large, t_expl_1, t_expl_b = cpu if clock == "cpu" else wall
  t_expl_b /= args.explainer_batch
  t_rise_4000 = t_large * 4000 / n_large
  maps = rise_run(n_large)()
  masks = explainer(one)
  result = {
      "explainer_speedup": t_rise_4000 / t_expl_1,
      "explainer_speedup_batched": t_rise_4000 / t_expl_b,
      "rise_linearity": t_large / (2 * t_small),
      "details": {
          "input_size": size, "num_classes": NUM_CLASSES,
          "explainer": f"DeepLabV3-{backbone} (width {width}, output stride 8), random init",
          "rise_model": "VGG16 (random init, softmax scores)",
          "rise_batch_size": b, "explainer_batch": args.explainer_batch,
          "rise_seconds": {str(n_small): t_small, str(n_large): t_large,
                           "4000 (scaled x10 from 400)": t_rise_4000},
          "explainer_seconds_per_image_batch1": t_expl_1,
          "explainer_seconds_per_image_batched": t_expl_b,
          "clock": ("process CPU time (CPU backend; other jobs may share the cores)"
                    if clock == "cpu" else "wall time"),
          "wall_seconds": dict(zip(("rise_small", "rise_large", "explainer_batch1",
                                    "explainer_batched_total"), wall)),
          "cpu_seconds": dict(zip(("rise_small", "rise_large", "explainer_batch1",
                                   "explainer_batched_total"), cpu)),
          "rise_output_shape": list(maps.shape), "explainer_output_shape": list(masks.shape),
      },
      "environment": common.environment(),
      "targets": {"explainer_speedup": ">= 1000", "rise_linearity": "~1 (linear in N)"},
  }
  common.print_table([
      ("explainer_speedup (RISE N=4000 / Explainer, batch 1)",
       f"{result['explainer_speedup']:.0f}", ">= 1000"),
      ("explainer_speedup_batched (Explainer batch "
       f"{args.explainer_batch})", f"{result['explainer_speedup_batched']:.0f}", ""),
      (f"rise_linearity t({n_large}) / 2 t({n_small})", f"{result['rise_linearity']:.3f}",
       "~1"),
      (f"RISE seconds N={n_small} / N={n_large}", f"{t_small:.3f} / {t_large:.3f}", ""),
      ("RISE seconds N=4000 (scaled)", f"{t_rise_4000:.2f}", ""),
      ("Explainer ms per image (batch 1 / batched)",
       f"{t_expl_1 * 1e3:.1f} / {t_expl_b * 1e3:.1f}", ""),
  ])
  print(f"wrote {common.write_json('explainer', result, args.out)}")


if __name__ == "__main__":
  main()
