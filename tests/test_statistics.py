"""Bootstrap intervals against a brute-force NumPy loop with the same seed, sanity properties
(the interval shrinks as 1/sqrt(n), verdicts on clear cases) and bad input."""

import numpy as np
import pytest

from rise_jax.metrics import bootstrap_ci, mean_of_class_means, paired_difference, statistics as st

_rng = np.random.default_rng(7)


def loop_bootstrap(values, groups, stat, num_resamples, confidence, seed):
  """One resample at a time: draw G units with replacement, gather their items, apply stat."""
  values = np.asarray(values, np.float64)
  labels = np.arange(len(values)) if groups is None else np.asarray(groups)
  units = np.unique(labels)
  members = [np.flatnonzero(labels == u) for u in units]
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num_resamples):
    pick = rng.integers(0, len(units), size=len(units))
    idx = np.concatenate([members[g] for g in pick])
    out.append(stat(idx))
  lo, hi = np.percentile(out, [50 * (1 - confidence), 50 * (1 + confidence)])
  return stat(np.arange(len(values))), lo, hi


def class_mean(values, classes):
  """TorchRay's accuracy on a list of pairs: per-class mean, then mean over the classes seen."""
  def stat(idx):
    v, c = values[idx], classes[idx]
    return np.mean([v[c == k].mean() for k in np.unique(c)])
  return stat


@pytest.mark.parametrize("grouped", [False, True])
def test_mean_equals_loop_bootstrap(grouped):
  values = _rng.normal(size=57)
  groups = _rng.integers(0, 20, size=57) if grouped else None
  got = bootstrap_ci(values, groups=groups, num_resamples=300, confidence=0.9, seed=3)
  ref = loop_bootstrap(values, groups, lambda i: values[i].mean(), 300, 0.9, 3)
  np.testing.assert_allclose([got.mean, got.low, got.high], ref, rtol=1e-12)
  assert got.n == 57 and got.num_groups == (len(np.unique(groups)) if grouped else 57)


def test_chunked_resamples_equal_one_pass(monkeypatch):
  values = _rng.normal(size=40)
  one = bootstrap_ci(values, num_resamples=50, seed=1)
  monkeypatch.setattr(st, "_CHUNK_ELEMENTS", 7 * 40)  # 7 resamples per chunk
  np.testing.assert_allclose(bootstrap_ci(values, num_resamples=50, seed=1), one, rtol=1e-15)


def test_mean_of_class_means_equals_loop_bootstrap():
  n = 90
  hits = (_rng.random(n) < 0.6).astype(float)
  classes = _rng.integers(0, 5, size=n)
  images = np.repeat(np.arange(30), 3)  # every image holds three (image, class) pairs
  got = bootstrap_ci(hits, groups=images, statistic=mean_of_class_means(classes),
                     num_resamples=200, seed=5)
  ref = loop_bootstrap(hits, images, class_mean(hits, classes), 200, 0.95, 5)
  np.testing.assert_allclose([got.mean, got.low, got.high], ref, rtol=1e-12)


def test_paired_difference_equals_loop_bootstrap():
  a = _rng.normal(size=64)
  b = a - 0.1 + 0.3 * _rng.normal(size=64)
  groups = np.arange(64) // 4
  got = paired_difference(a, b, groups=groups, num_resamples=250, seed=2)
  d = a - b
  ref = loop_bootstrap(d, groups, lambda i: d[i].mean(), 250, 0.95, 2)
  np.testing.assert_allclose([got.mean_difference, got.low, got.high], ref, rtol=1e-12)
  assert (got.num_pairs, got.num_groups) == (64, 16)
  # A statistic linear in the values: the difference of the two per-class accuracies.
  classes = np.arange(64) % 3
  stat = mean_of_class_means(classes)
  diff = paired_difference(a, b, statistic=stat, num_resamples=10).mean_difference
  one = np.ones((1, 64))
  np.testing.assert_allclose(diff, stat(a, one)[0] - stat(b, one)[0], rtol=1e-12)


def test_interval_shrinks_as_one_over_sqrt_n():
  widths = []
  for n in (400, 1600):
    r = bootstrap_ci(np.random.default_rng(n).normal(size=n), num_resamples=2000)
    widths.append(r.high - r.low)
    assert r.low < r.mean < r.high
  assert 1.7 < widths[0] / widths[1] < 2.3  # sqrt(1600 / 400) = 2
  np.testing.assert_allclose(widths[1], 2 * 1.96 / np.sqrt(1600), rtol=0.15)


def test_verdicts_on_clear_cases():
  base = _rng.normal(size=200)
  noise = 0.1 * _rng.normal(size=200)
  assert paired_difference(base + 1 + noise, base).verdict == "holds"
  assert paired_difference(base - 1 + noise, base).verdict == "reversed"
  assert paired_difference(base + noise, base).verdict == "not resolved"
  assert paired_difference(base - 1 + noise, base, direction="less").verdict == "holds"
  assert paired_difference(base + 1 + noise, base, direction="less").verdict == "reversed"
  assert st.verdict(-0.1, 0.2, "greater") == "not resolved"


@pytest.mark.parametrize("call, match", [
    (lambda: bootstrap_ci([]), "values must be a non-empty 1-D"),
    (lambda: bootstrap_ci([[1.0, 2.0]]), r"non-empty 1-D array of numbers, got shape \[1, 2\]"),
    (lambda: bootstrap_ci([1.0, np.nan, 2.0]), r"values contains NaN or inf at positions \[1\]"),
    (lambda: bootstrap_ci(["a", "b"]), "values must hold real numbers"),
    (lambda: bootstrap_ci([1.0, 2.0], groups=[0]), r"one group label per value \(2\)"),
    (lambda: bootstrap_ci([1.0, 2.0], num_resamples=0), "num_resamples must be an integer >= 1"),
    (lambda: bootstrap_ci([1.0, 2.0], confidence=95), r"confidence must be a number in \(0, 1\)"),
    (lambda: bootstrap_ci([1.0, 2.0], seed=-1), "seed must be an integer >= 0"),
    (lambda: paired_difference([1.0, 2.0], [1.0]), "a and b must be paired"),
    (lambda: paired_difference([1.0], [np.inf]), "b contains NaN or inf"),
    (lambda: paired_difference([], []), "a must be a non-empty"),
    (lambda: paired_difference([1.0], [0.0], direction="two-sided"),
     r"direction must be one of \['greater', 'less'\], got 'two-sided'"),
    (lambda: mean_of_class_means([0.5, 1.0]), "class_ids must be a non-empty 1-D integer"),
    (lambda: bootstrap_ci([1.0, 2.0], statistic=mean_of_class_means([0, 1, 2])),
     "built for 3 class ids"),
])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()
