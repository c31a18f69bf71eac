"""RISE benchmark: overhead over the plain forward pass, memory vs N, mask generation speed.

Measured in one run on the current machine (``python -m benchmarks.rise_bench``):

* ``overhead``: wall time of ``rise`` (all 1000 class maps, N masks) / wall time of a plain
  jitted batched forward of N distinct images through the same model (a Flax ResNet-18,
  about 1.8 GMAC per 224x224 image, 1000 classes), both after compilation.
* ``memory_ratio``: peak RSS of a process running RISE at N = 8000 / at N = 500 (same model).
* ``mask_speedup``: masks/s of ``generate_masks`` / masks/s of the authors' NumPy +
  scikit-image loop (one ``skimage.transform.resize`` per mask, float64 output).

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
  parser.add_argument("--out", default=None, help="JSON path (default results/rise.json)")
  args = parser.parse_args(argv)
  if args.child_memory:
    print(json.dumps(child_memory(args.child_memory, args.size, args.batch_size)))
    return
  size = 64 if args.quick else args.size
  n_overhead = 100 if args.quick else 1000
  n_mem = (50, 200) if args.quick else (500, 8000)
  n_masks_gen = 100 if args.quick else 1000
  n_ref = 20 if args.quick else 200
  b = args.batch_size

  model_fn = _model(size)
  image = _image(size)
  forward = plain_forward(model_fn, image, n_overhead, b)
  run_rise = lambda: rise_jax.rise(model_fn, image, 0, num_masks=n_overhead, batch_size=b)  # noqa
  # Interleaved (forward, RISE) pairs after a warm-up of each, best of each: a load change on
  # the machine affects both sides of the ratio alike.
  t_forward, t_rise = common.interleaved_best([forward, run_rise], repeats=2)

  mem = [common.run_child("benchmarks.rise_bench",
                          ["--child-memory", str(n), "--size", str(size),
                           "--batch-size", str(b)]) for n in n_mem]

  t_gen = common.best_time(
      lambda: rise_jax.generate_masks(1, n_masks_gen, size, 7, 0.5), repeats=2)
  reference_masks(5, size)
  start = time.perf_counter()
  reference_masks(n_ref, size)
  t_ref = (time.perf_counter() - start) / n_ref * n_masks_gen

  result = {
      "overhead": t_rise / t_forward,
      "memory_ratio": mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"],
      "mask_speedup": t_ref / t_gen,
      "details": {
          "model": "Flax ResNet-18, 1000 classes, random init, softmax scores",
          "input_size": size, "batch_size": b, "num_masks_overhead": n_overhead,
          "rise_seconds": t_rise, "forward_seconds": t_forward,
          "rise_ms_per_mask": 1e3 * t_rise / n_overhead,
          "forward_ms_per_image": 1e3 * t_forward / n_overhead,
          "memory_runs": mem,
          "generate_masks_us_per_mask": 1e6 * t_gen / n_masks_gen,
          "reference_us_per_mask": 1e6 * t_ref / n_masks_gen,
          "num_masks_generated": n_masks_gen, "reference_masks_timed": n_ref,
      },
      "environment": common.environment(),
      "targets": {"overhead": "<= 1.10", "memory_ratio": "<= 1.10", "mask_speedup": ">= 20"},
  }
  common.print_table([
      ("overhead (RISE / forward)", f"{result['overhead']:.3f}", "<= 1.10"),
      (f"memory_ratio (N={n_mem[1]} / N={n_mem[0]})", f"{result['memory_ratio']:.3f}",
       "<= 1.10"),
      ("mask_speedup (vs skimage loop)", f"{result['mask_speedup']:.1f}", ">= 20"),
      ("RISE ms / mask", f"{1e3 * t_rise / n_overhead:.2f}", ""),
      ("forward ms / image", f"{1e3 * t_forward / n_overhead:.2f}", ""),
      ("peak RSS MiB (small N, large N)",
       f"{mem[0]['peak_rss_mb']:.0f}, {mem[1]['peak_rss_mb']:.0f}", ""),
      ("generate_masks us / mask", f"{1e6 * t_gen / n_masks_gen:.1f}", ""),
      ("skimage reference us / mask", f"{1e6 * t_ref / n_masks_gen:.1f}", ""),
  ])
  path = common.write_json("rise", result, args.out)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
