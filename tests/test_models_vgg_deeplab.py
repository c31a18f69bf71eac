"""Tests for the Flax VGG-16 (+BN), DeepLabV3 and the dilated ResNet (shapes via eval_shape)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.baselines import gradcam
from rise_jax.models.deeplab import DeepLabV3, DeepLabV3ResNet50
from rise_jax.models.resnet import ResNet18, ResNet50
from rise_jax.models.vgg import VGG, VGG16, VGG16BN, layer_indices

_TINY_VGG = (8, "M", 8, "M", 16, "M", 16, "M", 16, "M")


def _abstract_variables(model, size: int | tuple[int, int] = 64) -> dict:
  h, w = (size, size) if isinstance(size, int) else size
  x = jnp.zeros((1, h, w, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _random_variables(model, x: jax.Array, seed: int = 0) -> dict:
  """He-normal kernels, unit BN, zero biases: like ``model.init`` without its slow compile."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.normal(size=leaf.shape) * math.sqrt(2.0 / fan_in), jnp.float32)
    return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _eval_shape_apply(model, variables, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


@pytest.mark.parametrize("ctor, params, stats", [
  (VGG16, 138_357_544, 0),  # torchvision vgg16
  (VGG16BN, 138_365_992, 8_448),  # torchvision vgg16_bn
  # torchvision deeplabv3_resnet50 has 42,004,074 with its aux head (2,365,205 at 21 classes);
  # equal to the torch reference's count (tests/test_convert_torchvision.py).
  (DeepLabV3ResNet50, 39_638_869, 56_704),
])
def test_param_counts_match_torchvision(ctor, params, stats):
  variables = _abstract_variables(ctor())
  assert _count(variables["params"]) == params
  assert _count(variables.get("batch_stats", {})) == stats


def test_vgg_names_follow_torchvision_indices():
  convs = layer_indices()
  assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
  bn_convs = layer_indices(batch_norm=True)
  assert bn_convs == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
  params = _abstract_variables(VGG16(), 32)["params"]
  assert set(params) == {f"features_{i}" for i in convs} | {
    "classifier_0", "classifier_3", "classifier_6"}
  assert params["features_0"]["kernel"].shape == (3, 3, 3, 64)
  assert params["classifier_0"]["kernel"].shape == (25088, 4096)
  assert params["classifier_6"]["kernel"].shape == (4096, 1000)
  variables = _abstract_variables(VGG16BN(num_classes=20), 32)
  assert set(variables["batch_stats"]) == {f"features_{i + 1}" for i in bn_convs}
  assert variables["params"]["classifier_6"]["bias"].shape == (20,)


@pytest.mark.parametrize("ctor", [VGG16, VGG16BN])
def test_vgg_feature_shapes_224(ctor):
  model = ctor()
  logits, feats = _eval_shape_apply(model, _abstract_variables(model, 32), (2, 224, 224, 3))
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  for k, (size, ch) in enumerate(zip((224, 112, 56, 28, 14), (64, 128, 256, 512, 512))):
    assert feats[f"stage{k + 1}"].shape == (2, size, size, ch)
  assert feats["last_conv"].shape == (2, 14, 14, 512)
  assert feats["pre_logits"].shape == (2, 4096)


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (300, 257)])
def test_vgg_any_input_size(size):
  model = VGG16(num_classes=3)
  logits, feats = _eval_shape_apply(model, _abstract_variables(model, 32), (1,) + size + (3,))
  assert logits.shape == (1, 3)
  assert feats["stage5"].shape == (1, size[0] // 16, size[1] // 16, 512)


def test_vgg_input_errors():
  model = VGG16()
  variables = _abstract_variables(model, 32)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    _eval_shape_apply(model, variables, (1, 64, 64, 1))
  with pytest.raises(ValueError, match=r"H, W >= 32"):
    _eval_shape_apply(model, variables, (1, 31, 64, 3))


def test_vgg_dropout_and_batch_norm_train_mode():
  model = VGG(cfg=_TINY_VGG, batch_norm=True, num_classes=4)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = _random_variables(model, x)
  logits, feats = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 4) and feats["stage5"].shape == (2, 2, 2, 16)
  np.testing.assert_array_equal(np.asarray(feats["last_conv"]), np.asarray(feats["stage5"]))
  with pytest.raises(ValueError, match="dropout"):
    model.apply(variables, x, train=True, mutable=["batch_stats"])
  train_apply = jax.jit(lambda v, x, key: model.apply(
    v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}))
  (train_logits, train_feats), updates = train_apply(variables, x, jax.random.key(2))
  assert np.all(np.isfinite(np.asarray(train_logits)))
  # Dropout zeroes about half of pre_logits in train mode; eval mode never does.
  zeros = float(np.mean(np.asarray(train_feats["pre_logits"]) == 0))
  assert zeros > float(np.mean(np.asarray(feats["pre_logits"]) == 0)) + 0.2
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
    variables["batch_stats"])


def test_vgg_gradcam_on_last_conv():
  model = VGG(cfg=_TINY_VGG, num_classes=3)
  x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
  variables = _random_variables(model, x)
  cam = gradcam(model.apply, variables, x, layer="last_conv")
  assert cam.shape == (1, 3, 32, 32) and bool(jnp.all(cam >= 0))


def test_deeplab_feature_shapes_224():
  model = DeepLabV3(num_classes=21)
  logits, feats = _eval_shape_apply(model, _abstract_variables(model), (2, 224, 224, 3))
  assert logits.shape == (2, 224, 224, 21) and logits.dtype == jnp.float32
  expected = {"stem": (56, 64), "stage1": (56, 256), "stage2": (28, 512),
              "stage3": (28, 1024), "stage4": (28, 2048), "aspp": (28, 256),
              "last_conv": (28, 256), "low_res_logits": (28, 21)}
  for name, (size, ch) in expected.items():
    assert feats[name].shape == (2, size, size, ch), name


@pytest.mark.parametrize("size", [(65, 65), (65, 67), (33, 97), (17, 23), (129, 121)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_matches_odd_input_sizes(size, output_stride):
  model = DeepLabV3(num_classes=5, output_stride=output_stride)
  logits, feats = _eval_shape_apply(model, _abstract_variables(model), (1,) + size + (3,))
  assert logits.shape == (1,) + size + (5,)
  assert feats["stage4"].shape[1:3] == feats["stage2"].shape[1:3] if output_stride == 8 else (
    feats["stage4"].shape[1:3] == feats["stage3"].shape[1:3])


def test_small_deeplab_trains_on_cpu():
  model = DeepLabV3(num_classes=3, backbone="resnet18", width=8)
  x = jax.random.normal(jax.random.key(1), (2, 33, 35, 3))
  variables = _random_variables(model, x)
  assert _count(variables["params"]) < 300_000
  logits, feats = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 33, 35, 3) and feats["aspp"].shape == (2, 5, 5, 32)
  with pytest.raises(ValueError, match="dropout"):
    model.apply(variables, x, train=True, mutable=["batch_stats"])

  def loss(params):
    (out, _), _ = model.apply({**variables, "params": params}, x, train=True,
                              mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)})
    return jnp.mean(jax.nn.sigmoid(out))

  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["backbone"]["conv1"]["kernel"]).sum()) > 0


def test_deeplab_config_errors():
  for kw, match in [({"backbone": "vgg16"}, "backbone"), ({"output_stride": 4}, "output_stride"),
                    ({"aspp_rates": (6, 12)}, "aspp_rates")]:
    with pytest.raises(ValueError, match=match):
      _abstract_variables(DeepLabV3(num_classes=2, **kw))
  model = DeepLabV3(num_classes=2)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    _eval_shape_apply(model, _abstract_variables(model), (1, 64, 64))


@pytest.mark.parametrize("flags, strides", [
  ((False, False, False), (4, 8, 16, 32)),
  ((False, False, True), (4, 8, 16, 16)),
  ((False, True, True), (4, 8, 8, 8)),
])
def test_resnet_replace_stride_with_dilation(flags, strides):
  model = ResNet50(num_classes=None, replace_stride_with_dilation=flags)
  variables = _abstract_variables(model)
  # Dilation changes no parameter: ResNet-50 without fc.
  assert _count(variables["params"]) == 25_557_032 - 2048 * 1000 - 1000
  logits, feats = _eval_shape_apply(model, variables, (1, 224, 224, 3))
  assert logits is None
  for k, s in enumerate(strides):
    assert feats[f"stage{k + 1}"].shape[1] == 224 // s


def test_resnet_dilation_shares_params_and_early_stages():
  """Same variables with and without dilation; stages before the first dilated one agree.

  (torchvision's exact dilation pattern is checked numerically against the torch reference in
  tests/test_convert_torchvision.py.)
  """
  model = ResNet18(num_classes=None, replace_stride_with_dilation=(False, True, True))
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
  variables = _random_variables(model, x, seed=1)
  _, feats = jax.jit(model.apply)(variables, x)
  assert feats["stage4"].shape == (1, 8, 8, 512)
  dense = ResNet18(num_classes=None)
  _, dense_feats = jax.jit(dense.apply)(variables, x)
  assert dense_feats["stage4"].shape == (1, 2, 2, 512)
  np.testing.assert_allclose(np.asarray(feats["stage2"]), np.asarray(dense_feats["stage2"]))
  with pytest.raises(ValueError, match="replace_stride_with_dilation"):
    _abstract_variables(ResNet18(replace_stride_with_dilation=(True,)))
