"""IASSA segmentation scores and NN-Explainer metrics against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.metrics import explainer, segmentation


def test_segmentation_scores_hand_computed():
  sal = np.array([[0.0, 0.2], [0.5, 1.0]])  # min-max: same; > 0.3 -> [[F, F], [T, T]]
  gt = np.array([[False, True], [False, True]])
  s = segmentation.segmentation_scores(sal, gt, threshold=0.3)
  assert s["area"] == 2
  assert s["iou"] == pytest.approx(1 / 3)  # inter 1, union 3
  assert s["f1"] == pytest.approx(2 * 1 / (2 + 2))
  assert s["iou_pixel"] == pytest.approx(1 / 6)
  assert s["f1_pixel"] == pytest.approx(0.25)


def test_segmentation_minmax_and_constant_map():
  sal = np.array([[10.0, 12.0], [11.0, 20.0]])  # normalised: 0, .2, .1, 1
  gt = np.array([[False, False], [False, True]])
  s = segmentation.segmentation_scores(sal, gt)
  assert s["iou"] == 1.0 and s["f1"] == 1.0 and s["iou_pixel"] == 1.0
  c = segmentation.segmentation_scores(np.ones((3, 3)), np.ones((3, 3), bool))
  assert c == {"iou": 0.0, "f1": 0.0, "iou_pixel": 0.0, "f1_pixel": 0.0, "area": 0}


@pytest.mark.parametrize("kwargs,match", [
    (dict(threshold=1.5), "threshold"), (dict(gt_mask=np.ones((3, 3), bool)), "shape"),
    (dict(gt_mask=np.ones((2, 2))), "boolean"), (dict(saliency=np.full((2, 2), np.nan)), "NaN"),
])
def test_segmentation_bad_input(kwargs, match):
  args = dict(saliency=np.ones((2, 2)), gt_mask=np.ones((2, 2), bool))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    segmentation.segmentation_scores(**args)


def test_explainer_scores_hand_computed_4x4():
  m = np.array([[1.0, 0.5, 0.0, 0.0],
                [1.0, 0.5, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.25]])
  s = np.zeros((4, 4), bool)
  s[:2, :2] = True
  probs = np.array([[0.6, 0.3, 0.1]])
  present = np.array([[1, 0, 1]])
  out = explainer.explainer_scores(m[None], s[None], probs, present)
  # Acc: sum(m*s) = 1+.5+1+.5 = 3; sum((1-m)(1-s)) = 12 - 0.25 = 11.75 -> 14.75 / 16.
  assert out["acc"] == pytest.approx(14.75 / 16)
  # IoU: sum(min) = 3; sum(max) = 4 + 0.25 = 4.25.
  assert out["iou"] == pytest.approx(3 / 4.25)
  # Sal: mean(m) = 3.25 / 16; p_Y = 0.7.
  assert out["sal"] == pytest.approx(np.log(3.25 / 16) - np.log(0.7))
  # MAE: |m - s| = 1 (0.5 x2 on s) + 0.25 -> 1.25 / 16.
  assert out["mae"] == pytest.approx(1.25 / 16)


def test_sal_area_floor():
  m = np.zeros((1, 4, 4))
  out = explainer.explainer_scores(m, np.ones((1, 4, 4), bool), [[0.5, 0.5]], [[1, 0]])
  assert out["sal"] == pytest.approx(np.log(0.05) - np.log(0.5))


def test_sanity_baselines_closed_forms():
  rng = np.random.default_rng(0)
  gt = rng.random((3, 8, 8)) < 0.3
  present = np.array([[1, 0], [0, 1], [1, 1]])
  images = jnp.asarray(rng.normal(size=(3, 8, 8, 3)), jnp.float32)
  probs_fn = lambda x: jnp.tile(jnp.array([[0.25, 0.75]]), (x.shape[0], 1))  # noqa: E731
  rows = explainer.sanity_baselines(probs_fn, images, gt, present)
  mean_s = gt.mean()
  assert rows["0"]["acc"] == pytest.approx(1 - mean_s)
  assert rows["0"]["mae"] == pytest.approx(mean_s)
  assert rows["0"]["iou"] == pytest.approx(0.0)
  assert rows["1"]["acc"] == pytest.approx(mean_s)
  assert rows["1"]["iou"] == pytest.approx(mean_s)
  assert rows["0.5"]["acc"] == pytest.approx(0.5) and rows["0.5"]["mae"] == pytest.approx(0.5)
  assert rows["G.T."]["acc"] == 1.0 and rows["G.T."]["iou"] == 1.0 and rows["G.T."]["mae"] == 0
  p_y = np.array([0.25, 0.75, 1.0])
  assert rows["0.5"]["sal"] == pytest.approx(np.mean(np.log(0.5) - np.log(p_y)))
  assert rows["0"]["sal"] == pytest.approx(np.mean(np.log(0.05) - np.log(p_y)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(mask=np.full((1, 2, 2), 1.5)), r"\[0, 1\]"),
    (dict(gt_mask=np.ones((1, 3, 3), bool)), "shape"),
    (dict(probs=np.array([[2.0, 0.0]])), "probabilities"),
    (dict(present=np.array([[0, 0]])), "at least one present class"),
    (dict(present=np.array([[1, 0, 0]])), r"\[B, C\]"),
])
def test_explainer_bad_input(kwargs, match):
  args = dict(mask=np.zeros((1, 2, 2)), gt_mask=np.ones((1, 2, 2), bool),
              probs=np.array([[0.5, 0.5]]), present=np.array([[1, 0]]))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    explainer.explainer_scores(args["mask"], args["gt_mask"], args["probs"], args["present"])
