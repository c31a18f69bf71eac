"""RISE on 4 forced CPU devices equals the single-device result."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import rise_jax
from tests import test_rise, test_segmentation_rise

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    import rise_jax
    from tests import test_rise, test_segmentation_rise
    assert len(jax.devices()) == 4, jax.devices()
    out = {}
    for name, devs in (("four", jax.devices()), ("one", jax.devices()[:1])):
      mesh = rise_jax.batch_mesh(devs)
      out[name + "_rise"] = np.asarray(rise_jax.rise(
          test_rise.nonlinear_box, test_rise.IMAGE, 3, num_masks=300, batch_size=7,
          mesh=mesh))
      out[name + "_seg"] = np.asarray(rise_jax.segmentation_rise(
          test_segmentation_rise.seg_model, test_segmentation_rise.IMAGE, 1, target_class=1,
          merge="max", num_masks=70, grid_size=4, batch_size=10, pixel_chunk=7, mesh=mesh))
    np.savez(sys.argv[1], **out)
""")


def test_four_devices_equal_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  path = tmp_path / "out.npz"
  subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, cwd=root,
                 timeout=600)
  got = np.load(path)
  here_rise = rise_jax.rise(test_rise.nonlinear_box, test_rise.IMAGE, 3, num_masks=300,
                            batch_size=64)
  here_seg = rise_jax.segmentation_rise(
      test_segmentation_rise.seg_model, test_segmentation_rise.IMAGE, 1, target_class=1,
      merge="max", num_masks=70, grid_size=4, batch_size=70, pixel_chunk=64)
  for name in ("four", "one"):
    np.testing.assert_allclose(got[name + "_rise"], here_rise, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[name + "_seg"], here_seg, rtol=1e-5, atol=1e-6)
