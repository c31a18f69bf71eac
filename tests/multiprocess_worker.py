"""One process of the multi-process test (tests/test_multiprocess.py); also runs alone.

python -m tests.multiprocess_worker OUT.npz [--coordinator HOST:PORT --num-processes P
    --process-id I]

Computes RISE maps, deletion/insertion and pointing for 6 synthetic images
(:func:`rise_jax.distributed.explain_dataset`) and trains a small Explainer
(:class:`SmallExplainer`) for 2 epochs with a mesh over every process's devices; process 0
writes everything to OUT.npz.
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import rise_jax
from rise_jax import distributed
from rise_jax.data import synthetic
from rise_jax.explainer import train as et
from rise_jax.explainer.losses import Coefficients
from rise_jax.models.tiny import TinyCNN

CLASSIFIER = TinyCNN(num_classes=6, features=(4, 8))


class SmallExplainer(nn.Module):
  """An Explainer with DeepLabV3's interface and its train-mode parts (BatchNorm batch
  statistics, dropout) but a few layers: the data-parallel tests exercise the gradient and BN
  all-reduces without compiling a DeepLabV3 training step in every process (tens of seconds
  each on a small CPU)."""

  num_classes: int = 6

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Conv(8, (3, 3), use_bias=False)(x)  # a bias before BN has a zero gradient up to
    # rounding noise, which Adam's first steps (~ lr * sign(g)) would blow up into run-to-run
    # differences
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
    h = nn.Dropout(0.1, deterministic=not train)(h)
    return nn.Conv(self.num_classes, (3, 3))(h), {}


EXPLAINER = SmallExplainer()


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--coordinator", default=None)
  parser.add_argument("--num-processes", type=int, default=None)
  parser.add_argument("--process-id", type=int, default=None)
  args = parser.parse_args(argv)
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)

  test = synthetic.make("test", 6, image_size=32)
  variables = CLASSIFIER.init(jax.random.key(1), jnp.asarray(test["image"][:1]))

  def probs(x):
    return jax.nn.softmax(CLASSIFIER.apply(variables, x)[0], axis=-1)

  ids = np.argmax(test["label"], axis=1)
  gt = test["segmentation"][np.arange(6), :, :, ids]
  res = distributed.explain_dataset(
      probs, test["image"], ids, 0, gt=gt, step=64, batch_size=16,
      rise_kwargs=dict(num_masks=120, grid_size=4, batch_size=32))

  tr = synthetic.make("train", 16, image_size=32)
  va = synthetic.make("val", 6, image_size=32)
  mesh = rise_jax.batch_mesh(jax.devices())  # every process's devices
  run = et.train_explainer(CLASSIFIER.apply, variables, tr, va, coeffs=Coefficients(lr=1e-2),
                           epochs=2, batch_size=8, module=EXPLAINER, progress=False, mesh=mesh)
  masks = et.explain(EXPLAINER, run["last_variables"], va["image"][:4], mesh=mesh)
  if jax.process_index() == 0:
    np.savez(args.out, **res, processes=jax.process_count(),
             train_loss=[h["train_loss"] for h in run["history"]],
             val_loss=[h["val_loss"] for h in run["history"]], masks=np.asarray(masks))


if __name__ == "__main__":
  main()
