"""IASSA against NumPy references (brute-force windows, the paper's loop, the authors' released
loop), its invariants (row-stochastic attention, a HAR that never grows, early stop, one
compilation) and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax import substrates
from rise_jax.iassa import attention, iassa, iassa_batch, stage_feature_fn, window_schedule

H = W = 32
_rng = np.random.default_rng(0)
_yy, _xx = np.mgrid[:H, :W]
OBJECT = ((_yy - 12) ** 2 + (_xx - 19) ** 2 < 45).astype(np.float32)
PATTERN = jnp.asarray(OBJECT[..., None] * _rng.normal(size=(H, W, 3)), jnp.float32)
IMAGE = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)
IMAGE2 = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)
PROJ = [jnp.asarray(_rng.normal(size=(3, c)), jnp.float32) for c in (4, 6, 8, 5)]
KW = dict(window=9, stride=4, batch_size=16)


def box(x):
  """A smooth 3-class black box that looks at the object's pixels."""
  a = jnp.sum(x * PATTERN * IMAGE, axis=(1, 2, 3)) / 20
  b = jnp.sum(x * PATTERN, axis=(1, 2, 3)) / 20
  return jax.nn.softmax(jnp.stack([a, b, -a], axis=1), axis=1)


def features(x):
  """Four 'stages': average pools at strides 4, 8, 16, 32 through fixed projections."""
  out = []
  for proj, s in zip(PROJ, (4, 8, 16, 32)):
    pooled = x.reshape(x.shape[0], H // s, s, W // s, s, 3).mean(axis=(2, 4))
    out.append(jnp.tanh(pooled @ proj))
  return out


def np_minmax(x):
  """Min-max normalisation over the whole image (SPEC §5)."""
  return (x - x.min()) / (x.max() - x.min())


def np_windows(window, stride):
  """Every window of the iteration as an explicit 0/1 array (row-major)."""
  def starts(n):
    s = list(range(0, n - window + 1, stride))
    return s + [n - window] if s[-1] != n - window else s
  out = []
  for y in starts(H):
    for x in starts(W):
      m = np.zeros((H, W))
      m[y:y + window, x:x + window] = 1
      out.append(m)
  return np.stack(out)


def np_occlusion_windows(window, stride):
  """``BlackBoxScore.generate_b_masks`` of the authors' code: 0 inside, 1 outside, windows at
  ``arange(stride - window, size, stride)`` clipped to the image (row-major)."""
  out = []
  for r in range(stride - window, H, stride):
    for c in range(stride - window, W, stride):
      m = np.ones((H, W))
      m[max(r, 0):min(r + window, H), max(c, 0):min(c + window, W)] = 0
      out.append(m)
  return np.stack(out)


def np_scores(model_fn, image, masks, class_id, substrate="zeros"):
  """f(x_i)_c for x_i = M_i * x + (1 - M_i) * substrate, and f(substrate)_c."""
  x = np.asarray(image, np.float64)
  sub = np.broadcast_to(np.asarray(substrates.build(substrate, jnp.asarray(image)), np.float64),
                        x.shape)
  xs = masks[..., None] * x + (1 - masks[..., None]) * sub
  scores = np.asarray(model_fn(jnp.asarray(xs, jnp.float32)), np.float64)[:, class_id]
  base = float(np.asarray(model_fn(jnp.asarray(sub, jnp.float32)[None]))[0, class_id])
  return scores, base


def np_estimate(model_fn, image, masks, class_id, substrate="zeros"):
  """Paper eq. 5 with the per-pixel empirical E[M] on scores relative to the fully masked image
  (SPEC §5): ``sum_i (f(x_i) - f(s)) M_i / sum_i M_i``, 0 where no mask covers the pixel."""
  scores, base = np_scores(model_fn, image, masks, class_id, substrate)
  num = np.einsum("n,nhw->hw", scores - base, masks)
  den = masks.sum(0)
  return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def np_attention(feats, scale):
  h, w = feats[0].shape[1:3]
  phi = np.concatenate(
      [np.asarray(jax.image.resize(f[0], (h, w, f.shape[-1]), "linear"), np.float64)
       for f in feats], axis=-1).reshape(h * w, -1)
  logits = phi @ phi.T / (math.sqrt(phi.shape[1]) if scale == "sqrt" else 1.0)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def np_spread(attn, sal, fh, fw):
  """``up(A @ down(S))`` with linear resizes between the image and the attention grid."""
  small = np.asarray(jax.image.resize(jnp.asarray(sal, jnp.float32), (fh, fw), "linear"),
                     np.float64)
  return np.asarray(jax.image.resize(
      jnp.asarray((attn @ small.reshape(-1)).reshape(fh, fw), jnp.float32), (H, W), "linear"),
      np.float64)


def reference(model_fn, feature_fn, image, class_id, *, window, stride, window_step=1.5,
              stride_step=0.2, beta=0.5, threshold=0.3, max_iters=4, tol=None, mix="paper",
              attention_scale="sqrt"):
  """The paper's loop (eq. 5-8) with SPEC §5's choices, in plain NumPy.

  ``M_k = windows * HAR(S'_{k-1})`` (eq. 7, ``HAR = S' > T``, eq. 8, kept inside the previous
  region: DECISIONS "the HAR only shrinks"); ``S_k`` = eq. 5 with the empirical ``E[M]`` on
  scores minus the score of the substrate image, 0 outside the region; ``S'_k = beta S_k +
  (beta - 1) A S_k`` (eq. 6; ``mix="code"``: ``+ (1 - beta)``); both min-max normalised over the
  whole image. Every window is evaluated (no skipping).
  """
  feats = feature_fn(image[None])
  attn = np_attention(feats, attention_scale)
  fh, fw = feats[0].shape[1:3]
  c = beta - 1 if mix == "paper" else 1 - beta
  region = np.ones((H, W), bool)
  prev, maps, counts = None, [], []
  for k in range(max_iters + 1):
    wk = max(math.floor(window - window_step * k + 0.5), min(3, window))
    sk = max(math.floor(stride - stride_step * k + 0.5), 1)
    masks = np_windows(wk, sk) * region
    counts.append(int(masks.reshape(len(masks), -1).any(1).sum()))
    raw = np_estimate(model_fn, image, masks, class_id)
    sn = np_minmax(raw)
    sp = np_minmax(beta * sn + c * np_spread(attn, sn, fh, fw))
    maps.append(sp)
    region = region & (sp > threshold)
    if tol is not None and prev is not None and np.mean(np.abs(sn - prev)) < tol:
      break
    prev = sn
  return maps, raw, counts


def reference_released_code(model_fn, feature_fn, image, class_id, *, window, stride,
                            window_step=1.5, stride_step=0.2, beta=0.5, threshold=0.3,
                            max_iters=4, mix="code", attention_scale="sqrt"):
  """The authors' released loop (IASSA-Saliency: ``BlackBoxScore``, ``LRPFSA.forward``,
  ``find_intersection``), with this library's schedule, resizes and attention.

  Occlusion masks ``1 - window``, kept when ``max(mask * HAR) > 0``; ``sal = sum_i p_i m_i / N``
  on raw scores; ``adj = beta sal + (1 - beta) A sal``; ``HAR = adj > T (max - min) + min``.
  """
  feats = feature_fn(image[None])
  attn = np_attention(feats, attention_scale)
  fh, fw = feats[0].shape[1:3]
  c = beta - 1 if mix == "paper" else 1 - beta
  har = np.ones((H, W), bool)
  maps, hars, counts = [], [], []
  for k in range(max_iters + 1):
    wk = max(math.floor(window - window_step * k + 0.5), min(3, window))
    sk = max(math.floor(stride - stride_step * k + 0.5), 1)
    occ = np_occlusion_windows(wk, sk)
    occ = occ[(occ * har).reshape(len(occ), -1).max(1) > 0]
    counts.append(len(occ))
    p, _ = np_scores(model_fn, image, occ, class_id)
    sal = np.einsum("n,nhw->hw", p, occ) / len(occ)
    adj = beta * sal + c * np_spread(attn, sal, fh, fw)
    har = adj > threshold * (adj.max() - adj.min()) + adj.min()
    maps.append(np_minmax(adj))
    hars.append(har)
  return maps, sal, counts, hars


def test_schedule_rounds_half_up_and_floors():
  sched = window_schedule(45, 8, 1.5, 0.2, 25)
  assert sched[0] == (45, 8) and sched[1] == (44, 8) and sched[3] == (41, 7)
  assert sched[25] == (8, 3)
  assert window_schedule(45, 8, 1.5, 0.2, 40)[40] == (3, 1)
  assert window_schedule(2, 1, 1.5, 0.2, 3) == ((2, 1),) * 4


def test_iteration_zero_equals_brute_force_windows():
  # substrate 0.5 here; the reference-loop tests below cover the default zeros.
  res = iassa(box, features, IMAGE, class_id=0, max_iters=0, substrate=0.5, **KW)
  masks = np_windows(9, 4)
  raw = np_estimate(box, IMAGE, masks, 0, 0.5)
  assert res.estimate.shape == (H, W) and int(res.iterations) == 0
  assert res.windows.tolist() == [len(masks)]
  np.testing.assert_allclose(res.estimate, raw, rtol=1e-5, atol=1e-7)


def test_attention_is_row_stochastic_and_matches_numpy():
  feats = features(IMAGE[None])
  for scale in ("sqrt", None):
    a = np.asarray(attention(feats, scale))
    assert a.shape == (64, 64)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, np_attention(feats, scale), atol=1e-5)


@pytest.mark.parametrize("mix", ["paper", "code"])
def test_equals_numpy_reference_loop(mix):
  res = iassa(box, features, IMAGE, class_id=0, max_iters=4, mix=mix, record=range(5), **KW)
  maps, raw, counts = reference(box, features, IMAGE, 0, window=9, stride=4, mix=mix)
  assert int(res.iterations) == 4
  assert res.windows.tolist() == counts
  assert counts[-1] < len(np_windows(3, 3))  # the HAR really restricted the windows
  np.testing.assert_allclose(res.records, np.stack(maps), atol=1e-5)
  np.testing.assert_allclose(res.saliency, maps[-1], atol=1e-5)
  np.testing.assert_allclose(res.estimate, raw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mix", ["code"])  # region is orthogonal to mix; "code" is the authors'
def test_released_code_region_equals_numpy_transcription(mix):
  res = iassa(box, features, IMAGE, class_id=0, max_iters=4, mix=mix, region="code",
              record=range(5), **KW)
  maps, sal, counts, hars = reference_released_code(box, features, IMAGE, 0, window=9,
                                                    stride=4, mix=mix)
  assert res.windows.tolist() == counts
  # The occlusion estimate is a small contrast on a large mean (every score, divided by N):
  # float32 sums carry ~1e-4 of its range after min-max.
  np.testing.assert_allclose(res.records, np.stack(maps), atol=3e-4)
  np.testing.assert_allclose(res.estimate, sal, rtol=1e-5, atol=1e-6)
  near = np.abs(np.stack(maps) - 0.3) < 3e-4
  np.testing.assert_array_equal((np.asarray(res.records) > 0.3)[~near], np.stack(hars)[~near])


def test_har_never_grows_and_estimate_lives_inside_it():
  res = iassa(box, features, IMAGE2, class_id=1, max_iters=4, mix="code", record=range(5),
              **KW)
  hars = [np.asarray(res.records[0]) > 0.3]
  for k in range(1, 5):  # HAR_k = HAR_{k-1} & (norm(S'_k) > T)
    hars.append(hars[-1] & (np.asarray(res.records[k]) > 0.3))
  assert hars[-1].sum() > 0
  assert not np.asarray(res.estimate)[~hars[-2]].any()  # S_K is 0 outside HAR_{K-1}
  assert (np.asarray(res.records[-1])[~hars[-2]] < 1).all()


SCENE = jnp.asarray(np.where(OBJECT[..., None] > 0, 1.0, IMAGE), jnp.float32)


def object_logits(x):
  """The analytic scene's black box: evidence = the visible mean of the object (logits)."""
  s = 8 * jnp.sum(x[..., 0] * OBJECT, axis=(1, 2)) / OBJECT.sum() - 4
  return jnp.stack([s, -s], axis=1)


def test_har_does_not_shrink_on_the_object():
  """Whole-image normalisation (SPEC §5): the HAR converges on the object instead of being
  re-stretched and cut by 30% at every iteration (covered-only normalisation: IoU 0.22 at
  k = 10 on this scene, 30 px left of the 137-px object; docs/DECISIONS.md)."""
  res = iassa(object_logits, features, SCENE, class_id=0, max_iters=10, record=range(11), **KW)
  har = np.ones((H, W), bool)
  for rec in np.asarray(res.records):
    har &= rec > 0.3
  obj = OBJECT > 0
  assert (har & obj).sum() / (har | obj).sum() > 0.8
  assert 0.8 * obj.sum() < har.sum() < 1.2 * obj.sum()


def test_converges_early_on_a_constant_black_box():
  const = lambda x: jnp.tile(jnp.asarray([[0.25, 0.75]]), (x.shape[0], 1))
  res = iassa(const, features, IMAGE, class_id=1, max_iters=8, tol=1e-4, record=(0, 1, 5),
              **KW)
  assert int(res.iterations) == 1
  assert res.windows[2:].sum() == 0
  np.testing.assert_allclose(res.saliency, 1.0)  # flat maps normalise to 1: nothing ranks
  np.testing.assert_allclose(res.records[2], res.saliency)  # stopped early: final repeated
  np.testing.assert_allclose(res.estimate, 0.0, atol=1e-7)  # = the substrate image's score


def test_tol_stops_early_and_matches_reference():
  res = iassa(box, features, IMAGE, class_id=0, max_iters=8, tol=0.05, record=(8,), **KW)
  maps, _, _ = reference(box, features, IMAGE, 0, window=9, stride=4, max_iters=8, tol=0.05)
  assert int(res.iterations) == len(maps) - 1 < 8
  np.testing.assert_allclose(res.records[0], maps[-1], atol=1e-5)


def test_compiles_once_not_per_iteration():
  traces = []

  def counted(x):
    traces.append(1)
    return box(x)

  kw = dict(class_id=0, max_iters=5, record=(), **KW)
  first = iassa(counted, features, IMAGE, **kw)
  n_first = len(traces)
  second = iassa(counted, features, IMAGE2, **{**kw, "class_id": 2})
  assert int(first.iterations) == int(second.iterations) == 5
  assert len(traces) == n_first  # same program: no retrace for a new image or class
  assert n_first <= 3  # eval_shape check + one trace of the loop body for all 6 iterations


def test_batch_equals_single_images():
  kw = dict(max_iters=4, record=range(5), **KW)  # the settings of the reference-loop test
  res = iassa_batch(box, features, jnp.stack([IMAGE, IMAGE2]), class_id=[0, 1], **kw)
  assert res.saliency.shape == (2, H, W) and res.records.shape == (2, 5, H, W)
  for b, (im, c) in enumerate([(IMAGE, 0), (IMAGE2, 1)]):
    one = iassa(box, features, im, class_id=c, **kw)
    np.testing.assert_allclose(res.saliency[b], one.saliency, atol=1e-6)
    assert res.windows[b].tolist() == one.windows.tolist()


def test_default_class_is_top1_and_key_is_accepted():
  res = iassa(box, features, IMAGE, jax.random.key(0), max_iters=0, substrate=0.5, **KW)
  assert int(res.class_id) == int(jnp.argmax(box(IMAGE[None])[0]))


def test_nan_scores_name_iteration_and_window():
  def nan_box(x):
    s = box(x)
    seen = (x[:, 0, 0, 0] != 0) & (x[:, 31, 31, 0] == 0)  # true for window 0 only
    return jnp.where(seen[:, None], jnp.nan, s)

  with pytest.raises(FloatingPointError, match=r"iteration 0 .*window 0 of 49"):
    iassa(nan_box, features, IMAGE, class_id=0, max_iters=2, **KW)


def test_stage_feature_fn_on_a_library_resnet():
  from rise_jax.models.resnet import ResNet
  net = ResNet(stage_sizes=(1, 1, 1, 1), block="basic", num_classes=3, width=4, stem="small")
  variables = jax.eval_shape(net.init, jax.random.key(0), IMAGE[None])  # abstract: fast
  feats = jax.eval_shape(lambda v, x: stage_feature_fn(net.apply, v)(x), variables, IMAGE[None])
  assert [f.shape for f in feats] == [(1, 32, 32, 4), (1, 16, 16, 8), (1, 8, 8, 16),
                                      (1, 4, 4, 32)]
  with pytest.raises(ValueError, match="not among the model's features"):
    jax.eval_shape(lambda v, x: stage_feature_fn(net.apply, v, ("stage9",))(x), variables,
                   IMAGE[None])


def _bad_feats_batch(x):
  return [jnp.zeros((1, 8, 8, 2)), jnp.zeros((2, 4, 4, 2))]


@pytest.mark.parametrize("kwargs, match", [
    (dict(window=0), "window must be an integer >= 1"),
    (dict(window=33), r"window must be in \[1, 32\]"),
    (dict(stride=0), "stride must be an integer >= 1"),
    (dict(stride=40), r"stride must be in \[1, 32\]"),
    (dict(beta=1.5), r"beta must be a number in \[0.0, 1.0\]"),
    (dict(beta=-0.1), "beta"),
    (dict(threshold=0.0), r"threshold must be a number in \(0.0, 1.0\)"),
    (dict(threshold=1.0), "threshold"),
    (dict(mix="sum"), r"mix must be one of \['paper', 'code'\]"),
    (dict(region="har"), r"region must be one of \['paper', 'code'\]"),
    (dict(attention_scale="log"), "attention_scale must be one of"),
    (dict(class_id=3), r"class_id must be in \[0, 2\]"),
    (dict(class_id=-1), "class_id"),
    (dict(class_id=1.0), "class_id must be None or an int"),
    (dict(max_iters=-1), "max_iters must be an integer >= 0"),
    (dict(tol=0.0), "tol"),
    (dict(window_step=-1.0), "window_step"),
    (dict(stride_step=float("nan")), "stride_step"),
    (dict(record=(5, -1)), "record must be a sequence"),
    (dict(batch_size=0), "batch_size"),
    (dict(substrate="noise"), "substrate"),
    (dict(feature_fn=_bad_feats_batch), "feature map 1 has batch size 2"),
    (dict(feature_fn=lambda x: {"stage1": x}), "non-empty list of feature maps"),
    (dict(feature_fn=lambda x: [x[0]]), r"shape \[1, h, w, C\]"),
    (dict(image=IMAGE[None]), r"image must have shape \[H, W, C\]"),
    (dict(key="seed"), "key must be a PRNG key"),
])
def test_bad_input_raises(kwargs, match):
  args = dict(model_fn=box, feature_fn=features, image=IMAGE, key=None, class_id=0, **KW)
  args.update(kwargs)
  with pytest.raises((ValueError, TypeError), match=match):
    iassa(args.pop("model_fn"), args.pop("feature_fn"), args.pop("image"), args.pop("key"),
          **args)


def test_bad_black_box_and_batch_class_ids_raise():
  with pytest.raises(ValueError, match="must return one array of scores"):
    iassa(lambda x: (box(x), None), features, IMAGE, class_id=0, **KW)
  with pytest.raises(ValueError, match="sequence of 2 ints"):
    iassa_batch(box, features, jnp.stack([IMAGE, IMAGE2]), class_id=[0, 1, 2], **KW)
  with pytest.raises(ValueError, match=r"feature map 0 must have shape \[1, h, w, C\]"):
    attention([jnp.zeros((8, 8, 3))])
