"""Every method on 1, 2 and 4 forced CPU devices (batches sharded over a mesh) gives the
single-device result: RISE, Segmentation RISE, IASSA, deletion/insertion, Explainer training
and inference.

Data-parallel Explainer training runs here on 4 devices; on 2 devices it is
tests/test_multiprocess.py (a mesh of two processes' devices, same data and settings), which
saves compiling the training step once more here.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import jax.numpy as jnp
    import numpy as np
    import rise_jax
    from tests import test_iassa, test_metrics_causal, test_multidevice as md
    from tests import test_rise, test_segmentation_rise
    assert len(jax.devices()) == 4, jax.devices()
    out = {}
    for d in (2, 4):
      mesh = rise_jax.batch_mesh(jax.devices()[:d])
      for name, value in md.run_all(mesh, train=d == 4).items():
        out[f"{d}_{name}"] = value
    np.savez(sys.argv[1], **out)
""")


def run_all(mesh, train: bool = True) -> dict[str, np.ndarray]:
  """Every method's outputs (as NumPy) with batches sharded over ``mesh``; Explainer training
  only with ``train``."""
  import rise_jax
  from rise_jax.data import synthetic
  from rise_jax.explainer import train as et
  from rise_jax.explainer.losses import Coefficients
  from rise_jax.metrics import causal
  from rise_jax.models.tiny import TinyCNN
  from tests import (
    multiprocess_worker,
    test_iassa,
    test_metrics_causal,
    test_rise,
    test_segmentation_rise,
  )

  out = {}
  out["rise"] = rise_jax.rise(test_rise.nonlinear_box, test_rise.IMAGE, 3, num_masks=300,
                              batch_size=7, mesh=mesh)
  out["seg"] = rise_jax.segmentation_rise(
      test_segmentation_rise.seg_model, test_segmentation_rise.IMAGE, 1, target_class=1,
      merge="max", num_masks=70, grid_size=4, batch_size=10, pixel_chunk=7, mesh=mesh)
  res = rise_jax.iassa(test_iassa.box, test_iassa.features, test_iassa.IMAGE, class_id=0,
                       max_iters=3, record=range(4), window=9, stride=4, batch_size=6,
                       mesh=mesh)
  out["iassa_records"], out["iassa_windows"] = res.records, res.windows
  rng = np.random.default_rng(3)
  h, w = test_metrics_causal.H, test_metrics_causal.W
  images = jnp.asarray(rng.normal(size=(3, h, w, 3)), jnp.float32)
  sal = rng.normal(size=(3, h, w))
  out["deletion"] = causal.deletion(test_metrics_causal.box4, images, sal, [0, 1, 3], step=9,
                                    batch_size=5, mesh=mesh)[1]
  out["insertion"] = causal.insertion(test_metrics_causal.box4, images, sal, [0, 1, 3], step=9,
                                      batch_size=5, mesh=mesh)[1]

  classifier = TinyCNN(num_classes=6, features=(4, 8))
  explainer = multiprocess_worker.SmallExplainer()
  tr, va = synthetic.make("train", 16, image_size=32), synthetic.make("val", 6, image_size=32)
  frozen = classifier.init(jax.random.key(1), jnp.asarray(tr["image"][:1]))
  fixed = jax.jit(explainer.init)(jax.random.key(0), jnp.asarray(va["image"][:1]))
  out["explain"] = et.explain(explainer, fixed, va["image"], mesh=mesh)
  if not train:
    return {k: np.asarray(v) for k, v in out.items()}
  run = et.train_explainer(classifier.apply, frozen, tr, va, coeffs=Coefficients(lr=1e-2),
                           epochs=2, batch_size=8, module=explainer, progress=False, mesh=mesh)
  out["losses"] = [[h["train_loss"], h["val_loss"]] for h in run["history"]]
  out["trained_masks"] = et.explain(explainer, run["last_variables"], va["image"], mesh=mesh)
  return {k: np.asarray(v) for k, v in out.items()}


EXACT = ("rise", "seg", "iassa_records", "deletion", "insertion", "explain")


def test_every_method_on_2_and_4_devices_equals_1(tmp_path):
  """One test (not a module fixture shared by several): pytest-xdist would run the fixture's
  subprocess once per worker."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  path = tmp_path / "out.npz"
  subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, cwd=root,
                 timeout=900)
  assert len(jax.devices()) == 1  # the 1-device run (reference): this process's only device
  got, ref = np.load(path), run_all(rise_jax.batch_mesh())
  assert np.ptp(ref["rise"]) > 0 and np.ptp(ref["iassa_records"][-1]) > 0
  for devices in (2, 4):
    for name in EXACT:
      np.testing.assert_allclose(got[f"{devices}_{name}"], ref[name], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{name} on {devices} devices")
    np.testing.assert_array_equal(got[f"{devices}_iassa_windows"], ref["iassa_windows"])
  # Data-parallel Explainer training on 4 devices (gradients and BN statistics all-reduced):
  # the same loss curve (train and validation, 2 epochs x 2 steps) and trained masks.
  np.testing.assert_allclose(got["4_losses"], ref["losses"], rtol=1e-5)
  np.testing.assert_allclose(got["4_trained_masks"], ref["trained_masks"], rtol=1e-5, atol=1e-6)


def test_training_batch_must_divide_over_the_mesh():
  from rise_jax.data import synthetic
  from rise_jax.explainer import train as et
  from rise_jax.explainer.losses import Coefficients
  from rise_jax.models.tiny import TinyCNN

  class FakeMesh:
    size = 4

  classifier = TinyCNN(num_classes=6, features=(4, 8))
  tr = synthetic.make("train", 8, image_size=16)
  frozen = classifier.init(jax.random.key(1), jnp.asarray(tr["image"][:1]))
  with pytest.raises(ValueError, match=r"multiple of the number of devices in mesh \(4\)"):
    et.train_explainer(classifier.apply, frozen, tr, tr, coeffs=Coefficients(), epochs=1,
                       batch_size=6, mesh=FakeMesh(), progress=False)
  assert rise_jax.batch_mesh().size == 1
