"""Black boxes that fail mid-run: a host (NumPy/PyTorch) black box that raises on one batch, or
a JAX one that returns NaN for one batch, stops every method with an error naming that batch,
and no partial map is returned."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax import baselines
from rise_jax.metrics import causal

H, W = 16, 12
_rng = np.random.default_rng(0)
IMAGE = _rng.normal(size=(H, W, 3)).astype(np.float32)
KERNEL = _rng.normal(size=(H * W * 3, 4)).astype(np.float32) / 8


def jax_box(x):
  return jax.nn.softmax(x.reshape(x.shape[0], -1) @ KERNEL, axis=-1)


def numpy_box(x):
  z = np.asarray(x, np.float32).reshape(x.shape[0], -1) @ KERNEL
  z = np.exp(z - z.max(axis=1, keepdims=True))
  return z / z.sum(axis=1, keepdims=True)


class Failing:
  """numpy_box that raises on its ``fail_at``-th call with real images (0-based); the shape
  probe on zeros is not counted."""

  def __init__(self, fail_at: int):
    self.fail_at, self.calls = fail_at, 0

  def __call__(self, x):
    if not np.any(x):
      return numpy_box(x)
    k, self.calls = self.calls, self.calls + 1
    if k == self.fail_at:
      raise RuntimeError("GPU fell off the bus")
    return numpy_box(x)


def test_host_black_box_equals_the_jax_one():
  box = rise_jax.host_black_box(numpy_box)
  want = rise_jax.rise(jax_box, IMAGE, 0, num_masks=60, grid_size=3, batch_size=16)
  got = rise_jax.rise(box, IMAGE, 0, num_masks=60, grid_size=3, batch_size=16)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  sal = np.asarray(want[1])
  np.testing.assert_allclose(causal.deletion(box, IMAGE, sal, 1, step=20)[1],
                             causal.deletion(jax_box, IMAGE, sal, 1, step=20)[1], atol=1e-6)


def test_raising_black_box_names_the_mask_batch_and_stops_calling():
  fn = Failing(fail_at=2)
  box = rise_jax.host_black_box(fn)
  with pytest.raises(rise_jax.BlackBoxError,
                     match=r"model_fn raised RuntimeError: GPU fell off the bus -- while scoring "
                           r"the batch for image 0, mask 20 \(mask batch 2: masks \[20, 30\)\); "
                           r"no saliency map is returned") as info:
    rise_jax.rise(box, IMAGE, 0, num_masks=50, grid_size=3, batch_size=10)
  assert isinstance(info.value.__cause__, RuntimeError)
  assert fn.calls == 3  # batches 3 and 4 were not sent to the failed black box
  # The next call starts afresh and completes.
  fn.fail_at = -1
  maps = rise_jax.rise(box, IMAGE, 0, num_masks=50, grid_size=3, batch_size=10)
  np.testing.assert_allclose(
      maps, rise_jax.rise(jax_box, IMAGE, 0, num_masks=50, grid_size=3, batch_size=10),
      rtol=1e-5, atol=1e-6)


def test_raising_black_box_in_every_method():
  sal = _rng.normal(size=(H, W))
  cases = [
      (lambda b: causal.deletion(b, IMAGE, sal, 1, step=20, batch_size=4),
       r"deletion step 4 \(batch 1\); no curve is returned"),
      (lambda b: causal.insertion(b, IMAGE, sal, 1, step=20, batch_size=4),
       r"insertion step 4 \(batch 1\); no curve is returned"),
      (lambda b: baselines.occlusion(b, IMAGE, window=4, stride=4, batch_size=5),
       r"window 0 \(batch 0\); no map is returned"),  # call 0 scored the unoccluded image
      (lambda b: rise_jax.iassa(b, lambda x: [x[:, ::4, ::4]], IMAGE, class_id=0, window=5,
                                stride=3, batch_size=4, max_iters=2),
       r"for image 0 at iteration 0 .* in window batch 1 of that iteration"),
  ]
  for run, match in cases:
    with pytest.raises(rise_jax.BlackBoxError, match="RuntimeError: GPU fell off the bus") as e:
      run(rise_jax.host_black_box(Failing(fail_at=1)))
    assert re.search(match, str(e.value)), (match, str(e.value))


def test_nan_mid_run_names_the_batch_in_every_method():
  """A JAX black box that returns NaN for one batch only (the one holding a marked image)."""
  sal = np.arange(H * W, dtype=np.float32).reshape(H, W)[::-1]  # deletes row by row from the end

  def nan_when(pred):
    def box(x):
      out = jax_box(x)
      return jnp.where(pred(x)[:, None], jnp.nan, out)
    return box

  # Deletion step k zeroes 20 k pixels; NaN once at least 60 pixels are zero (step 3, batch 0
  # of size 4 holds steps 0-3).
  box = nan_when(lambda x: jnp.sum(jnp.all(x == 0, axis=-1), axis=(1, 2)) >= 60)
  with pytest.raises(FloatingPointError, match=r"image 0 at deletion step 3 \(batch 0\)"):
    causal.deletion(box, IMAGE, sal, 1, step=20, batch_size=4)
  with pytest.raises(FloatingPointError, match=r"mask batch \d+: masks \[\d+, \d+\)"):
    rise_jax.rise(nan_when(lambda x: jnp.mean(x == 0, axis=(1, 2, 3)) > 0.7), IMAGE, 0,
                  num_masks=200, grid_size=3, batch_size=10)


def test_torch_black_box():
  torch = pytest.importorskip("torch")
  layer = torch.nn.Linear(H * W * 3, 4, bias=False)
  with torch.no_grad():
    layer.weight.copy_(torch.from_numpy(KERNEL.T.copy()))
  box = rise_jax.host_black_box(
      lambda x: torch.softmax(layer(torch.from_numpy(x).reshape(x.shape[0], -1)), -1))
  np.testing.assert_allclose(
      rise_jax.rise(box, IMAGE, 1, num_masks=40, grid_size=3, batch_size=8),
      rise_jax.rise(jax_box, IMAGE, 1, num_masks=40, grid_size=3, batch_size=8),
      rtol=1e-4, atol=1e-6)


def test_host_black_box_bad_output():
  with pytest.raises(TypeError, match="callable"):
    rise_jax.host_black_box("resnet")
  box = rise_jax.host_black_box(lambda x: np.zeros((3, 4), np.float32))  # wrong batch size
  with pytest.raises(TypeError, match=r"float scores \[10, \.\.\.\]"):
    rise_jax.rise(box, IMAGE, 0, num_masks=20, batch_size=10)
