"""Peer benchmark: rise_jax vs the PyTorch RISE tools a user would pick instead (issue 10).

Measured in one run on the current machine (``python -m benchmarks.peer_bench``), the peers run
as their users run them, on the same architecture with the same weights, the same N and the
same input size:

* Classification RISE: :func:`rise_jax.rise` (all 1000 class maps) on a Flax ResNet-18 vs
  TorchRay's own ``torchray.attribution.rise.rise`` (the ``torchray`` package, 1.0.0.2) on a
  torch ResNet-18 with torchvision's layout, both at batch ``--batch-size`` (TorchRay's default
  is 32). TorchRay applies a sigmoid to the model's output, so the JAX black box returns
  sigmoid scores too. ``pip install torchray`` pulls torchvision and a CUDA torch build;
  ``pip install --no-deps torchray`` is enough for ``torchray.attribution.rise`` (it imports
  torch, NumPy, matplotlib, PIL and packaging only). Where ``torchray`` does not import, the
  peer is this project's **torch transcription of TorchRay's RISE**
  (:func:`torchray_style_rise`), named as such in the JSON (``speedup_vs_torchray_transcription``)
  with the import error. torchvision itself does not import next to the CPU torch build, so the
  ResNet-18 is defined here with torchvision's state_dict names; the Flax weights are converted
  from the torch ones (:func:`rise_jax.convert.torchvision.convert`), so both sides compute the
  same function (``details.classification.model_max_abs_diff``), and
  ``details.classification.same_masks_check`` runs TorchRay on rise_jax's masks
  (``filter_masks``): the maps agree up to TorchRay's ``1 / N`` normalisation (rise_jax divides
  by ``N p1``). Defaults: 224x224, N = 1000, batch 100, s = 7, p1 = 0.5.
* Segmentation RISE: :func:`rise_jax.segmentation_rise` vs
  ``interpret_segmentation.rise.SegmentationRISE`` on the same small fully convolutional
  network (:data:`SEG_LAYERS`, one output channel, sigmoid), with identical weights, explaining
  the same pixels (those whose output is above the output mean: what interpret-segmentation
  explains). interpret-segmentation's time is its construction + ``generate_masks`` (all N
  masks precomputed with scikit-image, O(N) memory, saved with ``np.save``) + its forward +
  ``RISEResult.max()``, against rise_jax with ``merge="max"``. Two rows: its own forward
  (``speedup_vs_interpret_segmentation``: one batch-1 forward per mask and per chunk of 1000
  pixels, as shipped) and the same forward batched at rise_jax's batch size
  (``speedup_vs_interpret_segmentation_same_batch``: our patch,
  :func:`batched_segmentation_rise`, which equals its output on the same masks); most of the
  first ratio is batching. Defaults: 64x64, N = 500, batch 100, s = 8, p1 = 0.5. rise_jax is
  also run on interpret-segmentation's own masks (``masks=``), which checks that its output
  equals rise_jax's up to its missing ``1 / p1`` factor (``details.segmentation.same_masks_check``).

Times: :func:`benchmarks.common.timed`, wall seconds per image (the latency a user waits),
median of ``--repeats`` >= 3 interleaved rounds after the same warm-up for every side (one full
call, timed: ``*_first_call`` ratios, JAX's compilation included); process CPU times are in
``timings``. Peak memory is the peak RSS (``VmHWM``, :func:`benchmarks.memory.peak_rss_mb`) of a
separate child process per tool and N that imports only its own framework; its peak before
the run (framework, model, for JAX the model's compilation) is recorded too. Segmentation
memory is measured at N and 2 N, to show how it grows with N. Headline ratios are peer /
rise_jax (> 1: rise_jax is faster or smaller). Torch runs on the CPU (the project's torch
build), with as many threads as cores; on an accelerator backend the ratios compare rise_jax
there with torch on the CPU.

Writes ``benchmarks/results/peer.json`` (``--out`` elsewhere). ``--quick`` shrinks every size
for a smoke run (classification 96x96, N = 100; segmentation 32x32, N = 50; not 64x64 for
ResNet-18: there layer4's maps are 2x2, where XLA's CPU 3x3 conv is about 35x slower than on
3x3 maps). Needs torch and interpret-segmentation: ``pip install -e ".[bench]"``, and
``pip install --no-deps torchray`` for the TorchRay rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks import memory

# Each memory child imports only its own framework, so nothing here imports jax or torch at
# module level (benchmarks.common imports jax).
INSTALL_HINT = ('peer_bench needs torch and interpret-segmentation; install them with '
                'pip install -e ".[bench]"')
NUM_CLASSES = 1000
CHECK_MASKS = 50  # masks of the same-masks check against interpret-segmentation
os.environ.setdefault("TQDM_DISABLE", "1")  # interpret-segmentation's mask progress bar
# The segmentation network: (name, in channels, out channels, kernel, stride). Between "down"
# and "up2" the feature map is upsampled x2 (nearest); the output is sigmoid(head) [b, H, W].
SEG_LAYERS = (("conv1", 3, 16, 3, 1), ("down", 16, 32, 3, 2), ("conv2", 32, 32, 3, 1),
              ("up2", 32, 16, 3, 1), ("head", 16, 1, 1, 1))


def _import_torch():
  """torch, using one thread per CPU core, or SystemExit with the install hint."""
  try:
    import torch
  except ImportError:
    raise SystemExit(INSTALL_HINT) from None
  torch.set_num_threads(os.cpu_count() or 1)
  return torch


def _import_interpret_segmentation():
  try:
    from interpret_segmentation.rise import SegmentationRISE
  except ImportError:
    raise SystemExit(INSTALL_HINT) from None
  return SegmentationRISE


def _import_torchray():
  """``(torchray.attribution.rise.rise, version, None)`` or ``(None, None, why it failed)``."""
  try:
    import torchray
    from torchray.attribution.rise import rise
  except Exception as e:  # noqa: BLE001 - ImportError, or a dependency failing at import
    return None, None, f"{type(e).__name__}: {e}"
  return rise, torchray.__version__, None


# --- torch transcription of TorchRay's RISE (the peer where torchray does not import) --------


def torchray_masks(grid, shifts, size: tuple[int, int]):
  """RISE masks from binary grids and shifts, TorchRay-style (bilinear upsample, then crop).

  Args:
    grid: torch float32[b, s_h, s_w] binary grids.
    shifts: torch int[b, 2] crop offsets ``(dy, dx)`` with ``dy < ceil(H / s_h)``,
      ``dx < ceil(W / s_w)``.
    size: ``(H, W)``.

  Returns:
    torch float32[b, 1, H, W]: ``grid`` upsampled to ``((s_h + 1) * ch, (s_w + 1) * cw)`` with
    ``F.interpolate(mode="bilinear", align_corners=False)`` and cropped at the shifts.
  """
  torch = _import_torch()
  h, w = size
  s_h, s_w = grid.shape[1:]
  ch, cw = math.ceil(h / s_h), math.ceil(w / s_w)
  up = torch.nn.functional.interpolate(grid[:, None], size=((s_h + 1) * ch, (s_w + 1) * cw),
                                       mode="bilinear", align_corners=False)
  return torch.stack([up[i, :, dy:dy + h, dx:dx + w]
                      for i, (dy, dx) in enumerate(shifts.tolist())])


def draw_torch_masks(num: int, size: tuple[int, int], grid_size: int, p1: float, generator):
  """``num`` fresh masks float32[num, 1, H, W] from ``generator`` (a ``torch.Generator``)."""
  torch = _import_torch()
  h, w = size
  grid = (torch.rand(num, grid_size, grid_size, generator=generator) < p1).float()
  dy = torch.randint(0, math.ceil(h / grid_size), (num,), generator=generator)
  dx = torch.randint(0, math.ceil(w / grid_size), (num,), generator=generator)
  return torchray_masks(grid, torch.stack([dy, dx], 1), size)


def torchray_style_rise(model, image, num_masks: int, batch_size: int = 100,
                        grid_size: int = 7, p1: float = 0.5, seed: int = 0):
  """RISE with masks generated on the fly per batch (memory O(batch)), like TorchRay's.

  ``S = sum_i f(x * m_i) m_i / (N * p1)`` for every class at once.

  Args:
    model: torch callable float32[b, C_in, H, W] -> scores float32[b, K].
    image: torch float32[C_in, H, W] or [1, C_in, H, W].
    num_masks: ``N``.
    batch_size: Masks per model call.
    grid_size: ``s``.
    p1: Probability of keeping a grid cell.
    seed: Seed of the ``torch.Generator`` the masks are drawn from, batch after batch.

  Returns:
    torch float32[K, H, W] saliency maps.
  """
  torch = _import_torch()
  x = image if image.ndim == 4 else image[None]
  h, w = x.shape[2:]
  generator = torch.Generator().manual_seed(seed)
  acc = None
  with torch.no_grad():
    for start in range(0, num_masks, batch_size):
      b = min(batch_size, num_masks - start)
      masks = draw_torch_masks(b, (h, w), grid_size, p1, generator)
      scores = model(x * masks)
      part = scores.T @ masks.view(b, h * w)
      acc = part if acc is None else acc + part
  return (acc / (num_masks * p1)).view(-1, h, w)


# --- models ------------------------------------------------------------------------------


def seg_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """He-normal weights of :data:`SEG_LAYERS`: ``name -> (kernel float32[k, k, in, out] (HWIO),
  bias float32[out])``, shared by the Flax and the torch network."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, cin, cout, k, _ in SEG_LAYERS:
    kernel = rng.normal(0.0, math.sqrt(2.0 / (k * k * cin)), (k, k, cin, cout))
    out[name] = (kernel.astype(np.float32), rng.normal(0.0, 0.1, cout).astype(np.float32))
  return out


def torch_models():
  """``(resnet18, SegNet)``: torch constructors (torch is imported here, not at import time).

  ``resnet18(num_classes)`` has torchvision's architecture and state_dict names (so
  :func:`rise_jax.convert.torchvision.convert` maps it onto
  :func:`rise_jax.models.resnet.ResNet18`); ``SegNet(weights)`` is :data:`SEG_LAYERS` with
  :func:`seg_weights`, mapping float32[b, 3, H, W] to float32[b, H, W].
  """
  torch = _import_torch()
  from torch import nn

  class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.downsample = None
      if stride != 1 or cin != planes:
        self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(planes))

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      y = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(y)) + identity)

  class ResNet18(nn.Module):
    def __init__(self, num_classes=1000, width=64):
      super().__init__()
      self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
      cin = width
      for i in range(4):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, planes, stride),
                                                     BasicBlock(planes, planes)))
        cin = planes
      self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
      x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(x.mean((2, 3)))

  class SegNet(nn.Module):
    def __init__(self, weights):
      super().__init__()
      for name, cin, cout, k, stride in SEG_LAYERS:
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
        kernel, bias = weights[name]
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        conv.bias.data = torch.from_numpy(bias.copy())
        setattr(self, name, conv)

    def forward(self, x):
      for name, *_ in SEG_LAYERS[:-1]:
        if name == "up2":
          x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        x = torch.relu(getattr(self, name)(x))
      return torch.sigmoid(self.head(x))[:, 0]

  return ResNet18, SegNet


def flax_segnet(weights):
  """The JAX black box of :data:`SEG_LAYERS`: ``float32[b, H, W, 3] -> float32[b, H, W, 1]``."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  class SegNet(nn.Module):
    @nn.compact
    def __call__(self, x):
      for name, _, cout, k, stride in SEG_LAYERS:
        if name == "up2":
          x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        p = k // 2
        x = nn.Conv(cout, (k, k), strides=(stride, stride), padding=((p, p), (p, p)),
                    name=name)(x)
        x = nn.sigmoid(x) if name == "head" else nn.relu(x)
      return x

  module = SegNet()
  params = {"params": {name: {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)}
                       for name, (k, b) in weights.items()}}
  return jax.jit(lambda x: module.apply(params, x))


def flax_resnet18(variables=None):
  """The JAX black box of a Flax ResNet-18 (sigmoid scores, as TorchRay's RISE applies to its
  model's output); random init without variables."""
  import jax
  import jax.numpy as jnp

  from rise_jax.models.resnet import ResNet18

  module = ResNet18(num_classes=NUM_CLASSES)
  if variables is None:
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))

  @jax.jit
  def model_fn(x):
    return jax.nn.sigmoid(module.apply(variables, x)[0])

  return model_fn


def _image(size: int) -> np.ndarray:
  """The explained image, float32[H, W, 3] (the same pixels for both frameworks)."""
  return np.random.default_rng(1).normal(size=(size, size, 3)).astype(np.float32)


def _torch_image(size: int):
  torch = _import_torch()
  return torch.from_numpy(np.ascontiguousarray(_image(size).transpose(2, 0, 1)))[None]


def _torch_resnet(torch):
  torch.manual_seed(0)
  return torch_models()[0](NUM_CLASSES).eval()


def _torch_classifier(net, torch):
  """Sigmoid scores: what TorchRay's ``rise`` computes from ``net``'s logits."""
  return lambda x: torch.sigmoid(net(x))


def _region(out) -> np.ndarray:
  """bool[H, W]: the pixels interpret-segmentation explains (output above its mean)."""
  out = np.asarray(out, np.float32).squeeze()
  return out > out.mean()


def batched_segmentation_rise(batch_size: int):
  """interpret-segmentation's ``SegmentationRISE`` with its forward batched (our patch).

  The shipped forward runs one batch-1 model call per mask and per chunk of 1000 explained
  pixels and gathers the pixels one by one; this one runs ``batch_size`` masks per call and
  gathers the chunk's pixels with one index, otherwise unchanged (same pixels in the same
  order, same chunks, same ``1 / N`` normalisation). Its output equals the shipped forward's
  on the same masks (``tests/test_benchmarks_run.py``).
  """
  torch = _import_torch()
  base = _import_interpret_segmentation()
  from interpret_segmentation.rise import RISEResult

  class BatchedSegmentationRISE(base):
    def forward(self, x):
      _, _, h, w = x.size()
      stack = torch.mul(self.masks, x.data)
      output = self.model(x).squeeze()
      rows, cols = torch.nonzero(output > output.mean(), as_tuple=True)  # row-major
      saliencies = []
      for i in range(0, len(rows), 1000):
        r, c = rows[i:i + 1000], cols[i:i + 1000]
        p = torch.cat([self.model(stack[j:j + batch_size])[:, r, c]
                       for j in range(0, self.N, batch_size)])
        sal = torch.matmul(p.transpose(0, 1), self.masks.view(self.N, h * w))
        saliencies.append((sal / self.N).view(-1, h, w))
      return RISEResult(torch.cat(saliencies))

  return BatchedSegmentationRISE


def interpret_segmentation_run(net, image, num_masks: int, grid_size: int, p1: float,
                               batch_size: int | None = None):
  """One interpret-segmentation explanation, timed by phase.

  Args:
    batch_size: None: its own forward (batch 1); else :func:`batched_segmentation_rise`.

  Returns:
    ``(explainer, result, seconds)``: the ``SegmentationRISE`` (with its masks), its
    ``RISEResult`` and ``{"generate_masks", "forward", "max", "mean"}`` wall seconds.
  """
  torch = _import_torch()
  segmentation_rise_cls = (_import_interpret_segmentation() if batch_size is None
                           else batched_segmentation_rise(batch_size))
  size = tuple(image.shape[2:])
  explainer = segmentation_rise_cls(net, size, torch.device("cpu"))
  seconds = {}
  with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    explainer.generate_masks(N=num_masks, s=grid_size, p1=p1,
                             savepath=os.path.join(tmp, "masks.npy"))
    seconds["generate_masks"] = time.perf_counter() - t
    t = time.perf_counter()
    result = explainer(image)
    seconds["forward"] = time.perf_counter() - t
    for merge in ("max", "mean"):
      t = time.perf_counter()
      getattr(result, merge)()
      seconds[merge] = time.perf_counter() - t
  return explainer, result, seconds


# --- memory children ------------------------------------------------------------------------

CHILD_KINDS = ("jax-cls", "torchray-cls", "torch-cls", "jax-seg-max", "jax-seg-mean",
               "torch-seg")


def child(kind: str, num_masks: int, size: int, batch_size: int, grid_size: int) -> dict:
  """Runs one tool once in this (fresh) process.

  Returns:
    ``{"tool", "num_masks", "peak_rss_mb", "peak_rss_before_run_mb", "first_call_seconds"}``:
    the peak RSS after the run and before it (framework and model loaded), and the wall time of
    the run (for JAX including its compilation).
  """
  if kind.startswith("jax"):
    import jax

    import rise_jax

    image = _image(size)
    if kind == "jax-cls":
      model_fn = flax_resnet18()
      run = lambda: rise_jax.rise(model_fn, image, 0, num_masks=num_masks, grid_size=grid_size,
                                  batch_size=batch_size)
    else:
      model_fn = flax_segnet(seg_weights())
      region = _region(model_fn(image[None]))
      merge = kind.rsplit("-", 1)[1]
      run = lambda: rise_jax.segmentation_rise(
          model_fn, image, 0, target_class=0, region=region, merge=merge,
          num_masks=num_masks, grid_size=grid_size, batch_size=batch_size)
    jax.block_until_ready(model_fn(image[None]))
    before = memory.peak_rss_mb()
    start = time.perf_counter()
    jax.block_until_ready(run())
    peak = memory.peak_rss_mb()
  else:
    torch = _import_torch()
    image = _torch_image(size)
    if kind == "torchray-cls":
      torchray_rise = _import_torchray()[0]
      model = _torch_resnet(torch)
      run = lambda: torchray_rise(model, image, num_masks=num_masks, num_cells=grid_size,
                                  batch_size=batch_size, p=0.5)
    elif kind == "torch-cls":
      model = _torch_classifier(_torch_resnet(torch), torch)
      run = lambda: torchray_style_rise(model, image, num_masks, batch_size, grid_size)
    else:
      model = torch_models()[1](seg_weights()).eval()
      _import_interpret_segmentation()
      run = lambda: interpret_segmentation_run(model, image, num_masks, grid_size, 0.5)[1].max()
    with torch.no_grad():
      model_out = model(image)
    del model_out
    before = memory.peak_rss_mb()
    start = time.perf_counter()
    run()
    peak = memory.peak_rss_mb()
  return {"tool": kind, "num_masks": num_masks, "peak_rss_mb": peak,
          "peak_rss_before_run_mb": before, "first_call_seconds": time.perf_counter() - start}


# --- timing ---------------------------------------------------------------------------------


def classification(n: int, size: int, b: int, s: int, repeats: int) -> dict:
  """Times rise_jax.rise vs TorchRay's rise (or the transcription) on ResNet-18, same weights."""
  import jax
  import jax.numpy as jnp

  import rise_jax
  from benchmarks import common
  from rise_jax.convert.torchvision import convert

  torch = _import_torch()
  net = _torch_resnet(torch)
  torch_model = _torch_classifier(net, torch)
  variables = jax.tree.map(jnp.asarray, convert("resnet18", net.state_dict()))
  model_fn = flax_resnet18(variables)
  image, image_t = jnp.asarray(_image(size)), _torch_image(size)
  with torch.no_grad():
    diff = float(np.abs(torch_model(image_t).numpy() - np.asarray(model_fn(image[None]))).max())
  torchray_rise, version, why = _import_torchray()
  if torchray_rise is not None:
    peer = "torchray"
    run_peer = lambda: torchray_rise(net, image_t, num_masks=n, num_cells=s, batch_size=b,
                                     p=0.5)
  else:
    peer = "torchray_transcription"
    run_peer = lambda: torchray_style_rise(torch_model, image_t, n, b, s)
  t = common.timed({
      "rise_jax": lambda: rise_jax.rise(model_fn, image, 0, num_masks=n, grid_size=s,
                                        batch_size=b),
      peer: run_peer}, repeats)
  out = {"timings": t, "peer": peer, "model_max_abs_diff": diff,
         "torchray_version": version, "torchray_import_error": why}
  if torchray_rise is not None:  # TorchRay on rise_jax's masks: equal up to 1 / p1
    masks = rise_jax.generate_masks(0, CHECK_MASKS, size, s, 0.5)
    ours = 0.5 * np.asarray(rise_jax.rise(model_fn, image, 0, masks=masks, p1=0.5,
                                          batch_size=b))
    theirs = torchray_rise(net, image_t, num_masks=CHECK_MASKS, num_cells=s, batch_size=b,
                           filter_masks=torch.from_numpy(np.array(masks))[:, None])
    theirs = theirs[0].numpy()
    out["same_masks_check"] = {"num_masks": CHECK_MASKS,
                               "max_abs_diff": float(np.abs(ours - theirs).max()),
                               "max_abs_value": float(np.abs(theirs).max())}
  return out


def segmentation(n: int, size: int, b: int, s: int, p1: float, repeats: int) -> dict:
  """Times rise_jax.segmentation_rise (max and mean) vs interpret-segmentation (own forward and
  batched at ``b``)."""
  import jax.numpy as jnp

  import rise_jax
  from benchmarks import common

  torch = _import_torch()
  weights = seg_weights()
  net = torch_models()[1](weights).eval()
  model_fn = flax_segnet(weights)
  image, image_t = jnp.asarray(_image(size)), _torch_image(size)
  with torch.no_grad():
    out_t = net(image_t)
  out_j = np.asarray(model_fn(image[None]))
  region = _region(out_t.numpy())  # exactly the pixels interpret-segmentation explains

  def run_jax(merge, masks=None):
    return rise_jax.segmentation_rise(model_fn, image, 0, target_class=0, region=region,
                                      merge=merge, num_masks=n, grid_size=s, p1=p1,
                                      batch_size=b, masks=masks)

  np.random.seed(0)  # interpret-segmentation draws its masks from NumPy's global state
  phases = {"interpret_segmentation": [], f"interpret_segmentation_batch{b}": []}

  def run_is(batch_size):
    name = "interpret_segmentation" + ("" if batch_size is None else f"_batch{batch_size}")
    _, result, seconds = interpret_segmentation_run(net, image_t, n, s, p1, batch_size)
    phases[name].append(seconds)
    return result.max()

  t = common.timed({"rise_jax_max": lambda: run_jax("max"),
                    "rise_jax_mean": lambda: run_jax("mean"),
                    "interpret_segmentation": lambda: run_is(None),
                    f"interpret_segmentation_batch{b}": lambda: run_is(b)}, repeats)
  median_phases = {name: {k: float(np.median([p[k] for p in runs[1:]])) for k in runs[0]}
                   for name, runs in phases.items()}  # runs[0]: the warm-up call
  # Correctness on interpret-segmentation's own masks (a few, to save time): it divides by N,
  # rise_jax by N * p1; its batched forward (our patch) gives the same maps.
  explainer, result, _ = interpret_segmentation_run(net, image_t, CHECK_MASKS, s, p1)
  batched = batched_segmentation_rise(b)(net, tuple(image_t.shape[2:]), torch.device("cpu"))
  batched.masks, batched.N = explainer.masks, explainer.N
  with torch.no_grad():
    result_b = batched(image_t)
  masks = jnp.asarray(explainer.masks[:, 0].numpy())
  check = {"num_masks": CHECK_MASKS}
  for merge in ("max", "mean"):
    ours = p1 * np.asarray(run_jax(merge, masks))
    theirs = getattr(result, merge)()
    check[merge] = {"max_abs_diff": float(np.abs(ours - theirs).max()),
                    "max_abs_value": float(np.abs(theirs).max()),
                    "batched_patch_max_abs_diff": float(
                        np.abs(getattr(result_b, merge)() - theirs).max())}
  return {"timings": t, "interpret_segmentation_phases_seconds": median_phases,
          "model_max_abs_diff": float(np.abs(out_t.numpy() - out_j[..., 0]).max()),
          "pixels_explained": int(region.sum()), "output_pixels": int(region.size),
          "interpret_segmentation_forward_passes": n * math.ceil(region.sum() / 1000),
          "same_masks_check": check}


def _progress(what: str, start: float) -> None:
  print(f"[peer_bench {time.perf_counter() - start:6.0f} s] {what}", file=sys.stderr, flush=True)


def _children(kind: str, ns, size: int, b: int, s: int) -> list[dict]:
  from benchmarks import common

  return [common.run_child("benchmarks.peer_bench",
                           ["--child", kind, "--child-n", str(n), "--size", str(size),
                            "--batch-size", str(b), "--grid-size", str(s)]) for n in ns]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
  parser.add_argument("--batch-size", type=int, default=100, help="masks per model call")
  parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (>= 3)")
  parser.add_argument("--out", default=None, help="JSON path (default results/peer.json)")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS,
                      choices=("", *CHILD_KINDS))
  parser.add_argument("--child-n", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--grid-size", type=int, default=7, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child, args.child_n, args.size, args.batch_size,
                           args.grid_size)))
    return
  _import_torch()
  _import_interpret_segmentation()
  from benchmarks import common

  meta = common.start_meta("benchmarks.peer_bench", argv, args.quick)
  b, reps = args.batch_size, args.repeats
  # Quick: 96 px, not 64: at 64 px layer4's maps are 2x2, where XLA's CPU 3x3 conv is ~35x
  # slower than on 3x3 maps (~1.7 s per conv at batch 100), which would swamp the comparison.
  cls_n, cls_size, cls_s = (100, 96, 7) if args.quick else (1000, 224, 7)
  seg_n, seg_size, seg_s, p1 = (50, 32, 8, 0.5) if args.quick else (500, 64, 8, 0.5)
  seg_ns = (seg_n, 2 * seg_n)

  start = time.perf_counter()
  _progress(f"classification timing: {cls_size}px, N={cls_n}", start)
  cls = classification(cls_n, cls_size, b, cls_s, reps)
  _progress(f"segmentation timing: {seg_size}px, N={seg_n}", start)
  seg = segmentation(seg_n, seg_size, b, seg_s, p1, reps)
  _progress("memory children", start)
  peer = cls["peer"]
  peer_kind = "torchray-cls" if peer == "torchray" else "torch-cls"
  mem_cls = {k: _children(k, (cls_n,), cls_size, b, cls_s)[0] for k in ("jax-cls", peer_kind)}
  mem_seg = {k: _children(k, seg_ns, seg_size, b, seg_s)
             for k in ("jax-seg-max", "jax-seg-mean", "torch-seg")}

  tc, ts = cls["timings"], seg["timings"]
  is_b = f"interpret_segmentation_batch{b}"
  seg_peak = {k: v[0]["peak_rss_mb"] for k, v in mem_seg.items()}
  peer_note = ("torchray.attribution.rise.rise " + str(cls["torchray_version"])
               if peer == "torchray" else
               "torch transcription of TorchRay's RISE (benchmarks.peer_bench."
               "torchray_style_rise): torchray does not import here "
               f"({cls['torchray_import_error']})")
  first = "first calls (one full call each; JAX's compilation included)"
  headlines = {
      f"speedup_vs_{peer}": common.headline(tc[peer].wall / tc["rise_jax"].wall,
                                            ">= 1", note=peer_note),
      f"speedup_vs_{peer}_first_call": common.headline(tc[peer].first / tc["rise_jax"].first,
                                                       note=first),
      f"memory_ratio_vs_{peer}": common.headline(
          mem_cls[peer_kind]["peak_rss_mb"] / mem_cls["jax-cls"]["peak_rss_mb"], ">= 1",
          clock="memory"),
      "speedup_vs_interpret_segmentation": common.headline(
          ts["interpret_segmentation"].wall / ts["rise_jax_max"].wall, ">= 1",
          note=f"its own forward: batch 1 (rise_jax: batch {b})"),
      "speedup_vs_interpret_segmentation_same_batch": common.headline(
          ts[is_b].wall / ts["rise_jax_max"].wall, ">= 1",
          note=f"its forward batched at {b} (our patch, batched_segmentation_rise)"),
      "speedup_vs_interpret_segmentation_first_call": common.headline(
          ts["interpret_segmentation"].first / ts["rise_jax_max"].first, note=first),
      "memory_ratio_vs_interpret_segmentation": common.headline(
          seg_peak["torch-seg"] / seg_peak["jax-seg-max"], ">= 1", clock="memory"),
  }
  details = {
      "clock": common.clock_note(reps) + "; seconds per image",
      "batch_size": b, "torch_threads": os.cpu_count(),
      "classification": {
          "model": ("ResNet-18 (torchvision layout), 1000 classes, random init (torch "
                    "seed 0), sigmoid scores (TorchRay's); Flax weights converted from the "
                    "torch ones"),
          "peer": peer_note, "input_size": cls_size, "num_masks": cls_n, "grid_size": cls_s,
          "p1": 0.5,
          "ms_per_mask": {k: 1e3 * v.wall / cls_n for k, v in tc.items()},
          "memory_runs": mem_cls,
          **{k: v for k, v in cls.items() if k not in ("timings", "peer")},
      },
      "segmentation": {
          "model": ("fully convolutional net " + " -> ".join(
              f"{n}({ci}->{co}, {k}x{k}, stride {st})" for n, ci, co, k, st in SEG_LAYERS)
              + ", x2 nearest upsample before up2, ReLU, sigmoid output, 1 class; same "
              "weights in Flax and torch"),
          "peer": ("interpret_segmentation.rise.SegmentationRISE 1.0.0: construction + "
                   "generate_masks + forward + RISEResult.max(), under torch.no_grad(); "
                   f"{is_b}: the same with its forward batched (our patch)"),
          "input_size": seg_size, "num_masks": seg_n, "grid_size": seg_s, "p1": p1,
          "speedup_vs_interpret_segmentation_mean_merge": (
              ts["interpret_segmentation"].wall / ts["rise_jax_mean"].wall),
          "memory_runs": mem_seg,
          "memory_growth_mb": {k: v[1]["peak_rss_mb"] - v[0]["peak_rss_mb"]
                               for k, v in mem_seg.items()},
          **{k: v for k, v in seg.items() if k != "timings"},
      },
  }
  timings = {f"classification/{k}": v for k, v in tc.items()}
  timings.update({f"segmentation/{k}": v for k, v in ts.items()})
  mc = mem_cls
  common.print_headlines(headlines, [
      (f"cls s/image rise_jax, {peer} ({cls_size}px, N={cls_n})",
       f"{tc['rise_jax'].wall:.2f}, {tc[peer].wall:.2f}"),
      (f"cls peak RSS MiB rise_jax, {peer}",
       f"{mc['jax-cls']['peak_rss_mb']:.0f}, {mc[peer_kind]['peak_rss_mb']:.0f}"),
      (f"seg s/image rise_jax max, interpret-seg, interpret-seg batch {b}",
       f"{ts['rise_jax_max'].wall:.2f}, {ts['interpret_segmentation'].wall:.2f}, "
       f"{ts[is_b].wall:.2f}"),
      *[(f"seg peak RSS MiB {k} N={seg_ns[0]}, {seg_ns[1]}",
         f"{v[0]['peak_rss_mb']:.0f}, {v[1]['peak_rss_mb']:.0f}") for k, v in mem_seg.items()],
  ])
  print(f"wrote {common.write_result('peer', meta, headlines, details, timings, args.out)}")


if __name__ == "__main__":
  sys.exit(main())
