"""Tests for rise_jax.viz."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from rise_jax import viz


def _image(h=12, w=10, seed=0):
  return np.random.default_rng(seed).normal(3.0, 2.0, (h, w, 3)).astype(np.float32)


def test_overlay_alpha0_is_scaled_image():
  image = _image()
  out = viz.overlay(image, np.random.default_rng(1).random((12, 10)), alpha=0.0)
  expected = np.round(255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
  assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
  np.testing.assert_array_equal(out, expected)
  assert out.min() == 0 and out.max() == 255


def test_overlay_alpha1_is_colormap():
  sal = np.zeros((4, 5), np.float32)
  sal[1, 2] = 7.0  # the maximum -> top of the colormap, everything else -> bottom
  out = viz.overlay(_image(4, 5), sal, alpha=1.0, cmap="gray")
  assert out[1, 2].tolist() == [255, 255, 255]
  assert out.sum() == 3 * 255


def test_overlay_blend_value():
  image = np.zeros((2, 2, 3), np.float32)
  image[0, 0] = 1.0  # display: pixel (0, 0) = 1, rest = 0
  sal = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
  out = viz.overlay(image, sal, alpha=0.25, cmap="gray")
  # (1 - a) * img + a * heat: (0,0): .75*1 + .25*0; (0,1): .75*0 + .25*1.
  assert out[0, 0].tolist() == [191, 191, 191]
  assert out[0, 1].tolist() == [64, 64, 64]
  assert out[1, 1].tolist() == [0, 0, 0]


def test_overlay_constant_inputs():
  out = viz.overlay(np.full((3, 3, 3), 5.0), np.full((3, 3), 2.0), alpha=0.5, cmap="gray")
  np.testing.assert_array_equal(out, 0)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(saliency=np.zeros((3, 3))), "saliency must have"),
    (dict(saliency=np.zeros((12, 10)), alpha=1.5), "alpha"),
    (dict(saliency=np.zeros((12, 10)), cmap="nope"), "cmap"),
  ],
)
def test_overlay_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    viz.overlay(_image(), **kwargs)


def test_overlay_bad_image():
  with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
    viz.overlay(np.zeros((4, 4)), np.zeros((4, 4)))


def test_save_overlays(tmp_path):
  maps = np.random.default_rng(0).random((3, 12, 10)).astype(np.float32)
  path = viz.save_overlays(tmp_path / "sub" / "row.png", _image(), maps, ["a", "b", "c"])
  png = mpimg.imread(path)
  assert png.shape[:2] == (viz.PANEL_PX + viz.TITLE_PX, 4 * viz.PANEL_PX)
  assert png[..., :3].std() > 0.05  # not blank


def test_save_overlays_errors(tmp_path):
  with pytest.raises(ValueError, match="one title per map"):
    viz.save_overlays(tmp_path / "x.png", _image(), np.zeros((2, 12, 10)), ["a"])
  with pytest.raises(ValueError, match="maps must have shape"):
    viz.save_overlays(tmp_path / "x.png", _image(), np.zeros((2, 5, 5)), ["a", "b"])


def test_save_curves(tmp_path):
  curves = {
    "deletion": np.linspace(1.0, 0.0, 17).astype(np.float32),
    "insertion": np.linspace(0.0, 1.0, 9).astype(np.float32) ** 2,
  }
  path = viz.save_curves(tmp_path / "curves.png", curves, "RISE")
  png = mpimg.imread(path)
  width, height = viz.CURVE_SIZE_PX
  assert png.shape[:2] == (height, width)
  assert png[..., :3].std() > 0.05


@pytest.mark.parametrize("curves", [{}, {"a": np.zeros(1)}, {"a": np.zeros((2, 2))}])
def test_save_curves_errors(tmp_path, curves):
  with pytest.raises(ValueError):
    viz.save_curves(tmp_path / "c.png", curves, "t")
