"""RISE against brute-force sums over explicit masks, analytic black boxes and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax import substrates

H = W = 24
_rng = np.random.default_rng(0)
W1 = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)
W2 = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)


def nonlinear_box(x):
  """A smooth non-linear 3-class black box."""
  a = jnp.sum(x * W1, axis=(1, 2, 3)) / 50
  b = jnp.sum(x * W2, axis=(1, 2, 3)) / 50
  return jax.nn.softmax(jnp.stack([a, b, a * b], axis=1), axis=1)


IMAGE = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)


def brute_force(f, image, masks, substrate, normalize, p1):
  m = np.asarray(masks, np.float64)
  x = np.asarray(image, np.float64)
  sub = np.broadcast_to(np.asarray(substrates.build(substrate, jnp.asarray(image)), np.float64),
                        x.shape)
  xs = m[..., None] * x + (1 - m[..., None]) * sub
  scores = np.asarray(f(jnp.asarray(xs, jnp.float32)), np.float64)  # [N, C]
  total = np.einsum("nc,nhw->chw", scores, m)
  if normalize == "expected":
    return total / (len(m) * p1)
  return total / m.sum(0)


@pytest.mark.parametrize("normalize", ["expected", "empirical"])
@pytest.mark.parametrize("substrate", ["zeros", 0.7, "mean", "blur", "array"])
def test_equals_brute_force(normalize, substrate):
  if substrate == "array":
    substrate = substrates.check(np.asarray(_rng.normal(size=(H, W, 3)), np.float32), (H, W, 3))
  masks = rise_jax.generate_masks(7, 150, (H, W), 5, 0.4)
  ours = rise_jax.rise(nonlinear_box, IMAGE, 7, num_masks=150, grid_size=5, p1=0.4,
                       batch_size=32, substrate=substrate, normalize=normalize)
  ref = brute_force(nonlinear_box, IMAGE, masks, substrates.check(substrate, (H, W, 3)),
                    normalize, 0.4)
  assert ours.shape == (3, H, W)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_saved_mask_set_equals_brute_force(tmp_path):
  masks = rise_jax.generate_masks(1, 90, (H, W), (3, 4), 0.5, savepath=tmp_path / "m.npy")
  loaded = rise_jax.load_masks(tmp_path / "m.npy")
  ours = rise_jax.rise(nonlinear_box, IMAGE, 0, masks=loaded, batch_size=40)
  ref = brute_force(nonlinear_box, IMAGE, masks, "zeros", "expected", 0.5)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
  keyed = rise_jax.rise(nonlinear_box, IMAGE, 1, num_masks=90, grid_size=(3, 4), batch_size=13)
  np.testing.assert_allclose(ours, keyed, rtol=1e-5, atol=1e-6)


def test_linear_black_box_peaks_on_support():
  # For f(x) = sum(w * x) on x = 1, S(l) = sum_u w_u E[M_u M_l] / p1: far from the support it is
  # the constant p1 * sum(w), inside at most 1 / p1 times that. A ratio >= 3 therefore needs a
  # small p1 (with p1 = 0.5 no estimator can exceed 2); p1 = 0.05 gives about 1 + 0.95/0.05 * rho.
  support = np.zeros((64, 64), bool)
  support[8:18, 40:50] = True
  w = jnp.asarray(np.repeat(support[..., None], 3, -1), jnp.float32)
  f = lambda x: jnp.sum(x * w, axis=(1, 2, 3))[:, None]  # noqa: E731
  sal = np.asarray(rise_jax.rise(f, jnp.ones((64, 64, 3)), 0, num_masks=2000, grid_size=8,
                                 p1=0.05, batch_size=200))[0]
  assert support.reshape(-1)[np.argmax(sal)]
  assert sal[support].mean() >= 3 * sal[~support].mean()
  # The analytic value far from the support: p1 * sum(w) (within Monte-Carlo error).
  far = sal[40:, :20].mean()
  np.testing.assert_allclose(far, 0.05 * float(w.sum()), rtol=0.15)


def test_batch_size_invariance():
  a = rise_jax.rise(nonlinear_box, IMAGE, 3, num_masks=300, batch_size=7)
  b = rise_jax.rise(nonlinear_box, IMAGE, 3, num_masks=300, batch_size=64)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batch_of_images_equals_single_runs():
  imgs = jnp.stack([IMAGE, -IMAGE, IMAGE * 0.5])
  batch = rise_jax.rise(nonlinear_box, imgs, 2, num_masks=120, batch_size=50)
  assert batch.shape == (3, 3, H, W)
  for i in range(3):
    np.testing.assert_allclose(batch[i], rise_jax.rise(nonlinear_box, imgs[i], 2,
                                                       num_masks=120, batch_size=50),
                               rtol=1e-5, atol=1e-6)


def test_class_selection():
  full = rise_jax.rise(nonlinear_box, IMAGE, 4, num_masks=100, batch_size=50)
  some = rise_jax.rise(nonlinear_box, IMAGE, 4, num_masks=100, batch_size=50, classes=[2, 0])
  np.testing.assert_allclose(some, full[jnp.asarray([2, 0])], rtol=1e-6, atol=1e-7)
  top, info = rise_jax.rise(nonlinear_box, IMAGE, 4, num_masks=100, batch_size=50, classes=2,
                            return_info=True)
  order = np.argsort(-np.asarray(nonlinear_box(IMAGE[None]))[0])[:2]
  np.testing.assert_array_equal(info.class_ids[0], order)
  np.testing.assert_allclose(top, full[order], rtol=1e-6, atol=1e-7)
  assert info.num_masks.tolist() == [100]


def test_early_stop_uses_fewer_masks_and_matches_prefix():
  maps, info = rise_jax.rise(nonlinear_box, IMAGE, 5, num_masks=4000, batch_size=64, tol=0.05,
                             check_every=250, return_info=True)
  used = int(info.num_masks[0])
  assert used < 4000 and used % 250 == 0
  prefix = rise_jax.rise(nonlinear_box, IMAGE, 5, num_masks=used, batch_size=100)
  np.testing.assert_allclose(maps, prefix, rtol=1e-5, atol=1e-6)
  # Never stops before the second checkpoint; with tol tiny it runs to the end.
  _, full = rise_jax.rise(nonlinear_box, IMAGE, 5, num_masks=300, batch_size=64, tol=1e-12,
                          check_every=100, return_info=True)
  assert full.num_masks.tolist() == [300]


def test_nan_scores_name_the_batch():
  def nan_after(x):
    s = jnp.sum(x, axis=(1, 2, 3))[:, None]
    return jnp.where(jnp.abs(s) > 1e9, jnp.nan, s)

  ok = rise_jax.rise(nan_after, IMAGE, 0, num_masks=40, batch_size=16)
  assert np.all(np.isfinite(ok))
  bad_img = IMAGE.at[0, 0, 0].set(1e12)  # a mask that keeps pixel (0, 0) gives NaN
  with pytest.raises(FloatingPointError, match=r"mask batch \d+"):
    rise_jax.rise(nan_after, bad_img, 0, num_masks=40, batch_size=16)


@pytest.mark.parametrize("images,exc,match", [
    (jnp.ones((4, 24, 24)), ValueError, "channels"),
    (jnp.ones((24, 24)), ValueError, "shape"),
    (jnp.ones((1, 2, 24, 24, 3)), ValueError, "shape"),
    (np.ones((24, 24, 3), np.uint8), TypeError, "floating"),
    ([[1.0]], TypeError, "array"),
])
def test_bad_images(images, exc, match):
  with pytest.raises(exc, match=match):
    rise_jax.rise(nonlinear_box, images, 0, num_masks=10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(p1=0.0), "p1"), (dict(p1=1.0), "p1"), (dict(grid_size=0), "grid_size"),
    (dict(grid_size=25), "grid_size"), (dict(num_masks=0), "num_masks"),
    (dict(batch_size=0), "batch_size"), (dict(substrate="noise"), "substrate"),
    (dict(substrate=np.ones((5, 5, 3))), "substrate"), (dict(normalize="l2"), "normalize"),
    (dict(classes=[0, 3]), r"class ids must be in \[0, 2\]"), (dict(classes=[-1]), "class ids"),
    (dict(classes=4), "top-k"), (dict(classes=[]), "classes"),
    (dict(tol=-1.0), "tol"), (dict(check_every=0), "check_every"),
    (dict(masks=np.ones((5, 10, 10), np.float32)), "masks"),
])
def test_bad_arguments(kwargs, match):
  args = dict(num_masks=10, batch_size=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    rise_jax.rise(nonlinear_box, IMAGE, 0, **args)


@pytest.mark.parametrize("model_fn,exc,match", [
    (lambda x: jnp.sum(x, axis=(1, 2, 3)), ValueError, r"\[b, C\]"),
    (lambda x: (x.sum((1, 2, 3))[:, None], {}), ValueError, "tuple"),
    (lambda x: jnp.ones((3, 2)), ValueError, "b = "),
    (lambda x: jnp.sum(x, axis=(1, 2)).astype(jnp.int32), ValueError, "float"),
    (lambda x: np.asarray(x).sum((1, 2, 3))[:, None], TypeError, "traceable"),
    ("not callable", TypeError, "callable"),
])
def test_bad_model_fn(model_fn, exc, match):
  with pytest.raises(exc, match=match):
    rise_jax.rise(model_fn, IMAGE, 0, num_masks=10, batch_size=4)


def test_raw_prng_key_and_typed_key_agree():
  a = rise_jax.rise(nonlinear_box, IMAGE, jax.random.PRNGKey(9), num_masks=50, batch_size=25)
  b = rise_jax.rise(nonlinear_box, IMAGE, jax.random.key(9), num_masks=50, batch_size=25)
  np.testing.assert_array_equal(a, b)
