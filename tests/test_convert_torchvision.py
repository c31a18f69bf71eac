"""Parity of the torchvision converters against PyTorch reference models (tests/torch_reference).

torchvision is not installable next to this torch build, so ``tests/torch_reference.py``
rebuilds its architectures with its exact ``state_dict`` key names. Each model gets random
weights, runs in eval mode, and its converted Flax twin must agree on the logits and every
feature within ``max |flax - torch| <= 1e-4`` absolute, in float32, on random N(0, 1) images.

Why calibrated weights: with arbitrary random BN ``running_mean``/``running_var`` and random
residual branches as strong as the identity path, the eval-mode nets are far from trained
ones: ResNet-50 / DeepLab features reach magnitudes of 11-44 and every conv-BN-ReLU layer
amplifies rounding errors, so float32 torch itself is 3e-4..8e-4 away from a float64 run of
the same model, and so is Flax (a 1e-4 absolute bound then fails on rounding alone, not on the
conversion). ``torch_reference.randomize_`` therefore sets the network up as a trained one
has it: random but moderate BN affine parameters, small ones on the BN closing each residual
branch (trained ResNets keep branches small against the identity path; calibrating the
statistics alone still leaves ResNet-50 at ~2e-4), DeepLab head convs at torchvision's default
scale, and BN running statistics accumulated in train mode (``momentum=None``) over random
batches of the same kind of images (other draws than the test input's), i.e. the actual
activation statistics. Activations then stay O(1) (peaks of 1-5) and float32 parity holds at
1e-4 absolute: the worst measured diffs are ~3.5e-5 (DeepLabV3-ResNet50 ``aspp``; up to 4e-5
with other seeds), ~3e-5 (VGG-16-BN ``stage5``) and ~2e-5 (ResNet-50 ``stage4``), each about
torch float32's own distance to float64, i.e. rounding; in float64 in both frameworks the
converted models agree to ~1e-13. The small residual-branch BNs still leave every weight
visible: a spatially flipped ``layer4.1.conv2`` kernel moves ResNet ``stage4`` by ~1.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rise_jax.convert  # noqa: E402
from rise_jax.convert import torchvision as tv  # noqa: E402
from rise_jax.models import registry  # noqa: E402
from rise_jax.models.deeplab import DeepLabV3, resize_bilinear  # noqa: E402
from rise_jax.models.vgg import adaptive_avg_pool  # noqa: E402
from rise_jax.train import checkpoint  # noqa: E402
from tests import torch_reference as tr  # noqa: E402

torch.set_num_threads(2)

_TOL = 1e-4


def _nhwc(t) -> np.ndarray:
  a = t.detach().numpy()
  return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _images(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _assert_parity(tmodel, module, variables, shape) -> dict[str, float]:
  """Runs both models on the same random images; returns the max abs diff per output.

  Every output (logits and each torch feature) must agree within ``_TOL`` absolute.
  """
  x = _images(shape)
  with torch.no_grad():
    t_logits, t_feats = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  j_logits, j_feats = jax.jit(module.apply)(variables, x)
  assert set(t_feats) <= set(j_feats), sorted(set(t_feats) - set(j_feats))
  pairs = {"logits": (_nhwc(t_logits), np.asarray(j_logits))}
  pairs.update({k: (_nhwc(v), np.asarray(j_feats[k])) for k, v in t_feats.items()})
  diffs = {}
  for name, (ref, got) in pairs.items():
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    diffs[name] = float(np.abs(got - ref).max())
  too_far = {k: f"{v:.2e}" for k, v in diffs.items() if not v <= _TOL}
  assert not too_far, f"max abs diff > {_TOL:.0e}: {too_far}"
  return diffs


def _record(record_property, name: str, diffs: dict[str, float]) -> None:
  """Prints (``pytest -s``) and records (junit ``record_property``) the achieved max diffs."""
  worst = max((k for k in diffs if k != "logits"), key=diffs.get)
  print(f"{name}: logits {diffs['logits']:.1e}, worst feature {worst} {diffs[worst]:.1e}",
        {k: f"{v:.1e}" for k, v in diffs.items()})
  record_property("max_abs_diff", {k: float(f"{v:.3e}") for k, v in diffs.items()})


def _torch_param_count(model) -> int:
  return sum(p.numel() for p in model.parameters())


def _flax_param_count(variables) -> int:
  return sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(variables["params"]))


@pytest.fixture(scope="module")
def resnet18_sd():
  return tr.randomize_(tr.resnet18(num_classes=10), seed=0).state_dict()


_CASES = {
  # arch: (reference builder, input [B, H, W, 3])
  "resnet18": (lambda: tr.resnet18(), (2, 64, 64, 3)),
  "resnet50": (lambda: tr.resnet50(num_classes=10), (2, 64, 64, 3)),
  # 64 -> 2x2 before the adaptive pool: every 7x7 output repeats input pixels.
  "vgg16": (lambda: tr.VGG(), (2, 64, 64, 3)),
  # 96x64 -> 3x2: overlapping, unequal adaptive windows; non-default class count.
  "vgg16_bn": (lambda: tr.VGG(batch_norm=True, num_classes=20), (2, 96, 64, 3)),
  # Odd sizes; 129x121 -> 17x16 at output stride 8, so the rate-12 ASPP taps hit real pixels.
  "deeplabv3_resnet50": (lambda: tr.DeepLabV3(num_classes=21), (2, 129, 121, 3)),
}


@pytest.mark.parametrize("arch", list(_CASES))
def test_parity_with_torch_reference(arch, record_property):
  builder, shape = _CASES[arch]
  tmodel = tr.randomize_(builder(), seed=0, calibration_shape=(4, 3) + shape[1:3])
  sd = tmodel.state_dict()
  if arch == "deeplabv3_resnet50":  # torchvision's pretrained weights carry an aux head
    sd["aux_classifier.0.weight"] = torch.zeros(256, 1024, 3, 3)
    sd["aux_classifier.4.bias"] = torch.zeros(21)
  variables = rise_jax.convert.convert(arch, sd)  # package-level dispatch
  assert set(variables) == ({"params"} if arch == "vgg16" else {"params", "batch_stats"})
  assert _flax_param_count(variables) == _torch_param_count(tmodel)
  head = tv._HEADS[arch][0]
  module = tv.build_arch(arch, int(sd[head].shape[0]))
  diffs = _assert_parity(tmodel, module, variables, shape)
  _record(record_property, arch, diffs)


def test_small_deeplab_parity_via_convert_variables(record_property):
  """The CPU-sized DeepLab (ResNet-18 backbone, width 8) with dilated BasicBlocks."""
  tmodel = tr.randomize_(tr.DeepLabV3(num_classes=5, backbone_fn=tr.resnet18, width=8),
                         seed=3, calibration_shape=(4, 3, 65, 67))
  module = DeepLabV3(num_classes=5, backbone="resnet18", width=8)
  variables = tv.convert_variables(module, tmodel.state_dict(), name="small_deeplab")
  assert _flax_param_count(variables) == _torch_param_count(tmodel)
  diffs = _assert_parity(tmodel, module, variables, (2, 65, 67, 3))
  _record(record_property, "small_deeplab", diffs)


@pytest.mark.parametrize("in_hw, out_hw", [
  ((1, 1), (7, 7)), ((2, 3), (7, 7)), ((7, 7), (7, 7)), ((9, 13), (7, 7)), ((15, 8), (7, 7)),
  ((30, 31), (7, 7)), ((10, 10), (3, 4)),
])
def test_adaptive_avg_pool_matches_torch(in_hw, out_hw):
  x = _images((2,) + in_hw + (3,))
  ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), out_hw)
  got = np.asarray(adaptive_avg_pool(x, out_hw))
  np.testing.assert_allclose(got, _nhwc(ref), atol=1e-6)


@pytest.mark.parametrize("in_hw, out_hw", [((9, 9), (65, 65)), ((17, 16), (129, 121)),
                                           ((1, 1), (5, 4)), ((10, 7), (3, 4))])
def test_resize_bilinear_matches_torch_align_corners_false(in_hw, out_hw):
  x = _images((2,) + in_hw + (3,))
  ref = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=out_hw,
                                        mode="bilinear", align_corners=False)
  np.testing.assert_allclose(np.asarray(resize_bilinear(x, out_hw)), _nhwc(ref), atol=1e-5)


def test_missing_key_raises(resnet18_sd):
  sd = dict(resnet18_sd)
  del sd["layer3.1.bn2.running_var"]
  with pytest.raises(ValueError, match=r"missing.*layer3\.1\.bn2\.running_var"):
    tv.convert("resnet18", sd)


def test_unexpected_key_raises(resnet18_sd):
  sd = dict(resnet18_sd, **{"layer5.0.conv1.weight": torch.zeros(3, 3, 3, 3)})
  with pytest.raises(ValueError, match=r"not converted.*layer5\.0\.conv1\.weight"):
    tv.convert("resnet18", sd)


def test_wrong_shape_raises_with_key_and_both_shapes(resnet18_sd):
  sd = dict(resnet18_sd, **{"layer2.0.conv1.weight": torch.zeros(128, 32, 3, 3)})
  with pytest.raises(ValueError, match=r"'layer2\.0\.conv1\.weight'") as err:
    tv.convert("resnet18", sd)
  assert "(128, 32, 3, 3)" in str(err.value) and "(128, 64, 3, 3)" in str(err.value)


def test_num_classes_mismatch_raises(resnet18_sd):
  with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(10, 512\).*\(5, 512\)"):
    tv.convert("resnet18", resnet18_sd, num_classes=5)


def test_other_architecture_raises(resnet18_sd):
  with pytest.raises(ValueError, match="resnet34"):
    tv.convert("resnet34", resnet18_sd)


def test_unknown_arch_and_missing_weights_raise(tmp_path, resnet18_sd):
  with pytest.raises(ValueError, match="known"):
    rise_jax.convert.convert("vgg19", resnet18_sd)
  with pytest.raises(ValueError, match="known"):
    tv.convert("alexnet", resnet18_sd)
  with pytest.raises(ValueError, match="torch_weights"):
    rise_jax.convert.convert("resnet18", None)
  with pytest.raises(FileNotFoundError):
    tv.convert("resnet18", tmp_path / "missing.pth")


def test_pth_file_and_registry_roundtrip(tmp_path, resnet18_sd):
  """A saved .pth converts like the in-memory dict and loads through the model registry."""
  pth = tmp_path / "resnet18.pth"
  torch.save(resnet18_sd, pth)
  from_file = rise_jax.convert.convert("resnet18", str(pth))
  from_dict = tv.convert("resnet18", resnet18_sd)
  jax.tree.map(np.testing.assert_array_equal, from_file, from_dict)
  out = checkpoint.save_variables(tmp_path / "ckpt", from_file)
  clf = registry.load("resnet18", out, num_classes=10)
  x = _images((1, 224, 224, 3))
  logits = clf.black_box("logits")(x)
  ref, _ = clf.module.apply(from_dict, x)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=1e-5)
