"""RISE benchmark: overhead over the plain forward pass, memory vs N, mask generation speed.

Measured in one run on the current machine (``python -m benchmarks.rise_bench``):

* ``overhead``: wall time of ``rise`` (all 1000 class maps, N masks) / wall time of a plain
  jitted batched forward of N distinct images through the same model (a Flax ResNet-18,
  about 1.8 GMAC per 224x224 image, 1000 classes); ``overhead_first_call`` is the same ratio
  of the first calls (compilation included).
* ``memory_ratio``: peak RSS of a process running RISE at N = 8000 / at N = 500 (same model).
* ``mask_speedup``: wall time of the authors' NumPy + scikit-image loop (one
  ``skimage.transform.resize`` per mask, float64 output) / wall time of ``generate_masks``,
  both drawing the same number of masks (1000).

Times: :func:`benchmarks.common.timed` (wall time, median of ``--repeats`` >= 3 interleaved
rounds after one warm-up call of each side).

Writes ``benchmarks/results/rise.json``. ``--quick`` shrinks every size for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import rise_jax
from benchmarks import common
from rise_jax.models.resnet import ResNet18

# --quick image side, shared by the quick paths: 96, not 64, because at 64 px ResNet-18's
# layer4 maps are 2x2, where XLA's CPU 3x3 conv is far slower than on 3x3 maps (batch-100
# forward 25 s at 64 px vs 5.5 s at 96 px, measured on the shared 2-core machine).
QUICK_SIZE = 96


def resnet18_black_box(size: int):
  """``(model_fn, module, variables)``: a random-init ResNet-18 (1000 classes), softmax scores."""
  module = ResNet18(num_classes=1000)
  variables = module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))

  @jax.jit
  def model_fn(x):
    return jax.nn.softmax(module.apply(variables, x)[0], axis=-1)

  return model_fn, module, variables


def _model(size: int):
  return resnet18_black_box(size)[0]


def _image(size: int) -> jax.Array:
  return jax.random.normal(jax.random.key(1), (size, size, 3))


def plain_forward(model_fn, image, num_images: int, batch_size: int):
  """One jitted program: ``num_images`` distinct images through the model in batches."""
  steps = num_images // batch_size

  @jax.jit
  def run(image):
    def body(j, acc):
      scale = 1.0 + (j * batch_size + jnp.arange(batch_size)) * 1e-7
      return acc + model_fn(image[None] * scale[:, None, None, None]).sum(0)
    return jax.lax.fori_loop(0, steps, body, jnp.zeros((1000,), jnp.float32))

  return lambda: run(image)


def reference_masks(num_masks: int, size: int, s: int = 7, p1: float = 0.5) -> np.ndarray:
  """The authors' mask generator (RISE explanations.py), minus its np.save."""
  from skimage.transform import resize
  input_size = (size, size)
  cell_size = np.ceil(np.array(input_size) / s)
  up_size = ((s + 1) * cell_size).astype(int)
  grid = (np.random.rand(num_masks, s, s) < p1).astype("float32")
  masks = np.empty((num_masks, *input_size))
  for i in range(num_masks):
    x = np.random.randint(0, cell_size[0])
    y = np.random.randint(0, cell_size[1])
    masks[i] = resize(grid[i], up_size, order=1, mode="reflect",
                      anti_aliasing=False)[x:x + size, y:y + size]
  return masks


def child_memory(num_masks: int, size: int, batch_size: int) -> dict:
  model_fn = _model(size)
  start = time.perf_counter()
  maps = rise_jax.rise(model_fn, _image(size), 0, num_masks=num_masks, batch_size=batch_size)
  jax.block_until_ready(maps)
  return {"num_masks": num_masks, "peak_rss_mb": common.peak_rss_mb(),
          "seconds": time.perf_counter() - start}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
  parser.add_argument("--child-memory", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batch-size", type=int, default=100,
                      help="RISE batch size (the library default) and forward batch size")
  parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS,
                      help="interleaved timing rounds (>= 3)")
  parser.add_argument("--out", default=None, help="JSON path (default results/rise.json)")
  args = parser.parse_args(argv)
  if args.child_memory:
    print(json.dumps(child_memory(args.child_memory, args.size, args.batch_size)))
    return
  meta = common.start_meta("benchmarks.rise_bench", argv, args.quick)
  size = QUICK_SIZE if args.quick else args.size
  n_overhead = 100 if args.quick else 1000
  n_mem = (50, 200) if args.quick else (500, 8000)
  n_masks = 100 if args.quick else 1000
  b = args.batch_size

  model_fn = _model(size)
  image = _image(size)
  t = common.timed({
      "forward": plain_forward(model_fn, image, n_overhead, b),
      "rise": lambda: rise_jax.rise(model_fn, image, 0, num_masks=n_overhead, batch_size=b),
  }, args.repeats)
  # Mask generation: both sides draw the same number of masks, same warm-up and rounds.
  t.update(common.timed({
      "generate_masks": lambda: rise_jax.generate_masks(1, n_masks, size, 7, 0.5),
      "authors_mask_loop": lambda: reference_masks(n_masks, size),
  }, args.repeats))
  mem = [common.run_child("benchmarks.rise_bench",
                          ["--child-memory", str(n), "--size", str(size),
                           "--batch-size", str(b)]) for n in n_mem]

  headlines = {
      "overhead": common.headline(t["rise"].wall / t["forward"].wall, "<= 1.10"),
      "memory_ratio": common.headline(mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"], "<= 1.10",
                                      clock="memory"),
      "mask_speedup": common.headline(t["authors_mask_loop"].wall / t["generate_masks"].wall,
                                      ">= 20"),
      "overhead_first_call": common.headline(
          t["rise"].first / t["forward"].first,
          note="first calls (compilation included) of RISE and of the forward program"),
  }
  details = {
      "model": "Flax ResNet-18, 1000 classes, random init, softmax scores",
      "clock": common.clock_note(args.repeats),
      "input_size": size, "batch_size": b, "num_masks_overhead": n_overhead,
      "rise_ms_per_mask": 1e3 * t["rise"].wall / n_overhead,
      "forward_ms_per_image": 1e3 * t["forward"].wall / n_overhead,
      "memory_runs": mem,
      "num_masks_generated": n_masks,
      "generate_masks_us_per_mask": 1e6 * t["generate_masks"].wall / n_masks,
      "authors_loop_us_per_mask": 1e6 * t["authors_mask_loop"].wall / n_masks,
      "overhead_cpu_time": t["rise"].cpu / t["forward"].cpu,
  }
  common.print_headlines(headlines, [
      ("RISE ms / mask", f"{details['rise_ms_per_mask']:.2f}"),
      ("forward ms / image", f"{details['forward_ms_per_image']:.2f}"),
      ("peak RSS MiB (small N, large N)",
       f"{mem[0]['peak_rss_mb']:.0f}, {mem[1]['peak_rss_mb']:.0f}"),
      ("generate_masks us / mask", f"{details['generate_masks_us_per_mask']:.1f}"),
      ("authors' skimage loop us / mask", f"{details['authors_loop_us_per_mask']:.1f}"),
  ])
  print(f"wrote {common.write_result('rise', meta, headlines, details, t, args.out)}")


if __name__ == "__main__":
  main()
