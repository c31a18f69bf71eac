"""The epoch driver (rise_jax.train.loop): data order, early stopping, resume, and run-folder
safety (fingerprint refusal / overwrite, the exclusive lock, atomic JSON)."""

import json
import os
import re
import subprocess
import sys
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.data import synthetic
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import classifier, loop


@flax.struct.dataclass
class Toy:
  epoch: jax.Array
  w: jax.Array


DATA = {"x": jnp.arange(12, dtype=jnp.float32), "y": jnp.arange(12, dtype=jnp.float32) * 2}


def _toy_run(workdir=None, epochs=3, seen=None, fail_at=None, **kw):
  """A cheap run: ``w`` moves towards each batch's mean of ``x``; records the batches."""

  def step(st, batch, rng):
    if seen is not None:
      seen.append((np.asarray(batch["x"]).tolist(), np.asarray(jax.random.key_data(rng))))
    if fail_at is not None and len(seen) == fail_at:
      raise RuntimeError("step failed")
    w = st.w + 0.5 * (jnp.mean(batch["x"]) - st.w)
    return st.replace(w=w), jnp.mean((batch["y"] - w) ** 2)

  def validate(st):
    return {"val_loss": float(jnp.abs(st.w - 5.5).sum())}

  state = Toy(epoch=jnp.asarray(0, jnp.int32), w=jnp.zeros(()))
  kw = dict(dict(batch_size=4, key=jax.random.key(7), best_metric="val_loss", mode="min",
                 config={"lr": 0.5}, progress=False), **kw)
  return loop.run(state, step, validate, DATA, epochs=epochs, workdir=workdir, **kw)


def test_data_order_rng_and_history():
  seen = []
  res = _toy_run(epochs=2, seen=seen)
  key = jax.random.key(7)
  for e in range(2):
    ekey = jax.random.fold_in(key, e)
    perm = np.asarray(jax.random.permutation(ekey, 12))
    for s in range(3):  # 12 // 4 steps, in the epoch's order
      x, rng = seen[3 * e + s]
      assert x == perm[4 * s:4 * s + 4].astype(np.float32).tolist()
      np.testing.assert_array_equal(rng, jax.random.key_data(jax.random.fold_in(ekey, s)))
  assert [h["epoch"] for h in res.history] == [1, 2] and set(res.history[0]) == {
      "epoch", "train_loss", "val_loss"}
  assert int(res.state.epoch) == 2 and not res.stopped_early


def test_resume_equals_uninterrupted_and_writes_atomically(tmp_path):
  full = _toy_run(epochs=3)
  _toy_run(tmp_path, epochs=1)
  resumed = _toy_run(tmp_path, epochs=3)
  assert resumed.history == full.history
  np.testing.assert_array_equal(resumed.state.w, full.state.w)
  names = sorted(os.listdir(tmp_path))
  assert names == ["checkpoints", "history.json", "train.lock", "train_fingerprint.json"], names
  fp = json.loads((tmp_path / "train_fingerprint.json").read_text())
  assert fp["lr"] == 0.5 and fp["batch_size"] == 4 and fp["train.x"]["shape"] == [12]
  assert len(json.loads((tmp_path / "history.json").read_text())) == 3


def test_patience_stops_and_a_rerun_stays_stopped(tmp_path):
  def validate_worse(st):  # rises after epoch 1
    return {"val_loss": float(st.epoch)}

  state = Toy(epoch=jnp.asarray(0, jnp.int32), w=jnp.zeros(()))
  kw = dict(epochs=6, batch_size=4, key=jax.random.key(0), best_metric="val_loss", mode="min",
            patience=2, workdir=tmp_path, progress=False)
  step = lambda st, b, r: (st, jnp.zeros(()))  # noqa: E731
  res = loop.run(state, step, validate_worse, DATA, **kw)
  assert res.stopped_early and len(res.history) == 3 and int(res.best_state.epoch) == 1
  again = loop.run(state, step, validate_worse, DATA, **kw)
  assert again.stopped_early and again.history == res.history


# --- fingerprint: a second run with other data or settings refuses ------------------------------


@pytest.fixture(scope="module")
def tiny():
  tr = synthetic.make("train", 16, image_size=16, num_classes=3)
  va = synthetic.make("val", 8, image_size=16, num_classes=3)
  return tr, va


KW = dict(batch_size=8, learning_rate=3e-2, seed=1, progress=False)
MODULE = TinyCNN(num_classes=3, features=(4,))


def test_fit_refuses_other_data_lr_seed_and_overwrite_retrains(tmp_path, tiny):
  tr, va = tiny
  first = classifier.fit(MODULE, tr, va, epochs=1, workdir=str(tmp_path), **KW)
  other = synthetic.make("train", 16, image_size=16, num_classes=3, seed=5)
  for change, names in [(dict(learning_rate=1e-3), ["learning_rate"]), (dict(seed=2), ["seed"]),
                        (dict(train=other), ["train.image", "train.label"]),
                        (dict(learning_rate=1e-3, seed=2), ["learning_rate", "seed"])]:
    args = {**KW, "train": tr, **change}
    with pytest.raises(ValueError, match="trained with other settings") as err:
      classifier.fit(MODULE, args.pop("train"), va, epochs=1, workdir=str(tmp_path), **args)
    assert f"differs in {', '.join(names)}:" in str(err.value), str(err.value)
    assert str(tmp_path) in str(err.value) and "overwrite=True" in str(err.value)
  # Same settings: resumes (one more epoch, the first one kept).
  more = classifier.fit(MODULE, tr, va, epochs=2, workdir=str(tmp_path), **KW)
  assert more["history"][:1] == first["history"] and len(more["history"]) == 2
  # overwrite=True: trains anew, exactly as in a fresh folder.
  kw = dict(KW, learning_rate=1e-3)
  again = classifier.fit(MODULE, tr, va, epochs=1, workdir=str(tmp_path), overwrite=True, **kw)
  fresh = classifier.fit(MODULE, tr, va, epochs=1, **kw)
  assert again["history"] == fresh["history"]
  jax.tree.map(np.testing.assert_array_equal, again["last_variables"], fresh["last_variables"])
  assert json.loads((tmp_path / "train_fingerprint.json").read_text())["learning_rate"] == 1e-3
  assert sorted(os.listdir(tmp_path / "checkpoints" / "latest")) == ["1"]


def test_a_run_without_fingerprint_resumes_with_a_warning(tmp_path):
  _toy_run(tmp_path, epochs=1)
  os.remove(tmp_path / "train_fingerprint.json")  # as a run folder written before them
  with pytest.warns(UserWarning, match="without train_fingerprint.json"):
    res = _toy_run(tmp_path, epochs=2)
  assert [h["epoch"] for h in res.history] == [1, 2]
  assert (tmp_path / "train_fingerprint.json").is_file()


def test_digest_sees_content_shape_and_dtype():
  a = np.arange(6, dtype=np.float32)
  d = loop.digest(a)
  assert d == loop.digest(jnp.asarray(a)) and d["shape"] == [6] and d["dtype"] == "float32"
  assert loop.digest(a.reshape(2, 3))["sha256"] != d["sha256"]
  assert loop.digest(a.astype(np.float64))["sha256"] != d["sha256"]
  b = a.copy()
  b[3] += 1e-6
  assert loop.digest(b)["sha256"] != d["sha256"]
  tree = loop.digest({"p": a, "q": {"r": a}})
  assert tree["leaves"] == 2 and tree["sha256"] != loop.digest({"p": a, "q": {"s": a}})["sha256"]


# --- the lock: a second concurrent run fails at once ----------------------------------------------


HOLD = r"""
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], "train.lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"pid %d" % os.getpid())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_lock_held_by_another_process_fails_at_once(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with pytest.raises(loop.RunFolderBusy, match="in use by another run") as err:
      _toy_run(tmp_path, epochs=1)
    assert time.monotonic() - start < 10
    assert str(tmp_path) in str(err.value) and f"pid {holder.pid}" in str(err.value)
    assert not (tmp_path / "history.json").exists()  # nothing touched
  finally:
    holder.kill()
    holder.wait()
  assert len(_toy_run(tmp_path, epochs=1).history) == 1  # released with the process


def test_a_lock_held_in_this_process_fails_and_is_released_on_errors(tmp_path):
  with loop.lock(tmp_path):
    with pytest.raises(loop.RunFolderBusy, match=re.escape(str(tmp_path))):
      _toy_run(tmp_path, epochs=1)
  with pytest.raises(RuntimeError, match="step failed"):
    _toy_run(tmp_path, epochs=2, seen=[], fail_at=4)  # fails in epoch 2
  with loop.lock(tmp_path):  # released by the failed run
    pass
  assert len(_toy_run(tmp_path, epochs=2).history) == 2  # resumes after epoch 1
