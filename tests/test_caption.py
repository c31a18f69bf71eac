"""RISE for captioning: equivalence with per-word RISE, analytic captioners, scene captions,
captioner training and checkpoints, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax.caption import caption_rise
from rise_jax.data import captions, synthetic
from rise_jax.models import captioner as captioner_lib
from rise_jax.train import captioner as train_lib

H = W = 24
V = 6
_rng = np.random.default_rng(0)
WV = jnp.asarray(_rng.normal(size=(V, H, W, 3)), jnp.float32)
TRANS = jnp.asarray(_rng.normal(size=(V, V)), jnp.float32)
IMAGE = jnp.asarray(_rng.normal(size=(H, W, 3)), jnp.float32)


def markov_captioner(images, tokens):
  """A non-linear teacher-forced "captioner": P[w_k | I, w_{k-1}] = softmax(I . W + T[w_{k-1}])."""
  s = jnp.einsum("bhwc,vhwc->bv", images, WV) / 40  # [b, V]
  prev = jnp.concatenate([jnp.zeros((1,), jnp.int32), tokens[:-1]])
  logits = s[:, None, :] + TRANS[prev][None]  # [b, T, V]
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.take_along_axis(probs, jnp.broadcast_to(tokens[None, :, None],
                                                     (images.shape[0], tokens.shape[0], 1)),
                             axis=2)[..., 0]


markov_captioner.vocab_size = V


@pytest.mark.parametrize("normalize,substrate", [("expected", "zeros"), ("empirical", "blur")])
def test_equals_per_word_rise(normalize, substrate):
  tokens = np.asarray([5, 0, 5], np.int32)  # word 5 twice, after different prefixes
  kw = dict(num_masks=130, grid_size=5, p1=0.4, batch_size=32, normalize=normalize,
            substrate=substrate)
  maps, info = caption_rise(markov_captioner, IMAGE, tokens, 11, return_info=True, **kw)
  assert maps.shape == (len(tokens), H, W) and maps.dtype == jnp.float32
  np.testing.assert_allclose(info.probs, markov_captioner(IMAGE[None], jnp.asarray(tokens))[0],
                             rtol=1e-6)
  assert info.num_masks == 130
  box = lambda x: markov_captioner(x, jnp.asarray(tokens))  # one compile for all words
  for k in range(len(tokens)):
    ref = rise_jax.rise(box, IMAGE, 11, classes=[k], **kw)  # RISE of word k alone
    np.testing.assert_allclose(maps[k], ref[0], rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
  # The same with a black box returning only word k's probability.
  last = rise_jax.rise(lambda x: box(x)[:, -1:], IMAGE, 11, **kw)[0]
  np.testing.assert_allclose(maps[-1], last, rtol=1e-5, atol=1e-5 * float(np.abs(last).max()))


def test_same_word_gives_same_map_and_batch_size_invariance():
  tokens = [1, 1, 1]
  a = caption_rise(markov_captioner, IMAGE, tokens, 3, num_masks=64, grid_size=4, batch_size=16)
  b = caption_rise(markov_captioner, IMAGE, tokens, 3, num_masks=64, grid_size=4, batch_size=64)
  np.testing.assert_allclose(a[1], a[2], rtol=1e-6)  # same word after the same prefix
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_saved_masks_and_early_stop():
  masks = rise_jax.generate_masks(5, 80, (H, W), 4)
  tokens = [0, 3]
  keyed = caption_rise(markov_captioner, IMAGE, tokens, 5, num_masks=80, grid_size=4,
                       batch_size=20)
  saved = caption_rise(markov_captioner, IMAGE, tokens, 0, masks=masks, batch_size=20)
  np.testing.assert_allclose(keyed, saved, rtol=1e-5, atol=1e-7)
  _, info = caption_rise(markov_captioner, IMAGE, tokens, 5, num_masks=4000, grid_size=4,
                         batch_size=50, tol=0.5, check_every=100, return_info=True)
  assert info.num_masks < 4000


# Regions the analytic captioner's words look at: word k is likely iff region k is visible.
S = 32
REGIONS = [(slice(2, 10), slice(2, 10)), (slice(20, 30), slice(4, 12)),
           (slice(12, 20), slice(20, 30))]


def region_captioner(images, tokens):
  """P[w | I, prefix] = sigmoid(8 * mean(I over region w) - 4): token w names region w."""
  means = jnp.stack([images[:, r, c].mean(axis=(1, 2, 3)) for r, c in REGIONS], 1)  # [b, 3]
  return jax.nn.sigmoid(8.0 * means - 4.0)[:, tokens]


region_captioner.vocab_size = len(REGIONS)


def test_analytic_captioner_maps_peak_on_their_regions():
  image = np.zeros((S, S, 3), np.float32)
  for r, c in REGIONS:
    image[r, c] = 1.0
  tokens = [2, 0, 1]
  maps = np.asarray(caption_rise(region_captioner, image, tokens, 0, num_masks=600,
                                 grid_size=6, batch_size=200))
  for k, t in enumerate(tokens):
    inside = np.zeros((S, S), bool)
    inside[REGIONS[t]] = True
    y, x = np.unravel_index(np.argmax(maps[k]), maps[k].shape)
    assert inside[y, x], (k, t, (y, x))
    assert maps[k][inside].mean() > maps[k][~inside].mean() + 0.05


# --- captions of the synthetic scenes ---------------------------------------------------------


def test_caption_of_a_constructed_scene():
  seg = np.zeros((20, 20, 6), bool)
  seg[2:6, 14:18, 0] = True  # square, right
  seg[10:14, 1:5, 1] = True  # circle, left
  seg[5:9, 8:11, 4] = True  # ring, middle
  assert captions.object_order(seg) == [1, 4, 0]
  assert captions.caption(seg) == "a circle , a ring and a square"
  assert captions.caption(seg[..., [0, 1, 2, 3, 5, 5]] & np.asarray([1, 0, 0, 0, 0, 0], bool)
                          ) == "a square"
  two = seg.copy()
  two[..., 4] = False
  assert captions.caption(two) == "a circle and a square"
  ids = captions.encode("a circle and a square", 8)
  assert ids.tolist() == [captions.BOS_ID, 3, 7, 4, 3, 6, captions.EOS_ID, captions.PAD_ID]
  assert captions.decode(ids) == ["a", "circle", "and", "a", "square"]
  assert captions.words_of(ids).tolist() == [3, 7, 4, 3, 6]
  assert [captions.noun_class(t) for t in ids] == [None, None, 1, None, None, 0, None, None]


def test_captions_match_the_scenes():
  data = captions.make("test", 25, seed=3, image_size=48)
  ref = synthetic.make("test", 25, seed=3, image_size=48)
  np.testing.assert_array_equal(data["image"], ref["image"])
  assert data["tokens"].shape == (25, captions.MAX_LEN) and data["tokens"].dtype == np.int32
  cols = np.arange(48)
  for i in range(25):
    words = data["caption"][i].split()
    nouns = [w for w in words if w in synthetic.CLASS_NAMES]
    present = np.flatnonzero(data["label"][i])
    assert sorted(synthetic.CLASS_NAMES.index(w) for w in nouns) == present.tolist()
    centres = [(data["segmentation"][i][..., synthetic.CLASS_NAMES.index(w)].sum(0) * cols).sum()
               / data["segmentation"][i][..., synthetic.CLASS_NAMES.index(w)].sum()
               for w in nouns]
    assert centres == sorted(centres)  # left to right
    assert words[0::3] == ["a"] * len(nouns)
    assert captions.decode(data["tokens"][i]) == words
  assert train_lib.shape_set_correct(data["tokens"], data["label"]).all()


def test_caption_encoding_rejects_bad_words():
  with pytest.raises(ValueError, match="not in the caption vocabulary"):
    captions.encode("a hexagon")
  with pytest.raises(ValueError, match="does not fit max_len"):
    captions.encode("a circle , a ring and a square", 8)
  with pytest.raises(ValueError, match="at least one object"):
    captions.caption(np.zeros((8, 8, 6), bool))


# --- the captioner, its training and checkpoints -----------------------------------------------

TINY = dict(features=(8, 16), embed_dim=8, hidden=32, attn_dim=16)


def test_captioner_black_box_and_greedy_shapes():
  module = captioner_lib.Captioner(**TINY)
  variables = captioner_lib.init(module, jax.random.key(0), (24, 24, 3))
  images = jnp.asarray(_rng.normal(size=(3, 24, 24, 3)), jnp.float32)
  fn = captioner_lib.caption_model_fn(module, variables)
  assert fn.vocab_size == len(captions.VOCAB)
  words = jnp.asarray([3, 7, 2], jnp.int32)
  probs = fn(images, words)
  assert probs.shape == (3, 3)
  logits = module.apply(variables, images, jnp.asarray([[1, 3, 7]] * 3))
  ref = jax.nn.softmax(logits, -1)[:, jnp.arange(3), words]
  np.testing.assert_allclose(probs, ref, rtol=1e-6)
  nxt = captioner_lib.next_word_fn(module, variables, [3, 7])(images)
  np.testing.assert_allclose(nxt[:, 2], probs[:, 2], rtol=1e-6)
  np.testing.assert_allclose(nxt.sum(-1), 1.0, rtol=1e-5)
  out = captioner_lib.greedy_decode(module, variables, images, max_len=5)
  assert out.shape == (3, 5) and (out[:, 0] == captions.BOS_ID).all()
  assert not np.isin(out[:, 1:], [captions.BOS_ID]).any()
  for row in out:  # nothing but <pad> after <eos>
    end = np.flatnonzero(row == captions.EOS_ID)
    if end.size:
      assert (row[end[0] + 1:] == captions.PAD_ID).all()
  maps = caption_rise(fn, images[0], words[:2], 0, num_masks=20, grid_size=4, batch_size=20)
  assert maps.shape == (2, 24, 24) and np.isfinite(np.asarray(maps)).all()


def test_short_training_lowers_loss_and_checkpoints(tmp_path):
  train = captions.make("train", 96, image_size=24)
  val = captions.make("val", 32, image_size=24)
  module = captioner_lib.Captioner(**TINY)
  variables0 = captioner_lib.init(module, jax.random.split(jax.random.key(0))[0], (24, 24, 3))
  loss0 = train_lib.evaluate_loss(module, variables0, val["image"], val["tokens"])[0]
  res = train_lib.fit_captioner(module, train, val, epochs=3, batch_size=32,
                                learning_rate=1e-2, workdir=str(tmp_path), progress=False)
  hist = res["history"]
  assert [h["epoch"] for h in hist] == [1, 2, 3]
  assert hist[-1]["train_loss"] < hist[0]["train_loss"]
  assert min(h["val_loss"] for h in hist) < loss0 - 0.3
  best = train_lib.evaluate_loss(module, res["variables"], val["image"], val["tokens"])[0]
  assert best == pytest.approx(min(h["val_loss"] for h in hist), rel=1e-5)
  # The saved best variables restore exactly; a finished run reloads instead of retraining.
  loaded = train_lib.load_captioner(str(tmp_path), module, (24, 24, 3))
  jax.tree.map(np.testing.assert_array_equal, loaded, res["variables"])
  again = train_lib.fit_captioner(module, train, val, epochs=3, batch_size=32,
                                  learning_rate=1e-2, workdir=str(tmp_path), progress=False)
  assert again["history"] == hist
  jax.tree.map(np.testing.assert_array_equal, again["last_variables"], res["last_variables"])
  with pytest.raises(ValueError, match="does not match"):
    train_lib.load_captioner(str(tmp_path), captioner_lib.Captioner(**{**TINY, "hidden": 8}),
                             (24, 24, 3))
  with pytest.raises(FileNotFoundError):
    train_lib.load_captioner(str(tmp_path / "none"), module, (24, 24, 3))


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
  from rise_jax.train import checkpoint

  train = captions.make("train", 64, image_size=24)
  val = captions.make("val", 16, image_size=24)
  module = captioner_lib.Captioner(**TINY)
  kw = dict(epochs=3, batch_size=32, learning_rate=1e-2, progress=False)
  full = train_lib.fit_captioner(module, train, val, **kw)
  save_epoch = checkpoint.save_epoch

  def killed_after_first_epoch(*args):
    save_epoch(*args)
    if args[2] == 1:
      raise KeyboardInterrupt("killed")

  monkeypatch.setattr(checkpoint, "save_epoch", killed_after_first_epoch)
  with pytest.raises(KeyboardInterrupt):
    train_lib.fit_captioner(module, train, val, workdir=str(tmp_path), **kw)
  monkeypatch.setattr(checkpoint, "save_epoch", save_epoch)
  resumed = train_lib.fit_captioner(module, train, val, workdir=str(tmp_path), **kw)
  assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
  jax.tree.map(np.testing.assert_array_equal, resumed["last_variables"], full["last_variables"])
  assert resumed["history"] == full["history"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens,err,match", [
    ([], ValueError, "empty"),
    ([[1, 2]], ValueError, "1-D"),
    ([1.0, 2.0], TypeError, "integer"),
    ("a circle", TypeError, "string"),
    ([1, V], ValueError, r"vocabulary \[0, 5\]"),
    ([-1, 2], ValueError, "vocabulary"),
])
def test_bad_tokens(tokens, err, match):
  with pytest.raises(err, match=match):
    caption_rise(markov_captioner, IMAGE, tokens, 0, num_masks=8, batch_size=8)


def test_vocab_size_argument():
  fn = lambda x, t: markov_captioner(x, t)  # no vocab_size attribute
  caption_rise(fn, IMAGE, [1, 5], 0, num_masks=8, batch_size=8)
  with pytest.raises(ValueError, match=r"vocabulary \[0, 3\]"):
    caption_rise(fn, IMAGE, [1, 5], 0, vocab_size=4, num_masks=8, batch_size=8)
  with pytest.raises(ValueError, match="vocab_size must be"):
    caption_rise(fn, IMAGE, [1], 0, vocab_size=0, num_masks=8, batch_size=8)


def test_bad_model_outputs():
  kw = dict(num_masks=16, batch_size=8)
  with pytest.raises(ValueError, match="one probability per token"):
    caption_rise(lambda x, t: markov_captioner(x, t)[:, :1], IMAGE, [1, 2], 0, **kw)
  with pytest.raises(ValueError, match=r"one probability per token.*float32\[2\]"):
    caption_rise(lambda x, t: markov_captioner(x, t)[:, 0], IMAGE, [1, 2], 0, **kw)
  with pytest.raises(ValueError, match="one array"):
    caption_rise(lambda x, t: (markov_captioner(x, t), x), IMAGE, [1, 2], 0, **kw)
  with pytest.raises(TypeError, match="JAX-traceable"):
    caption_rise(lambda x, t: jnp.asarray(np.asarray(x)[:, 0, 0, :2]), IMAGE, [1, 2], 0, **kw)
  with pytest.raises(ValueError, match="probabilities in"):
    caption_rise(lambda x, t: jnp.log(markov_captioner(x, t)), IMAGE, [1, 2], 0, **kw)
  with pytest.raises(FloatingPointError, match="unmasked image"):
    caption_rise(lambda x, t: markov_captioner(x, t) * jnp.nan, IMAGE, [1, 2], 0, **kw)
  # NaN only for masked images that keep little of the image: raised from the streaming loop.
  nan_some = lambda x, t: jnp.where(x.mean(axis=(1, 2, 3))[:, None] < 0.2, jnp.nan,
                                    markov_captioner(x, t))
  with pytest.raises(FloatingPointError, match="mask batch"):
    caption_rise(nan_some, IMAGE + 0.5, [1, 2], 0, **kw)
  with pytest.raises(TypeError, match="callable"):
    caption_rise("model", IMAGE, [1], 0, **kw)
  with pytest.raises(ValueError, match=r"image must have shape \[H, W, C\]"):
    caption_rise(markov_captioner, IMAGE[None], [1], 0, **kw)
  with pytest.raises(ValueError, match="num_masks"):
    caption_rise(markov_captioner, IMAGE, [1], 0, num_masks=0)
