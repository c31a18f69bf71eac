"""NN-Explainer benchmark: one Explainer pass vs RISE with N = 4000, per image (Stalder §4).

Measured in one run (``python -m benchmarks.explainer_bench``), random weights, 224x224,
20 classes (the paper's VOC setting) for both methods:

* Explainer: DeepLabV3-ResNet50 (output stride 8, ASPP 12/24/36), all 20 class masks in one
  forward pass (:func:`rise_jax.explainer.explain`), timed at batch 1 (per-image latency) and
  at ``--explainer-batch`` (per-image throughput).
* RISE: :func:`rise_jax.rise` on a VGG16 (20 classes, softmax scores), all class maps, timed at
  N = 200 and N = 400. N = 4000 is not run (15 to 30 minutes per call on 2 CPU cores): its time
  is **extrapolated**, the N = 400 time x 10, which assumes RISE time linear in N
  (``rise_linearity`` = t(400) / (2 t(200)) on the same clock, 1.0 = exactly linear). Every
  extrapolated headline says so (``extrapolated_from``), and the measured ratio at the largest
  N run (``explainer_speedup_measured_n400``) sits beside it.
* ``explainer_speedup`` = RISE(N = 4000) time per image / Explainer time per image at batch 1
  (the conservative figure); ``explainer_speedup_batched`` uses the batched Explainer time;
  ``explainer_speedup_first_call_n400`` the first calls (compilation included), measured.

Times: :func:`benchmarks.common.timed` (wall time, median of ``--repeats`` >= 3 interleaved
rounds after one warm-up call of each side); process CPU-time ratios are in the details, beside
the wall-time headlines. Writes ``benchmarks/results/explainer.json`` (``--out`` elsewhere).
``--quick`` shrinks every size for a smoke run.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rise_jax
from benchmarks import common
from benchmarks.rise_bench import QUICK_SIZE
from rise_jax.explainer import create_explainer, explain
from rise_jax.models.vgg import VGG16

NUM_CLASSES = 20
N_PAPER = 4000  # the RISE mask count of the paper's comparison


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
  parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS,
                      help="interleaved timing rounds (>= 3)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  meta = common.start_meta("benchmarks.explainer_bench", argv, args.quick)
  size = QUICK_SIZE if args.quick else 224
  n_small, n_large = (20, 40) if args.quick else (200, 400)
  backbone, width = ("resnet18", 8) if args.quick else ("resnet50", 64)
  b = min(args.batch_size, n_small)

  image = jax.random.normal(jax.random.key(1), (size, size, 3))
  model_fn = _vgg_black_box(size, NUM_CLASSES)
  explainer = _explainer(size, NUM_CLASSES, backbone, width)
  one = image[None]
  many = jnp.broadcast_to(image, (args.explainer_batch, size, size, 3)) + jnp.arange(
      args.explainer_batch, dtype=jnp.float32)[:, None, None, None] * 1e-3

  shapes = {}

  def rise_run(n):
    def run():
      maps = rise_jax.rise(model_fn, image, 0, num_masks=n, batch_size=b)
      shapes["rise"] = list(maps.shape)
      return maps
    return run

  t = common.timed({f"rise_n{n_small}": rise_run(n_small), f"rise_n{n_large}": rise_run(n_large),
                    "explainer_batch1": lambda: explainer(one),
                    f"explainer_batch{args.explainer_batch}": lambda: explainer(many)},
                   args.repeats)
  t_small, t_large = t[f"rise_n{n_small}"].wall, t[f"rise_n{n_large}"].wall
  t_expl_1 = t["explainer_batch1"].wall
  t_expl_b = t[f"explainer_batch{args.explainer_batch}"].wall / args.explainer_batch
  scale = N_PAPER / n_large
  t_rise_paper = t_large * scale
  extrapolated = (f"RISE N={N_PAPER} time = measured RISE N={n_large} wall time x {scale:g} "
                  f"(time linear in N: rise_linearity)")
  headlines = {
      "explainer_speedup": common.headline(t_rise_paper / t_expl_1, ">= 1000",
                                           extrapolated_from=extrapolated),
      f"explainer_speedup_measured_n{n_large}": common.headline(
          t_large / t_expl_1,
          note=f"RISE at N={n_large} (the largest N run) / Explainer batch 1, both measured"),
      "explainer_speedup_batched": common.headline(t_rise_paper / t_expl_b,
                                                   extrapolated_from=extrapolated),
      "rise_linearity": common.headline(t_large / (2 * t_small), "~ 1 +- 0.1",
                                        note=f"t(N={n_large}) / (2 t(N={n_small})), wall"),
      f"explainer_speedup_first_call_n{n_large}": common.headline(
          t[f"rise_n{n_large}"].first / t["explainer_batch1"].first,
          note=f"first calls (compilation included on both sides), RISE at N={n_large}"),
  }
  details = {
      "clock": common.clock_note(args.repeats),
      "input_size": size, "num_classes": NUM_CLASSES,
      "explainer": f"DeepLabV3-{backbone} (width {width}, output stride 8), random init",
      "rise_model": "VGG16 (random init, softmax scores)",
      "rise_batch_size": b, "explainer_batch": args.explainer_batch,
      "rise_seconds_measured": {str(n_small): t_small, str(n_large): t_large},
      "rise_seconds_extrapolated": {str(N_PAPER): t_rise_paper},
      "explainer_seconds_per_image_batch1": t_expl_1,
      "explainer_seconds_per_image_batched": t_expl_b,
      "explainer_speedup_cpu_time": (t[f"rise_n{n_large}"].cpu * scale
                                     / t["explainer_batch1"].cpu),
      "rise_linearity_cpu_time": t[f"rise_n{n_large}"].cpu / (2 * t[f"rise_n{n_small}"].cpu),
      "rise_output_shape": shapes["rise"],
      "explainer_output_shape": list(explainer(one).shape),
  }
  common.print_headlines(headlines, [
      (f"RISE seconds N={n_small} / N={n_large}", f"{t_small:.3f} / {t_large:.3f}"),
      (f"RISE seconds N={N_PAPER} (extrapolated)", f"{t_rise_paper:.2f}"),
      ("Explainer ms per image (batch 1 / batched)",
       f"{t_expl_1 * 1e3:.1f} / {t_expl_b * 1e3:.1f}"),
  ])
  print(f"wrote {common.write_result('explainer', meta, headlines, details, t, args.out)}")


if __name__ == "__main__":
  main()
