"""Pointing game: tolerance edges, subsets, the centre baseline, bad input."""

import numpy as np
import pytest

from rise_jax.metrics import pointing


def _map_with_max_at(y, x, shape=(64, 64)):
  sal = np.zeros(shape, np.float32)
  sal[y, x] = 1.0
  return sal


def test_tolerance_is_inclusive():
  gt = np.zeros((64, 64), bool)
  gt[10, 10] = True
  assert pointing.pointing_game(_map_with_max_at(10, 25), gt, tolerance=15) == 1  # 15 px
  assert pointing.pointing_game(_map_with_max_at(10, 26), gt, tolerance=15) == 0  # 16 px
  assert pointing.pointing_game(_map_with_max_at(19, 22), gt, tolerance=15) == 1  # 9-12-15
  assert pointing.pointing_game(_map_with_max_at(20, 22), gt, tolerance=15) == 0  # > 15
  assert pointing.pointing_game(_map_with_max_at(10, 10), gt, tolerance=0) == 1


def test_boxes_and_empty_gt():
  sal = _map_with_max_at(30, 30)
  assert pointing.pointing_game(sal, np.array([[20, 20, 25, 25]]), tolerance=0) == 0
  assert pointing.pointing_game(sal, np.array([[20, 20, 31, 31]]), tolerance=0) == 1
  assert pointing.pointing_game(sal, [40, 30, 50, 40], tolerance=10) == 1  # 10 px above
  assert pointing.pointing_game(sal, np.zeros((64, 64), bool)) == -1


def test_ties_take_the_first_maximum():
  sal = np.ones((8, 8))
  assert pointing.max_point(sal) == (0, 0)


def at40(y, x):
  return _map_with_max_at(y, x, (40, 40))


def test_accumulator_subsets_and_centre():
  game = pointing.PointingGame(num_classes=3, tolerance=2)
  big = np.zeros((40, 40), bool)
  big[:, :25] = True  # 62% of the image: never difficult
  small = np.zeros((40, 40), bool)
  small[0:4, 0:4] = True
  assert game.update(at40(5, 5), big, 0, num_present=2) == 1
  assert game.update(at40(30, 30), small, 1, num_present=2) == 0  # difficult miss
  assert game.update(at40(1, 1), small, 1, num_present=2) == 1  # difficult hit
  assert game.update(at40(1, 1), small, 2, num_present=1) == 1  # alone: not diff.
  assert game.update(at40(1, 1), np.zeros((40, 40), bool), 2) == -1
  res = game.results()
  assert res["all"]["per_class"][:2] == [1.0, 0.5]
  assert res["all"]["mean"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
  assert res["difficult"]["count"] == 2 and res["difficult"]["mean"] == pytest.approx(0.5)
  assert np.isnan(res["difficult"]["per_class"][0])
  # Centre (19, 19): inside `big` (cols < 25), 15 px away from `small`.
  assert res["method"]["all"]["count"] == 4
  assert res["centre"]["all"]["per_class"] == [1.0, 0.0, 0.0]
  assert res["no_object"] == 1


@pytest.mark.parametrize("args,match", [
    ((np.zeros((4, 4)), np.zeros((5, 5), bool)), "shape"),
    ((np.zeros((2, 4, 4)), np.zeros((4, 4), bool)), r"\[H, W\]"),
    ((np.full((4, 4), np.nan), np.ones((4, 4), bool)), "NaN"),
    ((np.zeros((4, 4)), np.zeros((4, 4), np.int64)), "boolean mask"),
    ((np.zeros((4, 4)), np.array([[3, 3, 1, 1]])), "y1 >= y0"),
])
def test_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    pointing.pointing_game(*args)


def test_bad_accumulator_arguments():
  with pytest.raises(ValueError, match="num_classes"):
    pointing.PointingGame(0)
  with pytest.raises(ValueError, match="tolerance"):
    pointing.PointingGame(3, tolerance=-1)
  with pytest.raises(ValueError, match="class_id"):
    pointing.PointingGame(3).update(np.zeros((4, 4)), np.ones((4, 4), bool), 3)
