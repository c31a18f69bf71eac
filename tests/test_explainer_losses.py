"""NN-Explainer losses (Stalder et al., eq. 1-8): hand-computed values, brute force, grads, jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.explainer import (
  COCO_RESNET50,
  COCO_VGG16,
  PRESETS,
  VOC_RESNET50,
  VOC_VGG16,
  Coefficients,
  aggregate_masks,
  area_loss,
  bounds_loss,
  bounds_per_class,
  check_inputs,
  classification_loss,
  entropy_loss,
  explainer_loss,
  preset,
  tv,
  tv_loss,
)

S0 = [[0.1, 0.9], [0.4, 0.2]]
S1 = [[0.5, 0.3], [0.8, 0.0]]
S2 = [[0.6, 0.2], [0.1, 0.7]]
MASKS = np.array([[S0, S1, S2], [S0, S1, S2]], np.float32)  # [2, 3, 2, 2]
LABELS = np.array([[1, 0, 1], [0, 0, 0]], np.float32)


def _random(seed=0, b=3, c=4, h=5, w=6):
  rng = np.random.default_rng(seed)
  masks = rng.uniform(0.0, 1.0, (b, c, h, w)).astype(np.float32)
  labels = (rng.uniform(size=(b, c)) < 0.5).astype(np.float32)
  labels[0, 0] = 1.0
  labels[-1] = 0.0  # an image without any present class
  logits_m = rng.normal(size=(b, c)).astype(np.float32)
  logits_i = rng.normal(size=(b, c)).astype(np.float32)
  return masks, labels, logits_m, logits_i


# ----------------------------------------------------------------------------------------------
# Hand-computed values.


def test_aggregate_masks_hand():
  m, n = aggregate_masks(MASKS, LABELS)
  np.testing.assert_allclose(m[0], [[0.6, 0.9], [0.4, 0.7]], atol=1e-7)
  np.testing.assert_allclose(n[0], S1, atol=1e-7)
  np.testing.assert_allclose(m[1], np.zeros((2, 2)), atol=0)  # no present class -> m = 0
  np.testing.assert_allclose(n[1], [[0.6, 0.9], [0.8, 0.7]], atol=1e-7)
  m, n = aggregate_masks(MASKS[:1], np.ones((1, 3), bool))  # no absent class -> n = 0
  np.testing.assert_allclose(n, np.zeros((1, 2, 2)), atol=0)
  np.testing.assert_allclose(m[0], [[0.6, 0.9], [0.8, 0.7]], atol=1e-7)


def test_classification_loss_hand():
  logits = np.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]], np.float32)
  labels = np.array([[1, 0], [1, 1]], np.float32)
  # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4: -ln(1/2), -ln(1/4) | -ln(3/4), -ln(1/2).
  expected = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(2)) / 4
  np.testing.assert_allclose(classification_loss(logits, labels), expected, rtol=1e-6)
  np.testing.assert_allclose(classification_loss(logits, labels.astype(bool)), expected,
                             rtol=1e-6)


def test_entropy_loss_hand():
  logits = np.array([[0.0, math.log(3.0)], [5.0, 5.0]], np.float32)
  first = (0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / 2
  uniform = -math.log(2) / 2  # the minimum, -log(C) / C
  np.testing.assert_allclose(entropy_loss(logits), (first + uniform) / 2, rtol=1e-6)
  assert float(entropy_loss(np.array([[0.0, 100.0]], np.float32))) == pytest.approx(0, abs=1e-6)


def test_bounds_hand_3x3():
  vals = np.array([0.3, 0.9, 0.1, 0.6, 0.5, 0.8, 0.2, 0.7, 0.4], np.float32).reshape(1, 1, 3, 3)
  # Z = 9, a = 0.25 -> 2 ones in q_min, b = 0.5 -> 4 ones in q_max; sorted 0.9, 0.8, ..., 0.1.
  # below: (1 - 0.9) + (1 - 0.8) = 0.3; above: 0.5 + 0.4 + 0.3 + 0.2 + 0.1 = 1.5.
  np.testing.assert_allclose(bounds_per_class(vals, a=0.25, b=0.5), [[1.8 / 9]], rtol=1e-6)
  # Defaults a = 0.05, b = 0.3: floor(0.45) = 0 ones, floor(2.7) = 2 ones -> (0.7 + ... + 0.1) / 9.
  np.testing.assert_allclose(bounds_per_class(vals), [[2.8 / 9]], rtol=1e-6)
  # A binary mask covering between a and b is free.
  free = np.zeros((1, 1, 3, 3), np.float32)
  free[0, 0, 0, :3] = 1.0
  np.testing.assert_allclose(bounds_per_class(free, a=0.2, b=0.4), [[0.0]], atol=0)


def test_bounds_loss_skips_images_without_present_class():
  per = np.asarray(bounds_per_class(MASKS, a=0.25, b=0.5))
  # Z = 4: q_min = [1, 0, 0, 0], q_max = [1, 1, 0, 0]. S0 sorted 0.9, 0.4, 0.2, 0.1 -> 0.4 / 4.
  np.testing.assert_allclose(per[0, 0], (0.1 + 0.2 + 0.1) / 4, rtol=1e-6)
  expected = (per[0, 0] + per[0, 2]) / 2  # image 1 has no present class: skipped
  np.testing.assert_allclose(bounds_loss(MASKS, LABELS, a=0.25, b=0.5), expected, rtol=1e-6)
  assert float(bounds_loss(MASKS, np.zeros((2, 3)), a=0.25, b=0.5)) == 0.0


def test_area_loss_hand():
  m, n = aggregate_masks(MASKS, LABELS)
  a_m = (0.6 + 0.9 + 0.4 + 0.7) / 4 / 2  # image 1: m = 0
  a_n = ((0.5 + 0.3 + 0.8 + 0.0) / 4 + (0.6 + 0.9 + 0.8 + 0.7) / 4) / 2
  # S0 (above: 0.4 + ... ) and S2 sorted 0.7, 0.6, 0.2, 0.1 -> (0.3 + 0.2 + 0.1) / 4.
  bbar = ((0.1 + 0.2 + 0.1) / 4 + (0.3 + 0.2 + 0.1) / 4) / 2
  got = area_loss(MASKS, LABELS, m, n, a=0.25, b=0.5)
  np.testing.assert_allclose(got, a_m + a_n + bbar, rtol=1e-6)


def test_tv_hand():
  x2 = np.array([[[0.0, 1.0], [1.0, 1.0]]], np.float32)
  np.testing.assert_allclose(tv(x2), [(1 + 1) / 4], rtol=1e-6)  # sums over pairs / Z
  x3 = np.array([[[0, 0, 1], [0, 1, 1], [1, 1, 1]]], np.float32)
  # 2 vertical and 2 horizontal pairs differ by 1; Z = 9.
  np.testing.assert_allclose(tv(x3), [4 / 9], rtol=1e-6)
  np.testing.assert_allclose(tv(np.array([[[0.0, 1.0, 0.5]]])), [1.5 / 3], rtol=1e-6)  # H = 1
  np.testing.assert_allclose(tv_loss(x2, 1.0 - x2), 1.0, rtol=1e-6)


def test_explainer_loss_combines_terms():
  logits_m = np.array([[0.0, math.log(3.0), 1.0], [2.0, -1.0, 0.0]], np.float32)
  logits_i = np.array([[0.5, 0.0, -0.5], [0.0, 0.0, 0.0]], np.float32)
  coeffs = Coefficients(le=2.0, ltv=0.5, l_bounds=0.7, l_area_m=0.1, l_area_n=0.3, a=0.25, b=0.5)
  loss, terms = explainer_loss(logits_m, logits_i, MASKS, LABELS, coeffs)
  m, n = aggregate_masks(MASKS, LABELS)
  lc = classification_loss(logits_m, LABELS)
  le = entropy_loss(logits_i)
  bnd = bounds_loss(MASKS, LABELS, a=0.25, b=0.5)
  ltv = tv_loss(m, n)
  expected = lc + 2.0 * le + 0.1 * np.mean(m) + 0.3 * np.mean(n) + 0.7 * bnd + 0.5 * ltv
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(terms["area"], area_loss(MASKS, LABELS, m, n, a=0.25, b=0.5),
                             rtol=1e-6)
  np.testing.assert_allclose(terms["tv"], ltv, rtol=1e-6)


def test_presets_match_the_authors_table():
  table = {  # (lr, le, ltv, l_bounds, l_area_m, l_area_n), SPEC §6
      "voc-vgg16": (1e-5, 1, 1, 1, 0.1, 0.3),
      "voc-resnet50": (1e-4, 3, 1, 0.8, 0.01, 0.3),
      "coco-vgg16": (1e-5, 1, 0.3, 0.3, 0.03, 0.1),
      "coco-resnet50": (1e-5, 3, 0.05, 0.1, 0.01, 0.03),
  }
  assert set(PRESETS) == set(table)
  for name, row in table.items():
    c = preset(name)
    assert (c.lr, c.le, c.ltv, c.l_bounds, c.l_area_m, c.l_area_n) == row
    assert (c.a, c.b) == (0.05, 0.3)
  assert (VOC_VGG16, VOC_RESNET50, COCO_VGG16, COCO_RESNET50) == tuple(
      PRESETS[k] for k in ("voc-vgg16", "voc-resnet50", "coco-vgg16", "coco-resnet50"))
  assert preset("VOC_ResNet50") is VOC_RESNET50


# ----------------------------------------------------------------------------------------------
# Brute force, gradients, jit.


def _bounds_numpy(masks, labels, a, b):
  bsz, c = masks.shape[:2]
  z = masks.shape[2] * masks.shape[3]
  k_a, k_b = int(np.floor(z * a + 1e-9)), int(np.floor(z * b + 1e-9))
  q_min = np.array([1.0] * k_a + [0.0] * (z - k_a))
  q_max = np.array([1.0] * k_b + [0.0] * (z - k_b))
  per_image = []
  for i in range(bsz):
    vals = []
    for k in range(c):
      if labels[i, k]:
        q = np.sort(masks[i, k].astype(np.float64).ravel())[::-1]
        vals.append((np.maximum(q_min - q, 0).sum() + np.maximum(q - q_max, 0).sum()) / z)
    if vals:
      per_image.append(np.mean(vals))
  return float(np.mean(per_image)) if per_image else 0.0


@pytest.mark.parametrize("seed,a,b", [(0, 0.05, 0.3), (1, 0.1, 0.9), (2, 0.29, 0.31)])
def test_bounds_matches_numpy_brute_force(seed, a, b):
  masks, labels, _, _ = _random(seed, b=4, c=3, h=10, w=10)
  got = bounds_loss(masks, labels, a=a, b=b)
  np.testing.assert_allclose(got, _bounds_numpy(masks, labels, a, b), rtol=1e-5)


def test_gradients_finite_and_nonzero():
  masks, labels, logits_m, logits_i = _random(3)
  agg = lambda s: aggregate_masks(s, labels)
  terms = {  # (function, name of the argument it is differentiated in)
      "classification": (lambda z: classification_loss(z, labels), "logits_m"),
      "entropy": (entropy_loss, "logits_i"),
      "area_m": (lambda s: jnp.mean(agg(s)[0]), "masks"),
      "area_n": (lambda s: jnp.mean(agg(s)[1]), "masks"),
      "bounds": (lambda s: bounds_loss(s, labels), "masks"),
      "area": (lambda s: area_loss(s, labels, *agg(s)), "masks"),
      "tv": (lambda s: tv_loss(*agg(s)), "masks"),
  }

  @jax.jit
  def all_grads(lm, li, s):
    args = {"logits_m": lm, "logits_i": li, "masks": s}
    out = {k: jax.grad(fn)(args[arg]) for k, (fn, arg) in terms.items()}
    total = lambda *x: explainer_loss(*x, labels, VOC_VGG16)[0]
    for i, g in enumerate(jax.grad(total, argnums=(0, 1, 2))(lm, li, s)):
      out[f"total_{i}"] = g
    return out

  for name, g in all_grads(logits_m, logits_i, masks).items():
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), name
    assert np.abs(g).max() > 0, name


def test_jit_matches_eager():
  masks, labels, logits_m, logits_i = _random(4)
  check_inputs(masks, labels, logits_m, logits_i)
  eager, eager_terms = explainer_loss(logits_m, logits_i, masks, labels, VOC_RESNET50)
  jitted = jax.jit(explainer_loss, static_argnames="coeffs")
  loss, terms = jitted(logits_m, logits_i, masks, labels, coeffs=VOC_RESNET50)
  np.testing.assert_allclose(loss, eager, rtol=1e-5)
  for k, v in eager_terms.items():
    np.testing.assert_allclose(terms[k], v, rtol=1e-5, atol=1e-7)
  area_jit = jax.jit(lambda s, y: area_loss(s, y, *aggregate_masks(s, y), a=0.1, b=0.5))
  m, n = aggregate_masks(masks, labels)
  np.testing.assert_allclose(area_jit(masks, labels),
                             area_loss(masks, labels, m, n, a=0.1, b=0.5), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("kwargs,match", [
    ({"le": -1.0}, "le must be"),
    ({"ltv": -0.1}, "ltv must be"),
    ({"l_bounds": -1}, "l_bounds must be"),
    ({"l_area_m": float("nan")}, "l_area_m must be"),
    ({"l_area_n": -0.3}, "l_area_n must be"),
    ({"lr": 0.0}, "lr must be"),
    ({"a": 0.4, "b": 0.3}, "a must be smaller than"),
    ({"a": 0.3, "b": 0.3}, "a must be smaller than"),
    ({"a": 0.0}, "a \\(area bound\\)"),
    ({"b": 1.0}, "b \\(area bound\\)"),
    ({"a": -0.1}, "a \\(area bound\\)"),
])
def test_bad_coefficients(kwargs, match):
  with pytest.raises(ValueError, match=match):
    Coefficients(**kwargs)


def test_bad_area_bounds_in_functions():
  m, n = aggregate_masks(MASKS, LABELS)
  with pytest.raises(ValueError, match="a must be smaller than"):
    area_loss(MASKS, LABELS, m, n, a=0.5, b=0.2)
  with pytest.raises(ValueError, match="b \\(area bound\\)"):
    bounds_loss(MASKS, LABELS, a=0.1, b=1.5)
  with pytest.raises(ValueError, match="name must be one of"):
    preset("imagenet")


def test_wrong_label_length():
  bad = np.ones((2, 4), np.float32)
  logits = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="labels must have shape"):
    aggregate_masks(MASKS, bad)
  with pytest.raises(ValueError, match="labels must have shape"):
    classification_loss(logits, bad)
  with pytest.raises(ValueError, match="labels must have shape"):
    bounds_loss(MASKS, bad)
  with pytest.raises(ValueError, match="labels must have shape"):
    explainer_loss(logits, logits, MASKS, bad)
  with pytest.raises(ValueError, match="labels must have shape"):
    check_inputs(MASKS, bad)
  with pytest.raises(ValueError, match="labels must have shape"):
    check_inputs(labels=bad, logits_masked=logits)
  with pytest.raises(ValueError, match="labels must be multi-hot"):
    check_inputs(labels=np.ones(3))


def test_bad_shapes_and_values():
  m, n = aggregate_masks(MASKS, LABELS)
  with pytest.raises(ValueError, match="masks must have shape"):
    aggregate_masks(MASKS[0], LABELS)
  with pytest.raises(ValueError, match="m must have shape"):
    area_loss(MASKS, LABELS, m[:, :1], n)
  with pytest.raises(ValueError, match="m and n must have the same shape"):
    tv_loss(m, n[:1])
  with pytest.raises(ValueError, match="logits_inverse must have shape"):
    entropy_loss(np.zeros(3))
  with pytest.raises(ValueError, match="masks must be finite with values in \\[0, 1\\]"):
    check_inputs(MASKS * 2.0, LABELS)
  with pytest.raises(ValueError, match="masks must be finite with values in \\[0, 1\\]"):
    check_inputs(MASKS - 0.5)
  with pytest.raises(ValueError, match="labels must be multi-hot"):
    check_inputs(MASKS, LABELS * 0.5)
  with pytest.raises(ValueError, match="logits_masked must be finite"):
    check_inputs(labels=LABELS, logits_masked=np.full((2, 3), np.inf))
  with pytest.raises(ValueError, match="same shape"):
    check_inputs(logits_masked=np.zeros((2, 3)), logits_inverse=np.zeros((2, 4)))
  with pytest.raises(ValueError, match="coeffs must be a Coefficients"):
    explainer_loss(np.zeros((2, 3)), np.zeros((2, 3)), MASKS, LABELS, {"le": 1.0})
  check_inputs(MASKS, LABELS.astype(bool), np.zeros((2, 3)), np.zeros((2, 3)))  # valid: no raise
