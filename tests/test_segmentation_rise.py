"""Segmentation RISE against brute-force per-pixel maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax

H = W = 16
_rng = np.random.default_rng(1)
KERNEL = jnp.asarray(_rng.normal(size=(3, 3, 3, 2)), jnp.float32)


def seg_model(x):
  """A tiny conv 'segmenter': float32[b, 16, 16, 3] -> scores float32[b, 8, 8, 2]."""
  y = jax.lax.conv_general_dilated(x, KERNEL, (2, 2), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.nn.softmax(y, axis=-1)


IMAGE = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)


def per_pixel_maps(masks, target, region, normalize="expected", p1=0.5):
  m = np.asarray(masks, np.float64)
  out = np.asarray(seg_model(jnp.asarray(m[..., None] * np.asarray(IMAGE))), np.float64)
  scores = out[..., target].reshape(len(m), -1)[:, region.reshape(-1)]  # [N, P]
  maps = np.einsum("np,nhw->phw", scores, m)
  return maps / (len(m) * p1) if normalize == "expected" else maps / m.sum(0)


@pytest.mark.parametrize("normalize", ["expected", "empirical"])
@pytest.mark.parametrize("merge", ["mean", "max"])
def test_equals_brute_force(merge, normalize):
  region = np.zeros((8, 8), bool)
  region[2:6, 1:7] = True
  region[0, 0] = True
  masks = rise_jax.generate_masks(3, 120, H, 4, 0.5)
  ref = per_pixel_maps(masks, 1, region, normalize)
  ref = ref.max(0) if merge == "max" else ref.mean(0)
  ours = rise_jax.segmentation_rise(seg_model, IMAGE, 3, target_class=1, region=region,
                                    merge=merge, num_masks=120, grid_size=4, batch_size=32,
                                    normalize=normalize, pixel_chunk=8)
  assert ours.shape == (H, W)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_default_region_is_predicted_segment():
  pred = np.asarray(jnp.argmax(seg_model(IMAGE[None])[0], -1))
  region = pred == 0
  assert region.any()
  masks = rise_jax.generate_masks(0, 60, H, 4, 0.5)
  ref = per_pixel_maps(masks, 0, region).max(0)
  ours = rise_jax.segmentation_rise(seg_model, IMAGE, 0, target_class=0, merge="max",
                                    num_masks=60, grid_size=4, batch_size=16, pixel_chunk=5)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_chunk_and_batch_invariance():
  kw = dict(target_class=1, merge="max", num_masks=70, grid_size=4)
  a = rise_jax.segmentation_rise(seg_model, IMAGE, 1, batch_size=9, pixel_chunk=3, **kw)
  b = rise_jax.segmentation_rise(seg_model, IMAGE, 1, batch_size=70, pixel_chunk=64, **kw)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mean_merge_equals_rise_of_segment_mean_score():
  region = np.zeros((8, 8), bool)
  region[3:5, 3:6] = True
  wts = jnp.asarray(region.reshape(-1) / region.sum(), jnp.float32)
  scalar = lambda x: (seg_model(x)[..., 1].reshape(x.shape[0], -1) @ wts)[:, None]  # noqa: E731
  a = rise_jax.segmentation_rise(seg_model, IMAGE, 4, target_class=1, region=region,
                                 num_masks=80, batch_size=20)
  b = rise_jax.rise(scalar, IMAGE, 4, num_masks=80, batch_size=20)[0]
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(merge="median"), "merge"), (dict(target_class=2), "target_class"),
    (dict(target_class=-1), "target_class"), (dict(region=np.ones((16, 16), bool)), "region"),
    (dict(region=np.zeros((8, 8), bool)), "at least one"),
    (dict(region=np.ones((8, 8), np.int32)), "boolean"), (dict(pixel_chunk=0), "pixel_chunk"),
])
def test_bad_arguments(kwargs, match):
  args = dict(target_class=0, num_masks=10, batch_size=5, grid_size=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    rise_jax.segmentation_rise(seg_model, IMAGE, 0, **args)


def test_classifier_model_fn_rejected():
  with pytest.raises(ValueError, match=r"\[b, H', W', C\]"):
    rise_jax.segmentation_rise(lambda x: x.sum((1, 2)), IMAGE, 0, target_class=0, num_masks=4)


def test_empty_predicted_segment_is_an_error():
  always_zero = lambda x: jnp.stack([jnp.ones(x.shape[:3]), jnp.zeros(x.shape[:3])], -1)  # noqa
  with pytest.raises(ValueError, match="no output pixel"):
    rise_jax.segmentation_rise(always_zero, IMAGE, 0, target_class=1, num_masks=4)
