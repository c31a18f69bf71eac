"""The Orbax wrapper: round trips, shape checks, manager keep/restore."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.models.tiny import TinyCNN
from rise_jax.train import checkpoint


def _variables(features=(4, 8)):
  return TinyCNN(num_classes=3, features=features).init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))


def test_variables_round_trip_and_mismatch(tmp_path):
  v = _variables()
  checkpoint.save_variables(tmp_path / "ckpt", v)
  back = checkpoint.load_variables(tmp_path / "ckpt", template=v)
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, v))
  with pytest.raises(ValueError, match=r"conv2.*shape"):
    checkpoint.load_variables(tmp_path / "ckpt", template=_variables((4, 16)))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    checkpoint.load_variables(tmp_path / "missing")


def test_manager_keeps_best_and_restores(tmp_path):
  state = {"w": np.zeros(3, np.float32), "step": np.asarray(0)}
  with checkpoint.Manager(tmp_path / "run", max_to_keep=2, best_metric="loss") as m:
    for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 5.0)]:
      m.save(step, {"w": np.full(3, step, np.float32), "step": np.asarray(step)},
             metrics={"loss": loss})
    assert m.best_step() == 2
    assert sorted(m.all_steps()) == [2, 3]
    got = m.restore(state, step=2)
    np.testing.assert_array_equal(got["w"], np.full(3, 2.0))
  with checkpoint.Manager(tmp_path / "run2") as m:
    with pytest.raises(FileNotFoundError):
      m.restore(state)
