"""Issue 19: no bad input passes silently through the public API.

One test per item of the issue (parametrised where natural). Images are 8x8, mask counts a few,
and the black boxes are shared module-level functions so that compiled loops are reused.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax import baselines
from rise_jax.data import coco, imagenet, voc
from rise_jax.explainer import train as explainer_train
from rise_jax.metrics import causal, pointing
from rise_jax.models import registry
from rise_jax.train import checkpoint

NAN, INF = float("nan"), float("inf")
S = 8
_RNG = np.random.default_rng(19)
IMAGE = _RNG.uniform(-1.0, 1.0, size=(S, S, 3)).astype(np.float32)
MASKS = _RNG.uniform(size=(4, S, S)).astype(np.float32)
SAL = _RNG.normal(size=(S, S)).astype(np.float32)
_KW = dict(num_masks=4, grid_size=2, batch_size=4)


def _prob_box(images):
  """Two-class softmax of the top-half and bottom-half means."""
  a = images[:, :S // 2].mean(axis=(1, 2, 3))
  b = images[:, S // 2:].mean(axis=(1, 2, 3))
  return jax.nn.softmax(4.0 * jnp.stack([a, b], axis=-1), axis=-1)


def _seg_box(images):
  s = jax.nn.sigmoid(4.0 * images.mean(axis=-1))
  return jnp.stack([s, 1.0 - s], axis=-1)


def _features(x):
  return [jnp.tanh(jax.image.resize(x, (1, 4, 4, 3), "linear"))]


def _captioner(images, tokens):
  """Word probabilities in (0, 1): a sigmoid of the image mean, one per token."""
  p = jax.nn.sigmoid(images.mean(axis=(1, 2, 3)))
  return jnp.broadcast_to(p[:, None], (images.shape[0], tokens.shape[0]))


def _nan_on_unmasked(images):
  """Finite scores on masked images, NaN on the unmasked IMAGE (its exact pixel values)."""
  unmasked = jnp.all(images == jnp.asarray(IMAGE)[None], axis=(1, 2, 3))
  return jnp.where(unmasked[:, None], jnp.nan, _prob_box(images))


def _fixed4(images):
  """A black box that only works on batches of exactly 4 (a reshape, as an exported model)."""
  return _prob_box(images.reshape(4, S, S, 3))


def _fixed4_seg(images):
  return _seg_box(images.reshape(4, S, S, 3))


def _fixed4_captioner(images, tokens):
  return _captioner(images.reshape(-1, S, S, 3), tokens)


# --------------------------------------------------------------------------- silently wrong


_BAD_MASKS = {
    "above_one": MASKS * 255.0,
    "negative": MASKS - 1.0,
    "nan": np.where(MASKS > 0.5, NAN, MASKS).astype(np.float32),
    "inf": np.where(MASKS > 0.5, INF, MASKS).astype(np.float32),
    "uint8_255": np.full((4, S, S), 255, np.uint8),
    "empty": MASKS[:0],
}


@pytest.mark.parametrize("where", ["rise", "segmentation_rise", "save_masks", "load_masks"])
@pytest.mark.parametrize("kind", sorted(_BAD_MASKS))
def test_mask_sets_outside_unit_interval_nan_or_empty_are_refused(where, kind, tmp_path):
  """Masks above 1, negative, NaN, inf, uint8 0..255 or none at all: a ValueError naming
  ``masks`` (or the file), instead of maps far outside what the estimator can produce."""
  masks = _BAD_MASKS[kind]
  path = str(tmp_path / "m.npy")
  if where == "rise":
    call = lambda: rise_jax.rise(_prob_box, IMAGE, 0, masks=masks, batch_size=4)
  elif where == "segmentation_rise":
    call = lambda: rise_jax.segmentation_rise(_seg_box, IMAGE, 0, target_class=0, masks=masks,
                                              region=np.ones((S, S), bool), batch_size=4)
  elif where == "save_masks":
    call = lambda: rise_jax.save_masks(path, masks)
  else:
    np.save(path, masks)
    call = lambda: rise_jax.load_masks(path)
  with pytest.raises(ValueError, match="masks"):
    call()
  if where == "save_masks":
    assert not os.path.exists(path)


_NAN_IMAGE = np.where(np.arange(S * S * 3).reshape(S, S, 3) == 5, NAN, IMAGE).astype(np.float32)
_INF_IMAGE = np.where(np.arange(S * S * 3).reshape(S, S, 3) == 7, -INF, IMAGE).astype(np.float32)
_METHODS = {
    "rise": lambda x: rise_jax.rise(_prob_box, x, 0, classes=1, **_KW),
    "segmentation_rise": lambda x: rise_jax.segmentation_rise(_seg_box, x, 0, target_class=0,
                                                              **_KW),
    "caption_rise": lambda x: rise_jax.caption_rise(_captioner, x, [1, 2], 0, **_KW),
    "iassa": lambda x: rise_jax.iassa(_prob_box, _features, x, window=3, stride=2, max_iters=1),
    "occlusion": lambda x: baselines.occlusion(_prob_box, x, window=3, stride=2),
    "gradcam": lambda x: baselines.gradcam(lambda *a, **k: None, {}, x),
    "centre_gaussian": lambda x: baselines.centre_gaussian(x),
    "deletion": lambda x: causal.deletion(_prob_box, x, SAL, 0, step=16),
    "insertion": lambda x: causal.insertion(_prob_box, x, SAL, 0, step=16),
    "explain": lambda x: explainer_train.explain(None, {"params": {}}, x[None]),
}


@pytest.mark.parametrize("image", ["nan", "inf"])
@pytest.mark.parametrize("method", sorted(_METHODS))
def test_non_finite_images_are_refused_up_front(method, image):
  """NaN/inf pixels are refused before any model call, naming the image, by every method and
  metric (not reported later as a black-box failure, nor turned into NaN maps)."""
  x = _NAN_IMAGE if image == "nan" else _INF_IMAGE
  with pytest.raises(ValueError, match=r"image.* (must be finite|NaN or inf)"):
    _METHODS[method](x)


def test_non_finite_scores_on_the_unmasked_image_are_refused():
  """A finite image whose unmasked scores are NaN: ``rise(classes=k)`` and
  ``iassa(class_id=None)`` no longer pick class 0 from NaN, occlusion no longer returns NaN
  maps: each raises FloatingPointError naming the unmasked image."""
  with pytest.raises(FloatingPointError, match="model_fn returned NaN.*unmasked image"):
    rise_jax.rise(_nan_on_unmasked, IMAGE, 0, classes=1, **_KW)
  with pytest.raises(FloatingPointError, match="model_fn returned NaN.*unmasked image"):
    rise_jax.iassa(_nan_on_unmasked, _features, IMAGE, window=3, stride=2, max_iters=0)
  with pytest.raises(FloatingPointError, match="model_fn returned NaN.*unoccluded image"):
    baselines.occlusion(_nan_on_unmasked, IMAGE, window=3, stride=2)


@pytest.fixture(scope="module")
def tiny_explainer():
  import flax.linen as nn

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      return nn.Conv(2, (3, 3))(x), {}

  module = Tiny()
  return module, module.init(jax.random.key(0), jnp.zeros((1, S, S, 3)))


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.int32])
def test_explain_refuses_unnormalised_integer_images(tiny_explainer, dtype):
  """uint8 / bool / int photos (0..255) would saturate the masks: a TypeError naming images."""
  module, variables = tiny_explainer
  x = np.full((1, S, S, 3), 255).astype(dtype)
  with pytest.raises(TypeError, match="images must be floating point"):
    explainer_train.explain(module, variables, x)


def test_classifier_predict_refuses_nan_images():
  """``Classifier.predict`` on an all-NaN image raised nothing and returned uniform
  probabilities; now a ValueError naming images."""
  from rise_jax.models.tiny import TinyCNN
  clf = registry.Classifier(name="tiny", module=TinyCNN(num_classes=10), variables={},
                            spec=registry.spec("tiny"))
  size = registry.spec("tiny").input_size
  with pytest.raises(ValueError, match="images must be finite"):
    clf.predict(np.full((1, size, size, 3), NAN, np.float32))
  with pytest.raises(TypeError, match="images must be"):
    clf.predict(np.zeros((1, size, size, 3), np.int32))


_TEMPLATE = {"params": {"w": np.ones((2, 3), np.float32), "b": np.zeros((3,), np.float32)}}


@pytest.mark.parametrize("bad, message", [
    ({"w": np.ones((2, 3), np.int32)}, r"\['w'\] has dtype int32, the module expects float32"),
    ({"w": np.ones((2, 3), np.float16)}, r"\['w'\] has dtype float16"),
    ({"b": np.array([0.0, NAN, 0.0], np.float32)}, r"\['b'\] holds 1 NaN or inf"),
    ({"w": np.full((2, 3), INF, np.float32)}, r"\['w'\] holds 6 NaN or inf"),
])
def test_checkpoints_with_wrong_dtypes_or_non_finite_weights_are_refused(tmp_path, bad,
                                                                         message):
  """Right shapes but int32/float16 or NaN/inf leaves: load_variables names the leaf (and so
  does registry.load, which loads through it with the module's template)."""
  tree = {"params": {**_TEMPLATE["params"], **bad}}
  path = checkpoint.save_variables(tmp_path / "ckpt", tree)
  template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _TEMPLATE)
  with pytest.raises(ValueError, match=message):
    checkpoint.load_variables(path, template=template)
  if "NaN" in message:
    checkpoint.load_variables(path, template=template, check_finite=False)  # opt-out


def test_registry_load_refuses_float16_weights(tmp_path):
  """A tiny-CNN checkpoint cast to float16 loads no more (it predicted NaN-prone results)."""
  module = registry.build("tiny")
  variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  half = jax.tree.map(lambda a: np.asarray(a, np.float16), variables)
  checkpoint.save_variables(tmp_path / "tiny", half)
  with pytest.raises(ValueError, match="has dtype float16, the module expects float32"):
    registry.load("tiny", tmp_path / "tiny")


def _over_one_on_masked(images, tokens):
  """Probabilities on the unmasked image, 1.5 on any image with a masked (changed) pixel."""
  unmasked = jnp.all(images == jnp.asarray(IMAGE)[None], axis=(1, 2, 3))
  p = _captioner(images, tokens)
  return jnp.where(unmasked[:, None], p, 1.5)


def test_caption_rise_checks_the_probability_range_on_masked_images():
  """A captioner in [0, 1] on the unmasked image but above 1 on masked ones gave maps above 2;
  now a ValueError naming caption_model_fn and the mask."""
  with pytest.raises(ValueError, match=r"caption_model_fn must return word probabilities in "
                                       r"\[0, 1\].*masked image.*1\.5"):
    rise_jax.caption_rise(_over_one_on_masked, IMAGE, [1, 2], 0, **_KW)


def test_segmentation_rise_max_pixel_chunk_is_capped_at_the_segment():
  """A pixel_chunk of 10^7 for a 2-pixel segment no longer allocates 10^7 maps: the chunk is
  capped at the segment size and the map equals the small-chunk one."""
  region = np.zeros((S, S), bool)
  region[2, 3] = region[5, 5] = True
  kw = dict(target_class=0, region=region, merge="max", **_KW)
  small = rise_jax.segmentation_rise(_seg_box, IMAGE, 0, pixel_chunk=1, **kw)
  huge = rise_jax.segmentation_rise(_seg_box, IMAGE, 0, pixel_chunk=10**7, **kw)
  np.testing.assert_allclose(np.asarray(huge), np.asarray(small), atol=1e-6)


def test_batch_size_capped_savepath_exact_and_boxes_outside_refused(tmp_path):
  """Three silent cases: (1) batch_size above num_masks is capped (the black box sees
  ``num_masks`` images per call, same map); (2) generate_masks(savepath="m.masks") writes
  m.masks (not m.masks.npy) and load_masks("m.masks") reads it back; (3) a ground-truth box
  entirely outside the map (or of zero area) is a ValueError, not "no object"."""
  seen = []

  def box(images):
    seen.append(images.shape[0])
    return _prob_box(images)

  big = rise_jax.rise(box, IMAGE, 0, num_masks=3, grid_size=2, batch_size=10**6)
  assert set(seen) == {3}
  small = rise_jax.rise(_prob_box, IMAGE, 0, num_masks=3, grid_size=2, batch_size=3)
  np.testing.assert_allclose(np.asarray(big), np.asarray(small), atol=1e-6)

  path = str(tmp_path / "m.masks")
  masks = rise_jax.generate_masks(0, 3, S, 2, savepath=path)
  assert os.listdir(tmp_path) == ["m.masks"]
  np.testing.assert_array_equal(rise_jax.load_masks(path), np.asarray(masks))

  for gt in ([[10, 10, 12, 12]], [[-5, 0, -1, 4]], [[0, 9, 4, 20]], [[2, 2, 2, 5]]):
    with pytest.raises(ValueError, match="gt box .* covers no pixel of the 8x8 map"):
      pointing.pointing_game(SAL, np.asarray(gt))
  assert pointing.pointing_game(SAL, np.asarray([[-3, -3, 20, 20]])) == 1  # partly inside


@pytest.mark.parametrize("name", ["../outside.png", "sub/../../outside.png", "/etc/passwd"])
@pytest.mark.parametrize("dataset", ["imagenet", "coco", "voc"])
def test_dataset_file_names_must_stay_inside_the_image_folder(tmp_path, dataset, name):
  """File names from a label file, a COCO JSON or a VOC split that lead out of the folder
  (``..``, absolute paths) are refused, naming the file name and the data file."""
  (tmp_path / "outside.png").write_bytes(b"not read")
  images = tmp_path / "images"
  images.mkdir()
  if dataset == "imagenet":
    (tmp_path / "labels.txt").write_text(f"{name} 0\n")
    call = lambda: imagenet.load_folder(images, tmp_path / "labels.txt")
  elif dataset == "coco":
    data = {"images": [{"id": 1, "file_name": name, "height": 2, "width": 2}],
            "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    call = lambda: coco.load_segmentation(tmp_path / "ann.json", images)
  else:
    base = tmp_path / "VOC2007"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
      os.makedirs(base / folder)
    sample_id = name[:-4] if name.endswith(".png") else name
    (base / "ImageSets/Segmentation/val.txt").write_text(f"{sample_id}\n")
    call = lambda: voc.load_segmentation(tmp_path, "val", annotations=False)
  with pytest.raises(ValueError, match="must lie inside the folder"):
    call()


# --------------------------------------------------------------------------- unclear errors


@pytest.mark.parametrize("call, message", [
    (lambda: rise_jax.rise(_prob_box, IMAGE, 2**70, **_KW), r"key as an int seed .* 2\*\*63"),
    (lambda: rise_jax.generate_masks(-2**64, 2, S), r"key as an int seed"),
    (lambda: rise_jax.rise(_prob_box, IMAGE, 0, num_masks=2**40, grid_size=2),
     r"num_masks must be an integer >= 1 \(at most 2147483647\), got 1099511627776"),
    (lambda: rise_jax.generate_masks(0, 2**31, S), r"num_masks must be an integer >= 1"),
    (lambda: baselines.occlusion(_prob_box, IMAGE, window=3, batch_size=2**33), "batch_size"),
])
def test_python_ints_too_large_for_int32_name_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()


@pytest.mark.parametrize("content", ["npz", "text", "pickle", "empty"])
def test_load_masks_of_a_file_that_is_not_npy_names_the_path(tmp_path, content):
  """An .npz archive, a text file, a pickle or an empty file: a ValueError naming the path and
  saying a .npy of masks is expected (was a raw NumPy/zip error or an NpzFile returned)."""
  path = tmp_path / f"m.{content}"
  if content == "npz":
    with open(path, "wb") as f:
      np.savez(f, masks=MASKS)
  elif content == "text":
    np.savetxt(path, MASKS[0])
  elif content == "pickle":
    with open(path, "wb") as f:
      np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
  else:
    path.write_bytes(b"")
  with pytest.raises(ValueError, match=r"path .* must be a \.npy file of masks"):
    rise_jax.load_masks(path)


@pytest.mark.parametrize("num_classes", [0, -3, 2.0, True])
def test_registry_load_num_classes_must_be_positive(num_classes):
  with pytest.raises(ValueError, match=r"num_classes must be None .* or an integer >= 1"):
    registry.load("tiny", "/nonexistent", num_classes=num_classes)


def test_explain_variables_that_do_not_fit_name_variables(tiny_explainer):
  """Variables of another module (a missing or mis-shaped parameter) or not a variables dict:
  a ValueError naming ``variables`` instead of a raw Flax scope error."""
  module, variables = tiny_explainer
  x = np.zeros((1, S, S, 3), np.float32)
  wrong_shape = jax.tree.map(lambda a: jnp.zeros(a.shape[:-1] + (a.shape[-1] + 1,)), variables)
  for bad in (wrong_shape, {"params": {}}, {}, None, [variables]):
    with pytest.raises(ValueError, match="variables"):
      explainer_train.explain(module, bad, x)


def test_black_box_with_one_fixed_batch_size_works_everywhere():
  """The docstrings promise every black-box call gets ``batch_size`` images: the calls on the
  unmasked image (top-k classes, default segment, IASSA's top-1, occlusion's reference score,
  the captioner's unmasked probabilities) are now padded to that batch size, so a box that
  reshapes to exactly 4 images works instead of failing with a reshape error."""
  ref = rise_jax.rise(_prob_box, IMAGE, 0, classes=1, **_KW)
  np.testing.assert_allclose(rise_jax.rise(_fixed4, IMAGE, 0, classes=1, **_KW), ref, atol=1e-6)
  rise_jax.segmentation_rise(_fixed4_seg, IMAGE, 0, target_class=0, **_KW)
  res = rise_jax.iassa(_fixed4, _features, IMAGE, window=3, stride=2, max_iters=0, batch_size=4)
  assert int(res.class_id) == int(np.argmax(_prob_box(IMAGE[None])[0]))
  baselines.occlusion(_fixed4, IMAGE, window=3, stride=2, batch_size=4, classes=1)
  rise_jax.caption_rise(_fixed4_captioner, IMAGE, [1, 2], 0, **_KW)


@pytest.mark.parametrize("tol", [np.float32(0.1), np.float64(0.1), 0.1, 1])
@pytest.mark.parametrize("method", ["rise", "caption_rise"])
def test_scalar_arguments_accept_numpy_scalars_consistently(method, tol):
  """``tol=np.float32(0.1)`` was refused by rise and accepted by caption_rise; both now accept
  any finite real > 0 and refuse NaN, inf, 0 and bools, with the same message."""
  kw = dict(_KW, tol=tol, check_every=2)
  if method == "rise":
    call = lambda **k: rise_jax.rise(_prob_box, IMAGE, 0, **{**kw, **k})
  else:
    call = lambda **k: rise_jax.caption_rise(_captioner, IMAGE, [1, 2], 0, **{**kw, **k})
  assert np.isfinite(np.asarray(call())).all()
  for bad in (np.float32("nan"), INF, 0.0, -1, True, "0.1"):
    with pytest.raises(ValueError, match="tol must be None or a finite number > 0"):
      call(tol=bad)
