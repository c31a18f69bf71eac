"""Kill/resume (issue 10): SIGKILL in the middle of a checkpoint write, then resume.

Each scenario trains a tiny classifier (:func:`rise_jax.train.classifier.fit`, 5 epochs) in a
subprocess that kills itself with SIGKILL at a precise point of ``checkpoint.save_epoch`` for
epoch ``k``:

* ``latest``/``best``: inside Orbax's save of step ``k`` into ``checkpoints/latest`` or
  ``checkpoints/best``, after every file of the step is written into the temporary folder
  ``<k>.orbax-checkpoint-tmp`` (``commit_success.txt`` included) and just before the rename to
  ``<k>`` that completes it (the hook is ``orbax.checkpoint._src.path.async_path.rename``, which
  ``AtomicRenameTemporaryPath.finalize`` awaits as its last act).
* ``history``: while ``history.json`` is being written (``json.dump`` writes half the text,
  flushes and dies).

A second subprocess resumes the same run folder to the end; it must start from the last
complete epoch and end with exactly the history, best epoch and parameters of an uninterrupted
run. A last scenario damages the newest step in place (a truncated ``_METADATA``, as a
non-atomic file system may leave it), which Orbax does not mark as temporary.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from rise_jax.train import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 5
TMP = ".orbax-checkpoint-tmp"

# Seed 1 gives validation mAPs that strictly improve at epochs 1-3 and tie at 4, so epoch 2 is
# written to ``best`` and the on-disk best must stay epoch 3 (the first of the tie).
CHILD = r"""
import json, os, signal, sys, warnings

spec = json.loads(sys.argv[1])
kill = spec["kill"]  # None or [phase, epoch]

import jax
import numpy as np
from orbax.checkpoint._src.path import async_path

from rise_jax.data import synthetic
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import checkpoint, classifier


def die():
  os.kill(os.getpid(), signal.SIGKILL)


if kill and kill[0] in ("latest", "best"):
  rename = async_path.rename

  async def rename_or_die(src, dst):  # the last act of a save: "<k>.orbax-checkpoint-tmp" -> "<k>"
    if src.name == f"{kill[1]}.orbax-checkpoint-tmp" and src.parent.name == kill[0]:
      die()
    return await rename(src, dst)

  async_path.rename = rename_or_die

if kill and kill[0] == "history":
  dump = json.dump

  def dump_or_die(obj, f, **kw):
    if isinstance(obj, list) and len(obj) == kill[1]:
      text = json.dumps(obj, **kw)
      f.write(text[: len(text) // 2])
      f.flush()
      os.fsync(f.fileno())
      die()
    return dump(obj, f, **kw)

  json.dump = dump_or_die

saved = []
save_epoch = checkpoint.save_epoch


def recording_save_epoch(latest, best, epoch, *args, **kwargs):
  saved.append(epoch)
  return save_epoch(latest, best, epoch, *args, **kwargs)


checkpoint.save_epoch = recording_save_epoch

train = synthetic.make("train", 16, image_size=16, num_classes=3)
val = synthetic.make("val", 8, image_size=16, num_classes=3)
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  out = classifier.fit(TinyCNN(num_classes=3, features=(4,)), train, val, epochs=spec["epochs"],
                       batch_size=8, learning_rate=3e-2, seed=1, progress=False,
                       workdir=spec["workdir"])

arrays = {}
for name in ("variables", "last_variables"):
  for path, leaf in jax.tree_util.tree_flatten_with_path(out[name])[0]:
    arrays[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
np.savez(spec["out"] + ".npz", **arrays)
with open(spec["out"] + ".json", "w") as f:
  f.write(json.dumps({"history": out["history"], "best_epoch": out["best_epoch"], "saved": saved,
                      "warnings": [str(w.message) for w in caught]}))
"""


_ENV = {}


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  """A persistent XLA cache shared by the children: only the first one compiles."""
  _ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla_cache")),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  yield
  _ENV.clear()


def _run(workdir, out, kill=None, epochs=EPOCHS):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", **_ENV)
  spec = json.dumps({"workdir": str(workdir), "out": str(out), "kill": kill, "epochs": epochs})
  proc = subprocess.run([sys.executable, "-c", CHILD, spec], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  result = None
  if proc.returncode == 0:
    with open(f"{out}.json") as f:
      result = json.load(f)
    with np.load(f"{out}.npz") as z:
      result["arrays"] = dict(z)
  return proc, result


def _ok(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run, in a fresh folder."""
  root = tmp_path_factory.mktemp("reference")
  proc, ref = _run(root / "run", root / "out")
  _ok(proc)
  assert [h["epoch"] for h in ref["history"]] == list(range(1, EPOCHS + 1))
  assert ref["saved"] == list(range(1, EPOCHS + 1)) and ref["best_epoch"] == 3
  return ref


def _assert_same_run(got, ref):
  assert got["history"] == ref["history"]  # every epoch once, the same losses and mAPs
  assert got["best_epoch"] == ref["best_epoch"]
  assert sorted(got["arrays"]) == sorted(ref["arrays"])
  for name, value in ref["arrays"].items():
    np.testing.assert_array_equal(got["arrays"][name], value, err_msg=name)


def _parses(path):
  try:
    with open(path) as f:
      json.load(f)
  except ValueError:
    return False
  return True


def _steps(directory):
  """Step numbers of a checkpoint folder, read from the file system (opening a Manager would
  already clean up temporary folders)."""
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _leftovers(run):
  return sorted(glob.glob(os.path.join(run, "checkpoints", "*", f"*{TMP}*")))


@pytest.mark.parametrize("phase, k, resumes_after", [
    ("latest", 2, 1),   # epoch 2 never became a complete step: back to epoch 1
    ("best", 2, 2),     # latest/2 is complete, best/2 is not: from epoch 2, best rebuilt
    ("history", 2, 1),  # history.json half-written: the previous one and latest/1 hold
    ("latest", 5, 4),   # after the tie of epoch 4: the best must stay epoch 3
])
def test_sigkill_mid_checkpoint_write_resumes_exactly(tmp_path, reference, phase, k,
                                                      resumes_after):
  run = tmp_path / "run"
  proc, _ = _run(run, tmp_path / "killed", kill=[phase, k])
  assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])

  ckpts = run / "checkpoints"
  if phase in ("latest", "best"):  # killed mid-write: step k is only a temporary folder
    assert (ckpts / phase / f"{k}{TMP}" / "default" / "_METADATA").is_file()
    assert (ckpts / phase / f"{k}{TMP}" / "commit_success.txt").is_file()
    assert k not in _steps(ckpts / phase)
    assert _steps(ckpts / "latest")[-1] == resumes_after
  else:  # a half-written history file; the complete one of epoch k - 1 is intact
    partial = [p for p in glob.glob(str(run / "history.json*")) if not _parses(p)]
    assert partial, os.listdir(run)
    assert len(json.loads((run / "history.json").read_text())) == k - 1

  proc, resumed = _run(run, tmp_path / "resumed")
  _ok(proc)
  # (a) It restarted after the last complete epoch, re-running only the missing ones.
  assert resumed["saved"] == list(range(resumes_after + 1, EPOCHS + 1))
  # (b) Nothing corrupted: the run equals the uninterrupted one.
  _assert_same_run(resumed, reference)
  # (c) The partial step was cleaned up, never restored; the run folder is consistent.
  assert _leftovers(run) == []
  assert _steps(ckpts / "latest") == [EPOCHS]
  assert _steps(ckpts / "best") == [reference["best_epoch"]]
  assert json.loads((run / "history.json").read_text()) == reference["history"]


def test_damaged_latest_step_falls_back_to_a_readable_one(tmp_path, reference):
  run = tmp_path / "run"
  _ok(_run(run, tmp_path / "first", epochs=4)[0])  # latest/4, best/3
  meta = run / "checkpoints" / "latest" / "4" / "default" / "_METADATA"
  meta.write_bytes(meta.read_bytes()[:7])  # a step folder that Orbax considers complete

  proc, resumed = _run(run, tmp_path / "resumed")
  _ok(proc)
  assert any("step 4" in w and "latest" in w for w in resumed["warnings"]), resumed["warnings"]
  assert resumed["saved"] == [4, 5]  # resumed from best/3, the newest step that restores
  _assert_same_run(resumed, reference)
  assert glob.glob(str(run / "checkpoints" / "latest" / "4.set-aside-*"))  # kept, not a step
  assert _steps(run / "checkpoints" / "latest") == [EPOCHS]
  assert _steps(run / "checkpoints" / "best") == [3]


def _save_steps(directory, steps, **kw):
  with checkpoint.Manager(directory, **kw) as m:
    for s in steps:
      m.save(s, {"w": np.full(3, s, np.float32)}, metrics={"loss": float(s)})


def _damage(directory, step):
  meta = os.path.join(directory, str(step), "default", "_METADATA")
  with open(meta, "r+b") as f:
    f.truncate(7)


def test_manager_restore_skips_a_damaged_newest_step(tmp_path):
  template = {"w": np.zeros(3, np.float32)}
  _save_steps(tmp_path / "a", [1, 2, 3], max_to_keep=3)
  _damage(tmp_path / "a", 3)
  with checkpoint.Manager(tmp_path / "a", max_to_keep=3) as m:
    with pytest.warns(UserWarning, match=r"step 3"):
      got = m.restore(template)
    np.testing.assert_array_equal(got["w"], np.full(3, 2.0))
    with pytest.raises(ValueError):  # an explicit step is never replaced by another one
      m.restore(template, step=3)

  _save_steps(tmp_path / "b", [1], max_to_keep=3)
  _damage(tmp_path / "b", 1)
  with checkpoint.Manager(tmp_path / "b") as m:
    with pytest.raises(ValueError, match=r"no readable checkpoint .*step 1"):
      m.restore(template)
