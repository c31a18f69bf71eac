"""Two CPU processes (jax.distributed on localhost) give the single-process results.

Dataset RISE maps, deletion/insertion AUCs and pointing hits are split over the processes by
``rise_jax.distributed.explain_dataset`` and gathered; the Explainer trains data-parallel over a
mesh of both processes' devices with the same global batch as the single-process run.
"""

import os
import socket
import subprocess
import sys

import numpy as np

from tests import multiprocess_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  out = tmp_path / "two.npz"
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "tests.multiprocess_worker", str(out), "--coordinator",
       f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in (0, 1)]
  try:
    logs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-4000:]

  multiprocess_worker.main([str(tmp_path / "one.npz")])  # one process, here
  one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
  assert int(two["processes"]) == 2 and int(one["processes"]) == 1
  assert one["maps"].shape == (6, 32, 32) and np.ptp(one["maps"]) > 0
  for name in ("maps", "deletion", "insertion"):
    np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
  np.testing.assert_array_equal(two["pointing_hit"], one["pointing_hit"])
  # Data-parallel training over the two processes: the same loss curve and Explainer.
  np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-5)
  np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-5)
  np.testing.assert_allclose(two["masks"], one["masks"], rtol=1e-5, atol=1e-6)
