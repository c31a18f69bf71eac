"""The evaluation runner against the metric functions it calls, and its serialisation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax import baselines, evaluation as ev
from rise_jax.metrics import causal, class_specific, segmentation

H = W = 16


def _dataset():
  rng = np.random.default_rng(0)
  seg = np.zeros((4, H, W, 2), bool)
  seg[0, 2:6, 2:6, 0] = True
  seg[1, 8:14, 8:14, 1] = True
  seg[2, 2:6, 2:6, 0] = True
  seg[2, 10:14, 10:14, 1] = True
  seg[3, 0:3, 12:16, 1] = True
  labels = seg.any((1, 2)).astype(np.float32)
  images = rng.normal(size=(4, H, W, 3)).astype(np.float32) * 0.1 + seg.any(-1)[..., None]
  return [{"image": images[:2], "label": labels[:2], "segmentation": seg[:2]},
          {"image": images[2:], "label": labels[2:], "segmentation": seg[2:]}]


def _model_fn(x):
  a = x[:, :8, :8].mean((1, 2, 3))
  b = x[:, 8:, 8:].mean((1, 2, 3))
  return jax.nn.softmax(jnp.stack([a, b], 1) * 4, axis=1)


def _method(images):
  return baselines.occlusion(_model_fn, images, window=4, stride=4)


def test_evaluate_matches_direct_metric_calls(tmp_path):
  data = _dataset()
  res = ev.evaluate(_method, _model_fn, data, step=16, name="occlusion", progress=False)
  assert [(r["image"], r["class"]) for r in res.rows] == [(0, 0), (1, 1), (2, 0), (2, 1), (3, 1)]
  images = np.concatenate([d["image"] for d in data])
  seg = np.concatenate([d["segmentation"] for d in data])
  maps = np.asarray(_method(images))
  for r in res.rows:
    i, c = r["image"], r["class"]
    d = causal.deletion(_model_fn, images[i], maps[i, c], c, step=16)[0]
    n = causal.insertion(_model_fn, images[i], maps[i, c], c, step=16)[0]
    s = segmentation.segmentation_scores(maps[i, c], seg[i, ..., c])
    assert r["deletion"] == pytest.approx(float(d), abs=1e-6)
    assert r["insertion"] == pytest.approx(float(n), abs=1e-6)
    assert r["iou"] == pytest.approx(s["iou"]) and r["f1"] == pytest.approx(s["f1"])
  summary = res.summary()
  assert summary["pairs"] == 5
  assert summary["deletion"] == pytest.approx(np.mean([r["deletion"] for r in res.rows]))
  assert 0 <= summary["pointing_all"] <= 1
  data_json = json.loads(res.to_json(str(tmp_path / "r.json")))
  assert data_json["summary"]["pairs"] == 5
  assert res.to_csv().splitlines()[0].startswith("image,class,deletion,insertion")
  md = ev.summary_markdown([res, res])
  assert md.count("| occlusion |") == 2


def test_evaluate_bad_input():
  with pytest.raises(ValueError, match="metrics"):
    ev.evaluate(_method, _model_fn, _dataset(), metrics=["auc"])
  with pytest.raises(ValueError, match=r"maps \[B, C, H, W\]"):
    ev.evaluate(lambda x: np.zeros((2, 2, 4, 4)), _model_fn, _dataset(), progress=False)
  with pytest.raises(ValueError, match="NaN"):
    ev.evaluate(lambda x: np.full((2, 2, H, W), np.nan), _model_fn, _dataset(), progress=False)


def test_rise_through_evaluate_beats_random_on_pointing():
  # Tolerance 1 px (the protocol's 15 px at 224 scaled to 16 px, rounded): at 15 px every map,
  # even an all-zero one, would hit every object of these 16x16 images.
  def pointing(method):
    res = ev.evaluate(method, _model_fn, _dataset(), metrics=["pointing"], tolerance=1,
                      progress=False)
    return res.summary()["pointing_all"]

  # Grid 8 (2-px cells): with 4-px cells, as large as the objects, 200 masks leave the maps'
  # maxima off the objects (0.17 at 1 px).
  rise_score = pointing(
      lambda x: rise_jax.rise(_model_fn, x, 0, num_masks=200, grid_size=8))
  zeros = pointing(lambda x: np.zeros((len(x), 2, H, W), np.float32))
  rng = np.random.default_rng(0)
  random = [pointing(lambda x: rng.random((len(x), 2, H, W)).astype(np.float32))
            for _ in range(5)]
  assert zeros == 0.0  # argmax at (0, 0): no object within 1 px
  assert max(random) <= 0.5
  # RISE finds both objects the model looks at (classes 0 and 1 in their quadrants); it misses
  # image 3's class-1 object, which lies outside the quadrant class 1 is scored on.
  assert rise_score >= 0.8
  assert rise_score - np.mean(random) >= 0.4


def test_class_specific_table_hand_computed():
  images = np.ones((1, 4, 4, 3), np.float32)
  masks = np.zeros((1, 2, 4, 4), np.float32)
  masks[0, 0, :2] = 0.95  # class 0's mask: top half, survives every threshold
  masks[0, 1, 2:] = 0.45  # class 1's mask: bottom half for thresholds < 0.45
  labels = np.array([[1, 1]])

  def probs_fn(x):  # probability of class 0 = visible share of the top half, etc.
    top = x[:, :2].mean((1, 2, 3))
    bottom = x[:, 2:].mean((1, 2, 3))
    z = top + bottom + 1e-9
    return jnp.stack([top / z, bottom / z], 1) * (z > 0.01)[:, None]

  out = class_specific.class_specific_table(probs_fn, images, masks, labels)
  t = out["table"]
  np.testing.assert_allclose(t[0, 0], 1.0)  # only top visible
  np.testing.assert_allclose(t[1, 0], 0.0)
  # Class 1's mask: 4 of 9 thresholds keep the bottom (p1 = 1), the rest blank (p = 0).
  np.testing.assert_allclose(t[1, 1], 4 / 9)
  np.testing.assert_allclose(t[:, 2], [0.5, 0.5])  # "none": unmasked
  assert out["counts"][0, 0] == 9 and out["counts"][0, 2] == 1
  with pytest.raises(ValueError, match="thresholds"):
    class_specific.class_specific_table(probs_fn, images, masks, labels, thresholds=[0.0])
