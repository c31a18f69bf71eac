"""IASSA benchmark: cost of one adaptive iteration against a RISE pass with as many masks.

Measured in one run on the current machine (``python -m benchmarks.iassa_bench``), wall time,
median of ``--repeats`` >= 3 interleaved rounds after one warm-up call of each side
(:func:`benchmarks.common.timed`):

* ``iter_overhead``: time of an IASSA iteration / time of a RISE pass (``rise_jax.rise``, the
  explained class only) with the same number of masks through the same model, taken over a
  whole ``max_iters=1`` run (iteration 0 with its ``N_0`` windows and iteration 1 with the
  ``N_1`` windows that meet the HAR) against RISE with ``N_0 + N_1`` masks. It charges the
  one-off features and attention to IASSA, so it bounds the per-iteration overhead from above.
* ``iter0_overhead``: the same for a ``max_iters=0`` run against RISE with ``N_0`` masks.
* ``iter_overhead_first_call``: ``iter_overhead`` of the first calls (compilation included).
* ``details.iter1_diff_overhead``: iteration 1 alone, ``(t_1 - t_0) / (t_RISE(N_0 + N_1) -
  t_RISE(N_0))``; a difference of timings, so noisier.
* ``details.machinery_*``: the same ``max_iters=0`` comparison (wall time) with a linear black
  box, whose cost is negligible: what the window masks, the HAR bookkeeping and the
  accumulation cost per window, against RISE's mask generation and accumulation.

Process CPU-time ratios are in the details (``*_cpu_time``), beside the wall-time headlines,
never instead of them (earlier versions of this script headlined CPU time on a CPU backend).

Model: a Flax ResNet-18 (random init, 1000 classes, softmax scores, about 1.8 GMAC per
224x224 image) as the black box, and the same network's four stages as IASSA's features
(``stage_feature_fn``; 960 channels, attention grid ``size / 4``). Default input 112x112 so
that the run takes minutes on a 2-core CPU, with the paper's 224x224 window settings scaled by
``size / 224`` and rounded half up (window 45 -> 23, stride 8 -> 4, steps 1.5 / 0.2 ->
0.75 / 0.1: 576 windows at iteration 0 as at 224); ``--size 224`` runs the paper settings.
beta 0.5, T 0.3.

Writes ``benchmarks/results/iassa.json``. ``--quick`` shrinks every size for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp

import rise_jax
from benchmarks import common
from benchmarks.rise_bench import QUICK_SIZE, resnet18_black_box
from rise_jax.iassa import attention, iassa, stage_feature_fn


def _model(size: int):
  model_fn, module, variables = resnet18_black_box(size)
  return model_fn, stage_feature_fn(module.apply, variables)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
  parser.add_argument("--size", type=int, default=112)
  parser.add_argument("--batch-size", type=int, default=100,
                      help="black-box batch size of both IASSA and RISE")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=None, help="JSON path (default results/iassa.json)")
  args = parser.parse_args(argv)
  meta = common.start_meta("benchmarks.iassa_bench", argv, args.quick)
  size = QUICK_SIZE if args.quick else args.size
  scale = size / 224
  half_up = lambda x: max(math.floor(x + 0.5), 1)  # noqa: E731 - as the library rounds
  window, stride = (19, 9) if args.quick else (half_up(45 * scale), half_up(8 * scale))
  steps = dict(window_step=1.5 * scale, stride_step=0.2 * scale)
  b = args.batch_size

  model_fn, feature_fn = _model(size)
  image = jax.random.normal(jax.random.key(1), (size, size, 3))
  class_id = int(jnp.argmax(model_fn(image[None])[0]))
  kw = dict(class_id=class_id, window=window, stride=stride, batch_size=b, record=(), **steps)
  run0 = lambda: iassa(model_fn, feature_fn, image, **kw, max_iters=0).saliency  # noqa: E731
  run1 = lambda: iassa(model_fn, feature_fn, image, **kw, max_iters=1).saliency  # noqa: E731
  rise = lambda n: (lambda: rise_jax.rise(model_fn, image, 0, num_masks=n,  # noqa: E731
                                          batch_size=b, classes=[class_id]))
  # The window counts come from a first IASSA run; RISE's first call follows it, so both first
  # calls (compilation included) are timed alike, and common.timed's warm-ups find both warm.
  start = time.perf_counter()
  probe = iassa(model_fn, feature_fn, image, **kw, max_iters=1)
  jax.block_until_ready(probe.saliency)
  first = {"iassa_max_iters1": time.perf_counter() - start}
  n0, n1 = (int(n) for n in probe.windows)
  start = time.perf_counter()
  jax.block_until_ready(rise(n0 + n1)())
  first["rise_n0_plus_n1"] = time.perf_counter() - start
  attn = jax.jit(lambda x: attention(feature_fn(x[None])))
  lin_w = jax.random.normal(jax.random.key(2), image.shape)
  linear = jax.jit(lambda x: jnp.stack([jnp.sum(x * lin_w, (1, 2, 3)), jnp.zeros(len(x))], 1))
  cheap = lambda x: [x[:, ::4, ::4]]  # noqa: E731
  t = common.timed({"iassa_max_iters1": run1, "rise_n0_plus_n1": rise(n0 + n1),
                    "iassa_max_iters0": run0, "rise_n0": rise(n0)}, args.repeats)
  t.update(common.timed({"features_and_attention": lambda: attn(image)}, args.repeats))
  t.update(common.timed({
      "machinery_iassa": lambda: iassa(linear, cheap, image, **{**kw, "class_id": 0},
                                       max_iters=0).saliency,
      "machinery_rise": lambda: rise_jax.rise(linear, image, 0, num_masks=n0, batch_size=b,
                                              classes=[0]),
  }, args.repeats))
  w = {k: v.wall for k, v in t.items()}
  c = {k: v.cpu for k, v in t.items()}
  headlines = {
      "iter_overhead": common.headline(w["iassa_max_iters1"] / w["rise_n0_plus_n1"], "<= 1.2"),
      "iter0_overhead": common.headline(w["iassa_max_iters0"] / w["rise_n0"]),
      "iter_overhead_first_call": common.headline(
          first["iassa_max_iters1"] / first["rise_n0_plus_n1"],
          note="first calls (compilation included)"),
  }
  details = {
      "clock": common.clock_note(args.repeats),
      "first_calls_seconds": first,
      "iter1_diff_overhead": ((w["iassa_max_iters1"] - w["iassa_max_iters0"])
                              / (w["rise_n0_plus_n1"] - w["rise_n0"])),
      "iter_overhead_cpu_time": c["iassa_max_iters1"] / c["rise_n0_plus_n1"],
      "iter0_overhead_cpu_time": c["iassa_max_iters0"] / c["rise_n0"],
      "model": "Flax ResNet-18, 1000 classes, random init, softmax scores; features: "
               "its stage1..stage4 (stage_feature_fn)",
      "input_size": size, "batch_size": b, "window": window, "stride": stride, **steps,
      "class_id": class_id, "attention_grid": list(feature_fn(image[None])[0].shape[1:3]),
      "windows_iter0": n0, "windows_iter1": n1,
      "iassa_ms_per_window": 1e3 * w["iassa_max_iters1"] / (n0 + n1),
      "rise_ms_per_mask": 1e3 * w["rise_n0_plus_n1"] / (n0 + n1),
      "rise_classes": "the explained class only (classes=[class_id])",
      "machinery_iassa_ms_per_window": 1e3 * w["machinery_iassa"] / n0,
      "machinery_rise_ms_per_mask": 1e3 * w["machinery_rise"] / n0,
      "machinery_ratio": w["machinery_iassa"] / w["machinery_rise"],
  }
  common.print_headlines(headlines, [
      ("iter1_diff_overhead (differences)", f"{details['iter1_diff_overhead']:.3f}"),
      ("iter_overhead, iter0_overhead in CPU time",
       f"{details['iter_overhead_cpu_time']:.3f}, {details['iter0_overhead_cpu_time']:.3f}"),
      ("windows N_0, N_1", f"{n0}, {n1}"),
      ("IASSA max_iters=1, RISE N_0+N_1: wall s",
       f"{w['iassa_max_iters1']:.2f}, {w['rise_n0_plus_n1']:.2f}"),
      ("features + attention s", f"{w['features_and_attention']:.3f}"),
      ("machinery ms / window (IASSA, RISE), linear box",
       f"{details['machinery_iassa_ms_per_window']:.3f}, "
       f"{details['machinery_rise_ms_per_mask']:.3f}"),
  ])
  print(f"wrote {common.write_result('iassa', meta, headlines, details, t, args.out)}")


if __name__ == "__main__":
  main()
