"""Multi-label fine-tuning: mAP reference, kill/resume equivalence, head-only freezing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.tasks import classifier as classifier_task
from rise_jax.data import synthetic
from rise_jax.models.resnet import ResNet
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import classifier


def test_average_precision_hand_computed():
  # ranks: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (+): precisions at positives 1, 2/3, 3/4.
  ap = classifier.average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 1])
  assert ap == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
  assert np.isnan(classifier.average_precision([0.3, 0.2], [0, 0]))
  m, per = classifier.mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8]]),
                                             np.array([[1, 0], [0, 1]]))
  assert m == 1.0 and per.tolist() == [1.0, 1.0]


@pytest.fixture(scope="module")
def small():
  tr = synthetic.make("train", 48, image_size=32)
  va = synthetic.make("val", 16, image_size=32)
  return tr, va


def _small_resnet():
  return ResNet(stage_sizes=(1, 1, 1, 1), block="basic", num_classes=6, width=8)


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_kill_and_resume_equals_uninterrupted(tmp_path, small):
  tr, va = small
  kw = dict(batch_size=16, learning_rate=1e-2, seed=3, progress=False)
  full = classifier.fit(_small_resnet(), tr, va, epochs=2, workdir=str(tmp_path / "a"), **kw)
  classifier.fit(_small_resnet(), tr, va, epochs=1, workdir=str(tmp_path / "b"), **kw)  # "killed"
  resumed = classifier.fit(_small_resnet(), tr, va, epochs=2, workdir=str(tmp_path / "b"), **kw)
  jax.tree.map(np.testing.assert_array_equal, full["last_variables"], resumed["last_variables"])
  assert [h["epoch"] for h in resumed["history"]] == [1, 2]
  assert resumed["history"] == full["history"]
  assert resumed["best_epoch"] == full["best_epoch"]
  assert "batch_stats" in full["variables"]


def test_head_only_keeps_the_backbone(small):
  tr, va = small
  module = TinyCNN(num_classes=6, features=(4, 8))
  init = module.init(jax.random.key(0), jnp.asarray(tr["image"][:1]))
  out = classifier.fit(module, tr, va, epochs=2, batch_size=16, head_only=True,
                       init_variables=init, progress=False)
  new = out["last_variables"]["params"]
  np.testing.assert_array_equal(new["conv1"]["kernel"], init["params"]["conv1"]["kernel"])
  assert np.abs(np.asarray(new["head"]["kernel"] - init["params"]["head"]["kernel"])).max() > 0
  assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"] + 1e-3


def test_fit_bad_input(small):
  tr, va = small
  with pytest.raises(ValueError, match="batch_size"):
    classifier.fit(TinyCNN(num_classes=6), tr, va, batch_size=1000, progress=False)
  with pytest.raises(ValueError, match="no trainable"):
    classifier.fit(TinyCNN(num_classes=6), tr, va, head_only=True, head_names=("nope",),
                   batch_size=16, progress=False)
  with pytest.raises(ValueError, match="labels"):
    classifier.fit(TinyCNN(num_classes=6), tr, {"image": va["image"], "label": va["label"][:3]},
                   progress=False)


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_train_and_evaluate_quick_config(tmp_path):
  from configs import classifier as cfg_lib

  config = cfg_lib.get_config("quick")
  out = classifier_task.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= out["test_map"] <= 1.0 and len(out["per_class_ap"]) == 6
  assert (tmp_path / "results.json").exists() and (tmp_path / "history.json").exists()
  again = classifier_task.train_and_evaluate(config, str(tmp_path))  # resumes: nothing to train
  assert again["test_map"] == out["test_map"]


def test_mask_augment_keeps_objects_and_only_darkens_background():
  from rise_jax.train.classifier import mask_augment

  x = jnp.ones((64, 16, 16, 3))
  keep = jnp.zeros((64, 16, 16), bool).at[:, 4:8, 4:8].set(True)
  y = np.asarray(mask_augment(jax.random.key(0), x, keep, 0.5))
  np.testing.assert_array_equal(y[:, 4:8, 4:8], 1.0)
  assert y.min() >= 0.0 and y.max() <= 1.0
  changed = (y < 1).any(axis=(1, 2, 3))
  assert 16 < changed.sum() < 48  # about half of the images are masked
  np.testing.assert_array_equal(mask_augment(jax.random.key(0), x, keep, 0.0), x)


def test_fit_mask_prob_needs_keep_masks_of_the_right_shape():

  data = {"image": np.zeros((4, 8, 8, 3), np.float32), "label": np.eye(2, dtype=np.float32)[
      [0, 1, 0, 1]]}
  with pytest.raises(ValueError, match="needs keep_masks"):
    classifier.fit(TinyCNN(num_classes=2), data, data, epochs=1, batch_size=2, mask_prob=0.5)
  with pytest.raises(ValueError, match=r"keep_masks must have shape \[N, H, W\]"):
    classifier.fit(TinyCNN(num_classes=2), data, data, epochs=1, batch_size=2, mask_prob=0.5,
        keep_masks=np.zeros((4, 8, 8, 1), bool))
  with pytest.raises(ValueError, match="mask_prob must be in"):
    classifier.fit(TinyCNN(num_classes=2), data, data, epochs=1, batch_size=2, mask_prob=1.5)
