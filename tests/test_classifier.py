"""Tests for rise_jax.train.classifier."""

import jax
import numpy as np
import pytest

from rise_jax.data import synthetic
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import classifier


@pytest.fixture(scope="module")
def data():
  return synthetic.make("train", 200, seed=0, image_size=32)


def test_training_halves_the_loss(data):
  module = TinyCNN(num_classes=6)
  x, y = data["image"], data["label"]
  init = classifier.train_classifier(module, x, y, steps=0, progress=False)
  # 200 images are too few to generalise; this checks the optimiser fits the training set.
  params = classifier.train_classifier(module, x, y, steps=500, batch_size=32, progress=False)
  loss0 = classifier.evaluate_loss(module, init, x, y)
  loss1 = classifier.evaluate_loss(module, params, x, y)
  assert 0.5 < loss0 < 0.9  # ~log(2) at initialisation
  assert loss1 <= 0.5 * loss0, (loss0, loss1)

  # The black box agrees with the module; outputs are valid probabilities.
  logits = module.apply(params, x[:8])[0]
  np.testing.assert_allclose(
    classifier.black_box(module, params, "logits")(x[:8]), logits, rtol=1e-5, atol=1e-5
  )
  sig = classifier.black_box(module, params)(x[:8])
  np.testing.assert_allclose(sig, jax.nn.sigmoid(logits), rtol=1e-5, atol=1e-6)
  soft = classifier.black_box(module, params, "softmax")(x[:8])
  np.testing.assert_allclose(soft.sum(axis=-1), 1.0, rtol=1e-5)
  # Trained well enough to separate present from absent classes on the training set.
  probs = np.asarray(classifier.black_box(module, params)(x))
  assert ((probs > 0.5) == (y == 1)).mean() > 0.85


def test_deterministic(data):
  module = TinyCNN(num_classes=6, features=(4, 8))
  x, y = data["image"][:40], data["label"][:40]
  a = classifier.train_classifier(module, x, y, steps=3, batch_size=8, seed=1, progress=False)
  b = classifier.train_classifier(module, x, y, steps=3, batch_size=8, seed=1, progress=False)
  c = classifier.train_classifier(module, x, y, steps=3, batch_size=8, seed=2, progress=False)
  leaves = jax.tree_util.tree_leaves
  for u, v in zip(leaves(a), leaves(b)):
    np.testing.assert_array_equal(u, v)
  assert any(not np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))


def test_black_box_unknown_output():
  with pytest.raises(ValueError, match="output must be one of"):
    classifier.black_box(TinyCNN(num_classes=2), {}, "probits")


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(steps=-1), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=11), "batch_size"),
    (dict(learning_rate=0.0), "learning_rate"),
  ],
)
def test_train_errors(kwargs, match):
  x = np.zeros((10, 16, 16, 3), np.float32)
  y = np.zeros((10, 2), np.float32)
  args = dict(batch_size=4, progress=False)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    classifier.train_classifier(TinyCNN(num_classes=2), x, y, **args)


def test_label_shape_error():
  with pytest.raises(ValueError, match="labels must have shape"):
    classifier.train_classifier(
      TinyCNN(num_classes=2), np.zeros((4, 16, 16, 3)), np.zeros((3, 2)), progress=False
    )
