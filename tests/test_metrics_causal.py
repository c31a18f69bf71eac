"""Deletion / insertion against a per-step reference loop and analytic black boxes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax import substrates
from rise_jax.metrics import causal

_rng = np.random.default_rng(0)
H, W = 12, 10
KW = jnp.asarray(_rng.normal(size=(H, W, 3, 4)), jnp.float32)


def box4(x):
  return jax.nn.softmax(jnp.einsum("bhwc,hwck->bk", x, KW) / 10, axis=-1)


def reference_curve(model_fn, image, sal, cls, step, mode, substrate):
  """The RISE authors' loop: one forward per step, pixels changed in the order
  ``flip(argsort(saliency))`` (stable argsort: among ties the higher index first)."""
  x = np.asarray(image, np.float32)
  sub = np.broadcast_to(np.asarray(substrates.build(substrate, jnp.asarray(x))), x.shape)
  start, finish = (x.copy(), sub.copy()) if mode == "deletion" else (sub.copy(), x.copy())
  order = np.flip(np.argsort(np.asarray(sal).reshape(-1), kind="stable"))
  n = math.ceil(x.shape[0] * x.shape[1] / step)
  out = []
  flat_start, flat_finish = start.reshape(-1, 3), finish.reshape(-1, 3)
  for i in range(n + 1):
    out.append(float(model_fn(jnp.asarray(flat_start.reshape(x.shape))[None])[0, cls]))
    if i < n:
      idx = order[step * i: step * (i + 1)]
      flat_start[idx] = flat_finish[idx]
  return np.asarray(out)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("step,substrate", [(7, None), (10, 0.3), (13, "mean"), (120, "blur")])
def test_equals_per_step_reference(mode, step, substrate):
  substrate = substrate or ("zeros" if mode == "deletion" else "blur")
  images = jnp.asarray(_rng.normal(size=(3, H, W, 3)), jnp.float32)
  sal = _rng.normal(size=(3, H, W)).astype(np.float32)
  sal[0, :2] = 0.5  # ties: the higher index goes first
  ids = np.array([0, 3, 1])
  fn = causal.deletion if mode == "deletion" else causal.insertion
  aucs, curves = fn(box4, images, sal, ids, step=step, substrate=substrate, batch_size=8)
  assert curves.shape == (3, math.ceil(H * W / step) + 1)
  for b in range(3):
    ref = reference_curve(box4, images[b], sal[b], ids[b], step, mode, substrate)
    np.testing.assert_allclose(curves[b], ref, atol=1e-6)
    np.testing.assert_allclose(aucs[b], causal.auc(ref), atol=1e-6)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("kind", ["constant", "piecewise"])
def test_ties_follow_the_authors_order(mode, kind):
  """Constant and piecewise-constant maps (all ties) against the authors' loop: among equal
  values the higher pixel index is changed first, as ``np.flip(np.argsort(...))`` does."""
  image = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)
  if kind == "constant":
    sal = np.full((H, W), 0.25, np.float32)
  else:
    sal = np.kron(_rng.integers(0, 3, (3, 2)), np.ones((4, 5))).astype(np.float32)
  fn = causal.deletion if mode == "deletion" else causal.insertion
  sub = "zeros" if mode == "deletion" else "blur"
  _, curve = fn(box4, image, sal, 2, step=7, substrate=sub, batch_size=8)
  np.testing.assert_allclose(curve, reference_curve(box4, image, sal, 2, 7, mode, sub),
                             atol=1e-6)
  ranks = np.asarray(causal.pixel_ranks(jnp.asarray(sal)[None]))[0]
  np.testing.assert_array_equal(
      ranks[np.flip(np.argsort(sal.reshape(-1), kind="stable"))], np.arange(H * W))
  if kind == "constant":  # the last pixel first; NumPy's default argsort agrees here
    np.testing.assert_array_equal(ranks, np.arange(H * W)[::-1])
    np.testing.assert_array_equal(np.flip(np.argsort(sal.reshape(-1))), np.arange(H * W)[::-1])
  else:  # the first step takes the highest level, last index first
    top = np.flatnonzero(sal.reshape(-1) == sal.max())
    np.testing.assert_array_equal(np.argsort(ranks)[:top.size], top[::-1])


def test_batch_size_invariance():
  images = jnp.asarray(_rng.normal(size=(2, H, W, 3)), jnp.float32)
  sal = _rng.normal(size=(2, H, W))
  a = causal.deletion(box4, images, sal, [1, 2], step=5, batch_size=3)[1]
  b = causal.deletion(box4, images, sal, [1, 2], step=5, batch_size=64)[1]
  np.testing.assert_allclose(a, b, atol=1e-6)  # XLA sums per batch shape


def test_auc_closed_forms():
  np.testing.assert_allclose(causal.auc(np.full(11, 0.3)), 0.3)
  np.testing.assert_allclose(causal.auc(np.linspace(0, 1, 9)), 0.5)
  np.testing.assert_allclose(causal.auc(np.linspace(1, 0, 5) ** 2), 0.34375)  # trapezoid
  np.testing.assert_allclose(causal.auc([[0, 1], [1, 1]]), [0.5, 1.0])
  with pytest.raises(ValueError, match="2 points"):
    causal.auc([1.0])


def test_analytic_box_visibility():
  """Score = fraction of a known box still visible; a map on the box deletes it first."""
  size = 32
  box = np.zeros((size, size), bool)
  box[8:16, 10:20] = True
  wbox = jnp.asarray(box, jnp.float32)

  def visible(x):
    frac = jnp.sum(jnp.abs(x[..., 0]) * wbox, axis=(1, 2)) / wbox.sum()
    return jnp.stack([frac, 1 - frac], axis=1)

  image = jnp.ones((size, size, 3))
  good = box.astype(np.float32) + 0.01 * _rng.random((size, size))
  bad = 1.0 - good
  del_good = causal.deletion(visible, image, good, 0, step=size)[0]
  del_bad = causal.deletion(visible, image, bad, 0, step=size)[0]
  ins_good = causal.insertion(visible, image, good, 0, step=size, substrate="zeros")[0]
  assert del_good <= 0.1
  assert del_bad >= 0.8
  assert ins_good >= 0.9


def test_single_image_and_channel_axis():
  image = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)
  sal = _rng.normal(size=(H, W))
  a, curve = causal.deletion(box4, image, sal, 2, step=11)
  b, curves = causal.deletion(box4, image[None], sal[None, None], [2], step=11)
  assert np.ndim(a) == 0 and curve.shape == (12,)
  np.testing.assert_allclose(curve, curves[0])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(saliency=np.zeros((2, 5, 5))), ValueError, "saliency must have shape"),
    (dict(class_ids=[0, 9]), ValueError, "class_ids must be in"),
    (dict(class_ids=[0]), ValueError, "one per image"),
    (dict(step=0), ValueError, "step"),
    (dict(saliency=np.full((2, H, W), np.nan)), ValueError, "NaN"),
    (dict(substrate="noise"), ValueError, "substrate"),
    (dict(images=np.ones((2, H, W, 3), np.uint8)), TypeError, "floating"),
])
def test_bad_input(kwargs, exc, match):
  args = dict(images=jnp.ones((2, H, W, 3)), saliency=np.ones((2, H, W)), class_ids=[0, 1],
              step=10)
  args.update(kwargs)
  with pytest.raises(exc, match=match):
    causal.deletion(box4, args.pop("images"), args.pop("saliency"), args.pop("class_ids"),
                    **args)


def test_nan_black_box_names_the_step():
  def nan_when_dark(x):
    s = jnp.mean(x, axis=(1, 2, 3))
    return jnp.stack([jnp.where(s < 0.5, jnp.nan, s), s], 1)

  with pytest.raises(FloatingPointError, match="deletion step"):
    causal.deletion(nan_when_dark, jnp.ones((H, W, 3)), np.ones((H, W)), 0, step=20)
