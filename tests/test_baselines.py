"""Grad-CAM, occlusion and trivial baselines against brute-force computations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax import baselines
from rise_jax.models.common import tap
from rise_jax.models.tiny import TinyCNN

_rng = np.random.default_rng(0)


class LinearConv(nn.Module):
  """conv (linear, stride 1) -> global mean pool -> dense: Grad-CAM has a closed form."""

  @nn.compact
  def __call__(self, x, train=False):
    feats = {}
    a = nn.Conv(5, (3, 3), padding="SAME", name="conv")(x)
    a = tap(self, "last_conv", a, feats)
    return nn.Dense(4, name="head")(a.mean(axis=(1, 2))), feats


def test_gradcam_equals_closed_form():
  model = LinearConv()
  x = jnp.asarray(_rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  assert "perturbations" not in variables
  cam = baselines.gradcam(model.apply, variables, x, classes=[1, 3])
  _, feats = model.apply(variables, x)
  acts = np.asarray(feats["last_conv"], np.float64)  # [B, 8, 8, 5]
  kernel = np.asarray(variables["params"]["head"]["kernel"], np.float64)  # [5, 4]
  for b in range(2):
    for k, c in enumerate([1, 3]):
      alpha = kernel[:, c] / 64.0  # d y_c / d A_hwk = W[k, c] / (h w), averaged over h, w
      ref = np.maximum((acts[b] * alpha).sum(-1), 0)
      np.testing.assert_allclose(cam[b, k], ref, rtol=1e-5, atol=1e-6)


def test_gradcam_upsamples_and_selects():
  model = TinyCNN(num_classes=3, features=(4, 8))
  x = jnp.asarray(_rng.normal(size=(16, 16, 3)), jnp.float32)
  variables = model.init(jax.random.key(1), x[None])
  full = baselines.gradcam(model.apply, variables, x)
  assert full.shape == (3, 16, 16) and float(full.min()) >= 0
  top, ids = baselines.gradcam(model.apply, variables, x, classes=2, return_ids=True)
  logits = np.asarray(model.apply(variables, x[None])[0])[0]
  np.testing.assert_array_equal(ids, np.argsort(-logits)[:2])
  np.testing.assert_allclose(top, full[ids], rtol=1e-5, atol=1e-7)
  # Brute force through jax.grad on the activation of the TinyCNN's last stage (8x8).
  delta0 = model.apply(variables, x[None], mutable=["perturbations"])[1]["perturbations"]
  acts = model.apply(variables, x[None])[1]["last_conv"][0]
  g = jax.grad(lambda d: model.apply({**variables, "perturbations": d}, x[None])[0][0, 1])(
      delta0)["last_conv"][0]
  cam = jax.nn.relu((acts * g.mean((0, 1))).sum(-1))
  np.testing.assert_allclose(full[1], jax.image.resize(cam, (16, 16), "bilinear"), rtol=1e-5,
                             atol=1e-6)


def test_gradcam_bad_input():
  model = LinearConv()
  x = jnp.ones((1, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="layer must be one of"):
    baselines.gradcam(model.apply, variables, x, layer="stage9")
  with pytest.raises(ValueError, match="class ids"):
    baselines.gradcam(model.apply, variables, x, classes=[4])
  with pytest.raises(TypeError, match="Flax apply"):
    baselines.gradcam(lambda v, x: x, variables, x)


def box3(x):
  w = jnp.asarray(np.arange(12 * 12 * 3).reshape(12, 12, 3) % 7, jnp.float32) / 100
  s = jnp.sum(x * w, axis=(1, 2, 3))
  return jnp.stack([s, s ** 2 / 10, -s], axis=1)


def test_occlusion_equals_brute_force():
  image = jnp.asarray(_rng.normal(size=(12, 12, 3)), jnp.float32)
  window, stride = 5, 3  # starts 0, 3, 6 and the edge-aligned 7
  starts = [0, 3, 6, 7]
  base = np.asarray(box3(image[None]))[0]
  acc = np.zeros((3, 12, 12))
  cnt = np.zeros((12, 12))
  for y in starts:
    for x in starts:
      occluded = np.asarray(image).copy()
      occluded[y:y + window, x:x + window] = 0.0
      drop = base - np.asarray(box3(jnp.asarray(occluded)[None]))[0]
      acc[:, y:y + window, x:x + window] += drop[:, None, None]
      cnt[y:y + window, x:x + window] += 1
  ref = acc / cnt
  ours = baselines.occlusion(box3, image, window=window, stride=stride, batch_size=4)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  two = baselines.occlusion(box3, jnp.stack([image, image]), window=window, stride=stride,
                            classes=[2], batch_size=64)
  np.testing.assert_allclose(two[1, 0], ref[2], rtol=1e-5, atol=1e-5)


def test_occlusion_bad_input():
  with pytest.raises(ValueError, match="window"):
    baselines.occlusion(box3, jnp.ones((12, 12, 3)), window=13)
  with pytest.raises(ValueError, match="stride"):
    baselines.occlusion(box3, jnp.ones((12, 12, 3)), stride=0)


def test_trivial_maps():
  imgs = jnp.zeros((2, 9, 7, 3))
  g = baselines.centre_gaussian(imgs, num_maps=3)
  assert g.shape == (2, 3, 9, 7)
  assert np.unravel_index(int(np.argmax(g[0, 0])), (9, 7)) == (4, 3) and g[0, 0, 4, 3] == 1
  assert baselines.uniform(imgs[0]).shape == (1, 9, 7)
  r1, r2 = baselines.random_map(imgs, 0), baselines.random_map(imgs, 0)
  np.testing.assert_array_equal(r1, r2)
  with pytest.raises(ValueError, match="sigma"):
    baselines.centre_gaussian(imgs, sigma=0)
