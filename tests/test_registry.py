"""Model registry: load from a checkpoint, preprocessing, black boxes and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.models import registry
from rise_jax.train import checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
  path = tmp_path_factory.mktemp("w") / "tiny"
  module = registry.build("tiny")
  checkpoint.save_variables(path, module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  return path


def test_load_predict_and_black_boxes(tiny_ckpt):
  clf = registry.load("tiny", tiny_ckpt)
  photos = np.random.default_rng(0).integers(0, 256, (2, 80, 100, 3), dtype=np.uint8)
  probs = clf.predict(photos)
  assert probs.shape == (2, 10)
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
  x = np.stack([clf.preprocess(p) for p in photos])
  logits = clf.black_box("logits")(x)
  np.testing.assert_allclose(clf.black_box("softmax")(x), jax.nn.softmax(logits), rtol=1e-5)
  np.testing.assert_allclose(clf.black_box("sigmoid")(x), jax.nn.sigmoid(logits), rtol=1e-5)
  assert clf.black_box("softmax") is clf.black_box("softmax")  # cached: no recompiles


def test_preprocess_resize_crop_normalise():
  s = registry.Spec("x:y", input_size=4, resize=4, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
  photo = np.full((8, 12, 3), 50, np.uint8)  # shorter side 8 -> 4x6, centre crop 4x4
  out = registry.preprocess(photo, s)
  assert out.shape == (4, 4, 3)
  np.testing.assert_allclose(out[0, 0], [20.0, 7.5, 4.0], rtol=1e-5)


def test_bad_input(tiny_ckpt, tmp_path):
  with pytest.raises(ValueError, match="unknown architecture 'vgg99'"):
    registry.load("vgg99")
  with pytest.raises(FileNotFoundError, match="convert_weights"):
    registry.load("resnet50", tmp_path / "missing")
  with pytest.raises(ValueError, match="does not match the module"):
    registry.load("tiny", tiny_ckpt, num_classes=7)
  clf = registry.load("tiny", tiny_ckpt)
  with pytest.raises(ValueError, match="output must be"):
    clf.black_box("probits")
  with pytest.raises(ValueError, match="RGB"):
    clf.preprocess(np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="uint8"):
    clf.preprocess(np.zeros((8, 8, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[B, 64, 64, 3\]"):
    clf.predict(np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[B, 64, 64, 3\]"):
    clf.predict(np.zeros((2, 64, 64, 1), np.float32))
