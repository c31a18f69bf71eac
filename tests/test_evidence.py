"""Table statistics of the experiments (experiments/tasks/evidence.py) and the per-image
class-specific gap they rest on."""

import numpy as np
import pytest

from experiments.tasks import evidence
from rise_jax.metrics import class_specific_table, statistics


def test_ci_and_compare_match_the_library_bootstrap():
  rng = np.random.default_rng(1)
  v, image = rng.random(30), np.repeat(np.arange(10), 3)
  c = evidence.ci(v, image)
  want = statistics.bootstrap_ci(v, groups=image, num_resamples=1000, seed=0)
  assert (c["mean"], c["low"], c["high"], c["n"], c["groups"]) == (
      want.mean, want.low, want.high, 30, 10)
  d = evidence.compare("a above b", v + 0.5, v, direction="greater", names=("a", "b"),
                       metric="m", groups=image)
  assert d["verdict"] == "holds" and d["difference"] == pytest.approx(0.5)
  assert d["num_pairs"] == 30 and d["num_images"] == 10
  assert evidence.fmt(c, 2) == f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}]"
  assert evidence.fmt(evidence.ci([])) == "n/a"


def test_pointing_ci_is_the_mean_of_class_means():
  hits = np.array([1, 1, 1, 0, 0, 1], float)
  cls = np.array([0, 0, 0, 1, 1, 1])
  c = evidence.ci(hits, np.arange(6), cls)
  assert c["mean"] == pytest.approx((1.0 + 1 / 3) / 2)


def test_class_specific_per_image_gap_by_hand():
  def probs_fn(x):  # class c's probability: the mean of channel c over the image
    m = np.asarray(x).mean(axis=(1, 2))
    return m / m.sum(axis=1, keepdims=True)

  images = np.ones((2, 4, 4, 3), np.float32)
  masks = np.zeros((2, 3, 4, 4), np.float32)
  masks[:, :, :2] = 1.0  # every class mask keeps the top half: all masked images alike
  labels = np.array([[1, 1, 0], [1, 0, 0]])
  out = class_specific_table(probs_fn, images, masks, labels, thresholds=(0.5,))
  per = out["per_image"]
  np.testing.assert_allclose(per["diagonal"], [1 / 3, 1 / 3])
  np.testing.assert_allclose(per["off_diagonal"][0], 1 / 3)
  assert np.isnan(per["off_diagonal"][1])  # one class: no off-diagonal entry
