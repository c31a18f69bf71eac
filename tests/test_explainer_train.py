"""NN-Explainer training: explain(), the jitted step, frozen explanandum, resume, bad input."""

import dataclasses

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.data import synthetic
from rise_jax.explainer import train as et
from rise_jax.explainer.losses import Coefficients
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import checkpoint

COEFFS = Coefficients(lr=1e-2)
EXPLAINER = et.create_explainer(6, width=4)
CLASSIFIER = TinyCNN(num_classes=6, features=(4, 8))


@pytest.fixture(scope="module")
def data():
  tr = synthetic.make("train", 16, image_size=32)
  va = synthetic.make("val", 8, image_size=32)
  variables = CLASSIFIER.init(jax.random.key(1), jnp.asarray(tr["image"][:1]))
  return tr, va, variables


def _paths(tree):
  return set(flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)))


def test_explain_shape_and_range(data):
  tr, _, _ = data
  variables = EXPLAINER.init(jax.random.key(0), jnp.asarray(tr["image"][:1]))
  masks = et.explain(EXPLAINER, variables, tr["image"][:3])
  assert masks.shape == (3, 6, 32, 32) and masks.dtype == jnp.float32
  assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
  # Eval mode: deterministic (no dropout, running BN statistics).
  np.testing.assert_array_equal(masks, et.explain(EXPLAINER, variables, tr["image"][:3]))


def test_steps_lower_the_loss_and_keep_the_explanandum(data):
  tr, _, frozen = data
  before = jax.tree.map(np.array, frozen)
  x, y = jnp.asarray(tr["image"][:8]), jnp.asarray(tr["label"][:8])
  variables = EXPLAINER.init(jax.random.key(0), x[:1])
  state = et.init_state(variables, COEFFS.lr)
  step = et.make_train_step(EXPLAINER, CLASSIFIER.apply, COEFFS, COEFFS.lr)
  evaluate = et.make_eval_step(EXPLAINER, CLASSIFIER.apply, COEFFS)
  loss0, _ = evaluate(et.state_variables(state), frozen, x, y)
  first = None
  for s in range(8):
    state, loss, terms = step(state, frozen, x, y, jax.random.key(s))
    first = float(loss) if first is None else first
  assert set(terms) >= {"classification", "entropy", "area", "tv"}
  assert float(loss) < first  # train-mode loss on the fixed batch went down
  # The state holds only the Explainer: its params, batch_stats and Adam state.
  assert [f.name for f in dataclasses.fields(state)] == ["epoch", "params", "batch_stats",
                                                         "opt_state"]
  assert _paths(state.params) == _paths(variables["params"])
  assert _paths(state.batch_stats) == _paths(variables["batch_stats"])
  explanandum_names = set(frozen["params"])  # conv1, conv2, head
  assert not explanandum_names & {p[0] for p in _paths(state.params)}
  n_state = sum(x.size for x in jax.tree.leaves((state.params, state.batch_stats)))
  n_expl = sum(x.size for x in jax.tree.leaves(variables))
  assert n_state == n_expl
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, frozen))
  loss1, _ = evaluate(et.state_variables(state), frozen, x, y)
  assert np.isfinite(float(loss0)) and np.isfinite(float(loss1))


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_resume_equals_uninterrupted_and_explanandum_frozen(tmp_path, data):
  tr, va, frozen = data
  before = jax.tree.map(np.array, frozen)
  kw = dict(coeffs=COEFFS, batch_size=8, seed=3, patience=5, module=EXPLAINER, progress=False)
  full = et.train_explainer(CLASSIFIER.apply, frozen, tr, va, epochs=2,
                            workdir=str(tmp_path / "a"), **kw)
  et.train_explainer(CLASSIFIER.apply, frozen, tr, va, epochs=1, workdir=str(tmp_path / "b"),
                     **kw)  # "killed" after one epoch
  resumed = et.train_explainer(CLASSIFIER.apply, frozen, tr, va, epochs=2,
                               workdir=str(tmp_path / "b"), **kw)
  jax.tree.map(np.testing.assert_array_equal, full["last_variables"], resumed["last_variables"])
  jax.tree.map(np.testing.assert_array_equal, full["variables"], resumed["variables"])
  assert [h["epoch"] for h in resumed["history"]] == [1, 2]
  assert resumed["history"] == full["history"]
  assert resumed["best_epoch"] == full["best_epoch"] and not full["stopped_early"]
  # The explanandum is unchanged and the checkpoint holds only the Explainer's state.
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, frozen))
  with checkpoint.Manager(tmp_path / "a" / "checkpoints" / "latest") as mgr:
    assert mgr.all_steps() == [2]
    template = et.init_state(full["last_variables"], COEFFS.lr)
    saved = mgr.restore(template)
  assert int(saved.epoch) == 2
  jax.tree.map(np.testing.assert_array_equal, saved.params, full["last_variables"]["params"])
  assert not set(frozen["params"]) & {p[0] for p in _paths(saved.params)}


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_early_stopping(tmp_path, data):
  tr, va, frozen = data
  # At this learning rate the validation loss rises after epoch 1 (1.057 -> 1.099 on CPU):
  # patience 1 stops after epoch 2 and keeps epoch 1.
  kw = dict(coeffs=COEFFS, epochs=4, batch_size=8, patience=1, module=EXPLAINER,
            workdir=str(tmp_path), progress=False)
  out = et.train_explainer(CLASSIFIER.apply, frozen, tr, va, **kw)
  losses = [h["val_loss"] for h in out["history"]]
  assert out["stopped_early"] and len(losses) == 2 and losses[1] >= losses[0]
  assert out["best_epoch"] == 1
  # A rerun in the same workdir sees the stop in history.json and trains no further.
  again = et.train_explainer(CLASSIFIER.apply, frozen, tr, va, **kw)
  assert again["stopped_early"] and again["history"] == out["history"]
  jax.tree.map(np.testing.assert_array_equal, again["variables"], out["variables"])


def test_bad_input(data):
  tr, va, frozen = data
  kw = dict(coeffs=COEFFS, epochs=1, batch_size=8, module=EXPLAINER, progress=False)
  wide = dict(tr, label=np.concatenate([tr["label"], tr["label"][:, :1]], axis=1))
  with pytest.raises(ValueError, match="classes"):
    et.train_explainer(CLASSIFIER.apply, frozen, wide, dict(va, label=wide["label"][:8]), **kw)
  with pytest.raises(ValueError, match=r"val must match train"):
    et.train_explainer(CLASSIFIER.apply, frozen, tr, dict(va, label=va["label"][:, :5]), **kw)
  gray = dict(tr, image=tr["image"][..., :1])
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    et.train_explainer(CLASSIFIER.apply, frozen, gray, va, **kw)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    et.explain(EXPLAINER, {}, tr["image"][:2, :, :, :2])
  with pytest.raises(ValueError, match="multi-hot"):
    et.train_explainer(CLASSIFIER.apply, frozen, dict(tr, label=tr["label"] * 0.5), va, **kw)
  with pytest.raises(ValueError, match="batch_size"):
    et.train_explainer(CLASSIFIER.apply, frozen, tr, va, **dict(kw, batch_size=99))
  with pytest.raises(ValueError, match="integer >= 1"):
    et.create_explainer(0)
