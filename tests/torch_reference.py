"""Small PyTorch reference models with torchvision's architectures and state_dict key names.

torchvision itself cannot be installed next to this torch build, so the converter parity tests
use these: ResNet (BasicBlock/Bottleneck, ``replace_stride_with_dilation``), VGG-16 (with and
without BN) and DeepLabV3 (ResNet backbone without ``avgpool``/``fc`` under ``backbone.``, the
DeepLabHead under ``classifier.``). Written from the architecture description; each forward
returns ``(logits, features)`` with the same feature names as the Flax models (NCHW tensors).
Only imported by tests that already skipped when torch is missing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
             "M")


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    # torchvision refuses dilation here; rise_jax dilates both 3x3 convs (documented).
    self.conv1 = _conv3x3(cin, planes, stride, dilation)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU()
    self.conv2 = _conv3x3(planes, planes, 1, dilation)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = _conv3x3(planes, planes, stride, dilation)  # v1.5: stride on the 3x3
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + identity)


class ResNet(nn.Module):
  """torchvision ResNet; ``num_classes=None`` is the DeepLab backbone (no avgpool/fc)."""

  def __init__(self, block, layers, num_classes=1000, width=64,
               replace_stride_with_dilation=(False, False, False)):
    super().__init__()
    self.cin = width
    self.dilation = 1
    self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    self.layer1 = self._stage(block, width, layers[0], 1, False)
    self.layer2 = self._stage(block, width * 2, layers[1], 2, replace_stride_with_dilation[0])
    self.layer3 = self._stage(block, width * 4, layers[2], 2, replace_stride_with_dilation[1])
    self.layer4 = self._stage(block, width * 8, layers[3], 2, replace_stride_with_dilation[2])
    if num_classes is not None:
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
    self.num_classes = num_classes

  def _stage(self, block, planes, blocks, stride, dilate):
    previous = self.dilation
    if dilate:
      self.dilation *= stride
      stride = 1
    downsample = None
    if stride != 1 or self.cin != planes * block.expansion:
      downsample = nn.Sequential(
        nn.Conv2d(self.cin, planes * block.expansion, 1, stride=stride, bias=False),
        nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.cin, planes, stride, downsample, previous)]
    self.cin = planes * block.expansion
    layers += [block(self.cin, planes, dilation=self.dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    feats = {}
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    feats["stem"] = x
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
      feats[f"stage{i}"] = x
    feats["last_conv"] = x
    if self.num_classes is None:
      return None, feats
    x = torch.flatten(self.avgpool(x), 1)
    feats["pre_logits"] = x
    return self.fc(x), feats


def resnet18(**kw):
  return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet50(**kw):
  return ResNet(Bottleneck, (3, 4, 6, 3), **kw)


class VGG(nn.Module):
  """torchvision VGG: ``features`` / ``avgpool`` / ``classifier``."""

  def __init__(self, cfg=VGG16_CFG, batch_norm=False, num_classes=1000):
    super().__init__()
    layers, cin = [], 3
    for v in cfg:
      if v == "M":
        layers.append(nn.MaxPool2d(2, 2))
        continue
      layers.append(nn.Conv2d(cin, v, 3, padding=1))
      if batch_norm:
        layers.append(nn.BatchNorm2d(v))
      layers.append(nn.ReLU())
      cin = v
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
      nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
      nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
      nn.Linear(4096, num_classes))

  def forward(self, x):
    feats, stage = {}, 0
    for layer in self.features:
      if isinstance(layer, nn.MaxPool2d):
        stage += 1
        feats[f"stage{stage}"] = x
      x = layer(x)
    feats["last_conv"] = feats[f"stage{stage}"]
    x = torch.flatten(self.avgpool(x), 1)
    x = self.classifier[:6](x)
    feats["pre_logits"] = x
    return self.classifier[6](x), feats


class ASPPConv(nn.Sequential):
  def __init__(self, cin, cout, dilation):
    super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU())


class ASPPPooling(nn.Sequential):
  def __init__(self, cin, cout):
    super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU())

  def forward(self, x):
    size = x.shape[-2:]
    for mod in self:
      x = mod(x)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
  def __init__(self, cin, rates, cout=256):
    super().__init__()
    branches = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                              nn.ReLU())]
    branches += [ASPPConv(cin, cout, r) for r in rates]
    branches.append(ASPPPooling(cin, cout))
    self.convs = nn.ModuleList(branches)
    self.project = nn.Sequential(nn.Conv2d(len(branches) * cout, cout, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(0.5))

  def forward(self, x):
    return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
  def __init__(self, cin, num_classes, rates=(12, 24, 36), channels=256):
    super().__init__(ASPP(cin, rates, channels),
                     nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                     nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, num_classes, 1))


class DeepLabV3(nn.Module):
  """torchvision ``deeplabv3_resnet50`` (``aux_loss=False``); ``backbone_fn`` picks the ResNet."""

  def __init__(self, num_classes=21, backbone_fn=resnet50, width=64, rates=(12, 24, 36)):
    super().__init__()
    self.backbone = backbone_fn(num_classes=None, width=width,
                                replace_stride_with_dilation=(False, True, True))
    cin = width * 8 * (4 if backbone_fn is resnet50 else 1)
    self.classifier = DeepLabHead(cin, num_classes, rates, channels=4 * width)

  def forward(self, x):
    size = x.shape[-2:]
    _, feats = self.backbone(x)
    feats = {k: feats[k] for k in ("stem", "stage1", "stage2", "stage3", "stage4")}
    y = self.classifier[0](feats["stage4"])
    feats["aspp"] = y
    y = self.classifier[3](self.classifier[2](self.classifier[1](y)))
    feats["last_conv"] = y
    y = self.classifier[4](y)
    feats["low_res_logits"] = y
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False), feats


def residual_output_bns(model: nn.Module) -> list[nn.BatchNorm2d]:
  """The BN closing each residual branch (``bn3`` of a Bottleneck, ``bn2`` of a BasicBlock)."""
  return [m.bn3 if isinstance(m, Bottleneck) else m.bn2 for m in model.modules()
          if isinstance(m, (Bottleneck, BasicBlock))]


@torch.no_grad()
def randomize_(model: nn.Module, seed: int, calibration_shape=(4, 3, 64, 64),
               calibration_batches: int = 2) -> nn.Module:
  """Random weights with trained-network-like BN statistics; returns ``model`` in eval mode.

  Weights follow torchvision's initialisation: He-normal (fan_out) convs, N(0, 0.01) linears,
  and PyTorch's default scale (std ``1 / sqrt(3 * fan_in)``) for the DeepLab head's convs,
  which torchvision does not re-initialise; conv and linear biases are N(0, 0.1). BN affine
  parameters are random but moderate: ``weight`` U(0.25, 0.75) and ``bias`` N(0, 0.2), except
  that the BN closing each residual branch gets ``weight`` U(0.05, 0.3), since trained ResNets
  keep their residual branches small against the identity path (torchvision's
  ``zero_init_residual`` starts them at 0). The BN running statistics are then calibrated as in
  training: ``calibration_batches`` forward passes in train mode over random N(0, 1) images of
  ``calibration_shape`` with ``momentum=None`` (cumulative average), so ``running_mean`` /
  ``running_var`` are the actual activation statistics of such inputs (an eval-mode BN maps
  them to about ``weight * N(0, 1) + bias``) and activations stay O(1). They come from other
  images than any test input, so they differ from its batch statistics.
  """
  gen = torch.Generator().manual_seed(seed)
  randn = lambda t: torch.randn(t.shape, generator=gen)
  rand = lambda t: torch.rand(t.shape, generator=gen)
  residual = {id(m) for m in residual_output_bns(model)}
  head = set(map(id, model.classifier.modules())) if isinstance(model, DeepLabV3) else set()
  bns = []
  for m in model.modules():
    if isinstance(m, nn.Conv2d):
      fan_in, fan_out = (m.weight[0].numel(), m.weight[:, 0].numel())
      std = (1.0 / (3 * fan_in)) ** 0.5 if id(m) in head else (2.0 / fan_out) ** 0.5
      m.weight.copy_(randn(m.weight) * std)
      if m.bias is not None:
        m.bias.copy_(randn(m.bias) * 0.1)
    elif isinstance(m, nn.Linear):
      m.weight.copy_(randn(m.weight) * 0.01)
      m.bias.copy_(randn(m.bias) * 0.1)
    elif isinstance(m, nn.BatchNorm2d):
      lo, hi = (0.05, 0.3) if id(m) in residual else (0.25, 0.75)
      m.weight.copy_(lo + (hi - lo) * rand(m.weight))
      m.bias.copy_(randn(m.bias) * 0.2)
      m.reset_running_stats()
      m.momentum = None  # cumulative average over the calibration batches
      bns.append(m)
  if bns:
    model.train()
    for _ in range(calibration_batches):
      model(torch.randn(calibration_shape, generator=gen))
    for m in bns:
      m.momentum = 0.1
  return model.eval()
