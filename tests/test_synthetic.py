"""Tests for rise_jax.data.synthetic."""

import numpy as np
import pytest

from rise_jax.data import synthetic


@pytest.fixture(scope="module")
def data():
  return synthetic.make("train", 40, seed=3, image_size=48)


def test_shapes_and_dtypes(data):
  n, s, c = 40, 48, 6
  assert data["image"].shape == (n, s, s, 3) and data["image"].dtype == np.float32
  assert data["label"].shape == (n, c) and data["label"].dtype == np.float32
  assert data["segmentation"].shape == (n, s, s, c) and data["segmentation"].dtype == bool
  assert data["boxes"].shape == (n, c, 4) and data["boxes"].dtype == np.float32


def test_deterministic_and_prefix_stable(data):
  again = synthetic.make("train", 40, seed=3, image_size=48)
  prefix = synthetic.make("train", 7, seed=3, image_size=48)
  for key in data:
    np.testing.assert_array_equal(data[key], again[key])
    np.testing.assert_array_equal(data[key][:7], prefix[key])


def test_splits_and_seeds_differ():
  train = synthetic.make("train", 4, image_size=32)["image"]
  val = synthetic.make("val", 4, image_size=32)["image"]
  test = synthetic.make("test", 4, image_size=32)["image"]
  other_seed = synthetic.make("train", 4, seed=1, image_size=32)["image"]
  for other in (val, test, other_seed):
    assert not np.allclose(train, other)
  assert not np.allclose(val, test)


def test_labels_match_segmentation(data):
  present = data["segmentation"].any(axis=(1, 2))
  np.testing.assert_array_equal(data["label"] == 1.0, present)
  assert set(np.unique(data["label"])) <= {0.0, 1.0}
  counts = data["label"].sum(axis=1)
  assert counts.min() >= 1 and counts.max() <= 3
  # Visible segments do not overlap (later objects occlude earlier ones).
  assert data["segmentation"].sum(axis=-1).max() <= 1


def test_boxes_enclose_masks_tightly(data):
  seg, boxes, labels = data["segmentation"], data["boxes"], data["label"]
  n, s, _, c = seg.shape
  for i in range(n):
    for k in range(c):
      if labels[i, k] == 0:
        np.testing.assert_array_equal(boxes[i, k], 0.0)
        continue
      y0, x0, y1, x1 = boxes[i, k].astype(int)
      assert 0 <= y0 < y1 <= s and 0 <= x0 < x1 <= s
      mask = seg[i, :, :, k]
      assert mask[y0:y1, x0:x1].sum() == mask.sum()  # encloses
      # Tight: every side of the box touches the mask.
      assert mask[y0].any() and mask[y1 - 1].any()
      assert mask[:, x0].any() and mask[:, x1 - 1].any()


def test_roughly_normalised():
  images = synthetic.make("train", 100, image_size=32)["image"]
  assert abs(images.mean()) < 0.1
  assert 0.8 < images.std() < 1.2
  raw = synthetic.denormalize(images)
  assert raw.min() >= -1e-6 and raw.max() <= 1.0 + 1e-6


def test_classes_balanced_and_objects_visible():
  data = synthetic.make("val", 300, image_size=32)
  freq = data["label"].mean(axis=0)
  assert freq.min() > 0.2 and freq.max() < 0.5  # ~2 of 6 classes per image
  area = data["segmentation"].sum(axis=(1, 2))[data["label"] == 1]
  assert area.min() >= 4  # every present object has a visible footprint


def test_fewer_classes():
  data = synthetic.make("test", 20, image_size=32, num_classes=2)
  assert data["label"].shape == (20, 2)
  assert data["segmentation"].shape[-1] == 2
  assert data["label"].sum(axis=1).max() <= 2


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(split="validation"), "split must be one of"),
    (dict(num_examples=-1), "num_examples"),
    (dict(image_size=8), "image_size"),
    (dict(num_classes=7), "num_classes"),
    (dict(num_classes=0), "num_classes"),
  ],
)
def test_errors(kwargs, match):
  args = dict(split="train", num_examples=2)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    synthetic.make(**args)


def test_spurious_cue_correlates_in_train_not_in_test():
  tr = synthetic.make("train", 300, image_size=32, spurious=True)
  te = synthetic.make("test", 300, image_size=32, spurious=True)
  has0 = tr["label"][:, 0] > 0
  assert tr["cue"][has0].mean() > 0.8 and tr["cue"][~has0].mean() < 0.2
  has0_te = te["label"][:, 0] > 0
  assert abs(te["cue"][has0_te].mean() - te["cue"][~has0_te].mean()) < 0.2
  patch = synthetic.cue_mask(32)
  assert not tr["segmentation"][tr["cue"]][:, patch].any()  # the cue hides objects under it
  plain = synthetic.make("train", 5, image_size=32)
  assert not plain["cue"].any()


def test_difficult_marks_heavily_occluded_objects():
  d = synthetic.make("train", 200, image_size=32)
  assert d["difficult"].shape == d["label"].shape
  assert not d["difficult"][d["label"] == 0].any()
  assert d["difficult"].any()  # some occlusion happens at this density
