"""Evaluation protocols against NumPy transcriptions of the reference code's formulas.

* Insertion canvas and loop: the RISE authors' ``evaluation.py`` (``gkern``, ``CausalMetric``).
* Pointing game: TorchRay's ``PointingGame`` (acceptance disc, per-class accuracy, mean).
* Segmentation F1/IoU: IASSA §4.1 and SPEC §3 (min-max, ``> 0.3``, pixel-level division).
* NN-Explainer Acc/IoU/Sal/MAE: Stalder et al. eq. 9.

Each reference below is written from the reference code or the paper, not from this library.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rise_jax import substrates
from rise_jax.metrics import causal, explainer, pointing, segmentation

_rng = np.random.default_rng(18)


# --- RISE insertion (eclique/RISE evaluation.py) -------------------------------------------


def np_gkern(klen, nsig):
  """The authors' ``gkern``: ``gaussian_filter`` of a ``klen x klen`` impulse (scipy defaults)."""
  inp = np.zeros((klen, klen))
  inp[klen // 2, klen // 2] = 1
  return gaussian_filter(inp, nsig)


def np_blur(image, kern):
  """``conv2d(x, kern, padding=klen // 2)`` with a diagonal channel kernel, on [H, W, C]."""
  klen = kern.shape[0]
  pad = klen // 2
  h, w, _ = image.shape
  xp = np.pad(np.asarray(image, np.float64), ((pad, pad), (pad, pad), (0, 0)))
  out = np.zeros(image.shape)
  for a in range(klen):
    for b in range(klen):
      out += kern[a, b] * xp[a:a + h, b:b + w]
  return out


def np_causal(model_fn, image, sal, cls, step, mode, canvas):
  """``CausalMetric.single_run``: one forward per step, ``n = ceil(HW / step)`` steps, pixels in
  the order ``np.flip(np.argsort(sal))`` (NumPy's default sort is not stable: the stable one is
  the deterministic equivalent; see docs/DECISIONS.md)."""
  x = np.asarray(image, np.float64)
  start, finish = (x.copy(), canvas.copy()) if mode == "del" else (canvas.copy(), x.copy())
  hw = x.shape[0] * x.shape[1]
  order = np.flip(np.argsort(np.asarray(sal).reshape(-1), kind="stable"))
  n_steps = (hw + step - 1) // step
  scores = np.empty(n_steps + 1)
  for i in range(n_steps + 1):
    scores[i] = float(model_fn(jnp.asarray(start, jnp.float32)[None])[0, cls])
    if i < n_steps:
      coords = order[step * i:step * (i + 1)]
      start.reshape(hw, -1)[coords] = finish.reshape(hw, -1)[coords]
  return scores, (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def test_blur_is_the_authors_gkern():
  kern = np_gkern(11, 5)
  taps = substrates.authors_kernel(11, 5)
  np.testing.assert_allclose(np.outer(taps, taps), kern, atol=1e-12)
  np.testing.assert_allclose(kern.sum(), 1.0, atol=1e-12)  # reflect mode folds the tails back
  image = _rng.normal(size=(17, 13, 3)).astype(np.float32)
  np.testing.assert_allclose(substrates.build("blur", jnp.asarray(image)), np_blur(image, kern),
                             atol=1e-6)
  # The renormalised sampled Gaussian stays available, and is sharper than the authors' kernel.
  r = np.arange(11) - 5.0
  g = np.exp(-0.5 * (r / 5) ** 2)
  g /= g.sum()
  np.testing.assert_allclose(substrates.build("blur_normalized", jnp.asarray(image)),
                             np_blur(image, np.outer(g, g)), atol=1e-6)
  assert kern[5, 5] < 0.75 * np.outer(g, g)[5, 5]
  with pytest.raises(ValueError, match="blur_normalized"):
    substrates.check("gauss", (17, 13, 3))


H, W = 12, 10
_KW = jnp.asarray(_rng.normal(size=(H, W, 3, 4)), jnp.float32)


def box4(x):
  return jax.nn.softmax(jnp.einsum("bhwc,hwck->bk", x, _KW) / 10, axis=-1)


@pytest.mark.parametrize("step", [7, 120])
def test_insertion_equals_the_authors_loop(step):
  image = _rng.normal(size=(H, W, 3)).astype(np.float32)
  sal = _rng.normal(size=(H, W)).astype(np.float32)
  sal[3:6, 2:5] = 0.7  # a block of ties
  canvas = np_blur(image, np_gkern(11, 5))
  ref_curve, ref_auc = np_causal(box4, image, sal, 1, step, "ins", canvas)
  got_auc, got_curve = causal.insertion(box4, image, sal, 1, step=step, batch_size=8)
  np.testing.assert_allclose(got_curve, ref_curve, atol=1e-6)
  np.testing.assert_allclose(got_auc, ref_auc, atol=1e-6)
  ref_del, _ = np_causal(box4, image, sal, 1, step, "del", np.zeros_like(canvas))
  np.testing.assert_allclose(causal.deletion(box4, image, sal, 1, step=step)[1], ref_del,
                             atol=1e-6)


# --- Pointing game (facebookresearch/TorchRay torchray/benchmark/pointing_game.py) ----------


def torchray_hit(mask, point_uv, tolerance, inclusive):
  """``PointingGame.evaluate``: a disc around ``point = (u, v) = (x, y)`` meets the mask.
  TorchRay accepts ``d^2 < tolerance^2``; ``inclusive`` is our documented ``<=``."""
  v, u = np.meshgrid((np.arange(mask.shape[0], dtype=np.float32) - point_uv[1]) ** 2,
                     (np.arange(mask.shape[1], dtype=np.float32) - point_uv[0]) ** 2,
                     indexing="ij")
  d2 = v + u
  accept = d2 <= tolerance ** 2 if inclusive else d2 < tolerance ** 2
  return +1 if (mask & accept).any() else -1


def torchray_accuracy(pairs, num_classes, tolerance, inclusive):
  """``aggregate`` then ``class_accuracies = hits / clamp(hits + misses, 1)`` and their mean."""
  hits, misses = np.zeros(num_classes), np.zeros(num_classes)
  for sal, mask, c in pairs:
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    if torchray_hit(mask, (x, y), tolerance, inclusive) == 1:
      hits[c] += 1
    else:
      misses[c] += 1
  per = hits / np.maximum(hits + misses, 1)
  return per, per.mean()


def _pointing_pairs(num_pairs, num_classes, size=(24, 30)):
  pairs = []
  for i in range(num_pairs):
    sal = _rng.normal(size=size)
    mask = np.zeros(size, bool)
    y0, x0 = _rng.integers(0, size[0] - 4), _rng.integers(0, size[1] - 4)
    mask[y0:y0 + _rng.integers(1, 5), x0:x0 + _rng.integers(1, 5)] = True
    pairs.append((sal, mask, i % num_classes))
  return pairs


@pytest.mark.parametrize("tolerance", [0, 3, 7])
def test_pointing_game_equals_torchray_with_inclusive_tolerance(tolerance):
  pairs = _pointing_pairs(60, 4)
  game = pointing.PointingGame(4, tolerance=tolerance)
  for sal, mask, c in pairs:
    game.update(sal, mask, c)
  per, mean = torchray_accuracy(pairs, 4, tolerance, inclusive=True)
  res = game.results()
  np.testing.assert_allclose(res["all"]["per_class"], per, atol=1e-12)
  np.testing.assert_allclose(res["all"]["mean"], mean, atol=1e-12)


def test_pointing_tolerance_differs_from_torchray_only_at_exactly_the_tolerance():
  mask = np.zeros((40, 40), bool)
  mask[20, 35] = True
  sal = np.zeros((40, 40))
  sal[20, 20] = 1.0  # exactly 15 px from the only GT pixel
  assert pointing.pointing_game(sal, mask, tolerance=15) == 1
  assert torchray_hit(mask, (20, 20), 15, inclusive=False) == -1  # TorchRay: strict
  assert torchray_hit(mask, (20, 20), 15, inclusive=True) == 1
  pairs = _pointing_pairs(80, 3)
  strict = torchray_accuracy(pairs, 3, 5, inclusive=False)[0]
  loose = torchray_accuracy(pairs, 3, 5, inclusive=True)[0]
  for sal, mask, _ in pairs:  # the same hit unless the nearest GT pixel is exactly 5 px away
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    ys, xs = np.nonzero(mask)
    if np.min((ys - y) ** 2 + (xs - x) ** 2) != 25:
      assert torchray_hit(mask, (x, y), 5, False) == torchray_hit(mask, (x, y), 5, True)
  assert np.all(loose >= strict)


def test_pointing_class_mean_skips_unseen_classes_where_torchray_counts_zero():
  pairs = _pointing_pairs(20, 3)  # classes 0..2 seen, class 3 never
  game = pointing.PointingGame(4, tolerance=3)
  for sal, mask, c in pairs:
    game.update(sal, mask, c)
  per, torchray_mean = torchray_accuracy(pairs, 4, 3, inclusive=True)
  np.testing.assert_allclose(game.results()["all"]["mean"], per[:3].mean(), atol=1e-12)
  np.testing.assert_allclose(torchray_mean, per[:3].sum() / 4, atol=1e-12)


# --- IASSA segmentation scores (paper §4.1, SPEC §3) --------------------------------------


@pytest.mark.parametrize("threshold", [0.3, 0.55])
def test_segmentation_f1_iou_equal_the_paper_formula(threshold):
  for _ in range(5):
    sal = _rng.normal(size=(20, 16)) ** 2
    gt = _rng.random((20, 16)) < 0.3
    # IASSA's code: threshold t = T * (max - min) + min on the map, HAR = map > t.
    har = sal > threshold * (sal.max() - sal.min()) + sal.min()
    inter, union = np.sum(har & gt), np.sum(har | gt)
    iou, f1 = inter / union, 2 * inter / (har.sum() + gt.sum())
    got = segmentation.segmentation_scores(sal, gt, threshold=threshold)
    assert got["area"] == har.sum()
    np.testing.assert_allclose([got["iou"], got["f1"]], [iou, f1], atol=1e-12)
    np.testing.assert_allclose([got["iou_pixel"], got["f1_pixel"]],
                               [iou / har.sum(), f1 / har.sum()], atol=1e-15)


# --- NN-Explainer metrics (Stalder et al. eq. 9) ------------------------------------------


def test_explainer_scores_equal_the_paper_formulas():
  b, h, w, c = 5, 9, 11, 6
  m = _rng.random((b, h, w))
  m[1] = 0.0
  s = _rng.random((b, h, w)) < 0.4
  s[1] = False  # both empty: IoU 1 by our documented convention
  logits = _rng.normal(size=(b, c))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  present = np.zeros((b, c), bool)
  present[np.arange(b), _rng.integers(0, c, b)] = True
  present[0, :3] = True
  acc, iou, sal, mae = [], [], [], []
  for i in range(b):
    mi, si = m[i].ravel(), s[i].ravel().astype(float)
    acc.append((np.sum(mi * si) + np.sum((1 - mi) * (1 - si))) / mi.size)
    den = np.sum(np.maximum(mi, si))
    iou.append(np.sum(np.minimum(mi, si)) / den if den else 1.0)
    sal.append(math.log(max(mi.mean(), 0.05)) - math.log(probs[i][present[i]].sum()))
    mae.append(np.mean(np.abs(mi - si)))
  got = explainer.explainer_scores(m, s, probs, present)
  for name, ref in (("acc", acc), ("iou", iou), ("sal", sal), ("mae", mae)):
    np.testing.assert_allclose(got["per_image"][name], ref, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got[name], np.mean(ref), atol=1e-12, err_msg=name)
