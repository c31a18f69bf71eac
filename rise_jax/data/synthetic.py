"""A synthetic multi-label "shapes" dataset with exact segmentation masks and boxes.

Each image shows 1 to 3 objects of distinct classes drawn from six shapes (square, circle,
triangle, cross, ring, diamond) with a random colour, size and position, on a noisy textured
background. Because the scene is generated, the ground truth (labels, per-class masks, boxes)
is exact, which makes it the embedded benchmark for every saliency method and metric.

Generation is pure NumPy and deterministic: example ``i`` of split ``s`` with seed ``seed`` is
drawn from ``np.random.default_rng([seed, split_id(s), i])``, so it does not depend on
``num_examples`` (``make(s, 10)[:5] == make(s, 5)``) and the splits never share a stream.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "ring", "diamond")
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

# Fixed normalisation: raw RGB in [0, 1] -> (raw - MEAN) / STD. Measured on the train split
# (seed 0, 64x64), so a normalised image has mean ~0 and std ~1 per channel. The all-zeros
# substrate in normalised space is thus the mean colour.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.205, 0.205, 0.205)

_MAX_OBJECTS = 3
_PLACEMENT_TRIES = 20
_MAX_ROTATION = np.deg2rad(15.0)
_OVERLAP_PROB = 0.3  # objects that may overlap earlier ones (partial occlusion)
_MIN_VISIBLE = 0.6  # an occluded object keeps at least this fraction visible


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """The filled shape ``cls`` in unit coordinates (object radius 1, centred at 0).

  Args:
    cls: Shape class id in ``[0, 6)``.
    u: float32[H, W] vertical offset from the centre divided by the radius.
    v: float32[H, W] horizontal offset from the centre divided by the radius.

  Returns:
    bool[H, W] pixels inside the shape.
  """
  au, av = np.abs(u), np.abs(v)
  if cls == 0:  # square
    return np.maximum(au, av) <= 0.8
  if cls == 1:  # circle
    return u * u + v * v <= 1.0
  if cls == 2:  # triangle, apex up
    return (u >= -0.9) & (u <= 0.8) & (av <= 0.95 * (u + 0.9) / 1.7)
  if cls == 3:  # cross
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
  if cls == 4:  # ring
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)
  if cls == 5:  # diamond
    return au + av <= 1.0
  raise ValueError(f"shape class must be in [0, {len(CLASS_NAMES)}), got {cls}")


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
  """A textured background: a random base colour, smooth stripes and pixel noise.

  Returns:
    ``(image, base)``: float64[size, size, 3] raw RGB (not clipped) and the base colour [3].
  """
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  base = rng.uniform(0.2, 0.8, size=3)
  texture = np.zeros((size, size), np.float64)
  for _ in range(3):
    freq = rng.uniform(1.0, 6.0) * 2 * np.pi / size
    angle = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    texture += np.sin(freq * (np.cos(angle) * yy + np.sin(angle) * xx) + phase)
  tint = rng.uniform(-1.0, 1.0, size=3)
  image = base + 0.05 * texture[..., None] * tint + rng.normal(0.0, 0.06, (size, size, 3))
  return image, base


def cue_mask(size: int) -> np.ndarray:
  """bool[size, size]: where the spurious cue (a checkerboard patch, top-left) is drawn."""
  mask = np.zeros((size, size), bool)
  side = max(4, size // 6)
  mask[1:1 + side, 1:1 + side] = True
  return mask


def _draw_cue(image: np.ndarray, size: int) -> np.ndarray:
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  checker = ((yy // 2 + xx // 2) % 2).astype(np.float64)
  return np.where(cue_mask(size)[..., None], checker[..., None], image)


def _example(
  rng: np.random.Generator, size: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Draws one scene.

  Returns:
    ``(image, segmentation, full)``: raw RGB float64[H, W, 3], bool[H, W, C] visible pixels
    and int64[C] the full (unoccluded) pixel count of each drawn class.
  """
  image, base = _background(rng, size)
  full = np.zeros(num_classes, np.int64)
  seg = np.zeros((size, size, num_classes), bool)
  occupied = np.zeros((size, size), bool)
  yy, xx = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
  num_objects = int(rng.integers(1, min(_MAX_OBJECTS, num_classes) + 1))
  classes = rng.choice(num_classes, size=num_objects, replace=False)
  for cls in classes:
    radius = rng.uniform(0.12, 0.22) * size
    # Small rotations only: a square turned by 45 degrees is a diamond (and a cross an "x").
    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    cos, sin = np.cos(angle), np.sin(angle)
    allow_overlap = rng.random() < _OVERLAP_PROB
    for _ in range(_PLACEMENT_TRIES):
      cy, cx = rng.uniform(radius, size - radius, size=2)
      u, v = (yy - cy) / radius, (xx - cx) / radius
      mask = _shape_mask(int(cls), cos * u - sin * v, sin * u + cos * v)  # rotated
      if not (mask & occupied).any():
        break
      # Partial occlusion: every earlier object keeps at least _MIN_VISIBLE of its pixels.
      if allow_overlap and all((seg[..., c] & ~mask).sum() >= _MIN_VISIBLE * full[c]
                               for c in np.flatnonzero(full)):
        break
    while True:  # a colour that stands out from the background base colour
      colour = rng.uniform(0.0, 1.0, size=3)
      if np.abs(colour - base).sum() >= 0.6:
        break
    shade = colour + rng.normal(0.0, 0.03, (size, size, 3))
    image = np.where(mask[..., None], shade, image)
    seg[mask] = False  # later objects occlude earlier ones
    seg[..., cls] |= mask
    full[cls] = mask.sum()
    occupied |= mask
  return image, seg, full


def make(
  split: str,
  num_examples: int,
  seed: int = 0,
  image_size: int = 128,
  num_classes: int = 6,
  spurious: bool = False,
) -> dict[str, np.ndarray]:
  """Generates the synthetic shapes dataset.

  Args:
    split: One of ``"train"``, ``"val"``, ``"test"``; each split uses its own random stream.
    num_examples: Number of examples ``N >= 0``.
    seed: Dataset seed.
    image_size: Side ``H = W`` of the square images, at least 16 (default 128; the CPU
      benchmark configs use 64, and 224 works).
    num_classes: Number of shape classes ``C`` in ``[1, 6]``; the first ``C`` of
      :data:`CLASS_NAMES` are used.
    spurious: Add the "spurious cue" variant: a checkerboard patch (:func:`cue_mask`) drawn on
      90% of the train/val images that contain class 0 and 10% of the others, and on 50% of
      the test images independently of their classes. A classifier that learns the cue is
      revealed by saliency on the patch.

  Returns:
    A dict of NumPy arrays:
      ``"image"``: float32[N, H, W, 3], normalised with :data:`MEAN`/:data:`STD`
        (mean ~0, std ~1).
      ``"label"``: float32[N, C] multi-hot; ``label[n, c] == 1`` iff class ``c`` is visible.
      ``"segmentation"``: bool[N, H, W, C] visible pixels of each class (occlusion applied).
      ``"boxes"``: float32[N, C, 4] ``(y0, x0, y1, x1)`` in pixels, end-exclusive, enclosing
        ``segmentation[n, ..., c]``; zeros for absent classes.
      ``"difficult"``: bool[N, C] present classes with less than 80% of the object visible
        (partial occlusion; at least 60% always stays visible).
      ``"cue"``: bool[N] whether the spurious cue is drawn (all False unless ``spurious``).

  Raises:
    ValueError: For an unknown split or an out-of-range argument.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
  if num_examples < 0:
    raise ValueError(f"num_examples must be >= 0, got {num_examples}")
  if image_size < 16:
    raise ValueError(f"image_size must be >= 16, got {image_size}")
  if not 1 <= num_classes <= len(CLASS_NAMES):
    raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")

  n, s, c = num_examples, image_size, num_classes
  images = np.empty((n, s, s, 3), np.float32)
  segs = np.empty((n, s, s, c), bool)
  full = np.zeros((n, c), np.int64)
  cue = np.zeros(n, bool)
  for i in range(n):
    rng = np.random.default_rng([seed, SPLITS[split], i])
    images[i], segs[i], full[i] = _example(rng, s, c)
    if spurious:
      cue_rng = np.random.default_rng([seed, SPLITS[split], i, 1])
      if split == "test":
        cue[i] = cue_rng.random() < 0.5
      else:
        cue[i] = cue_rng.random() < (0.9 if segs[i, ..., 0].any() else 0.1)
      if cue[i]:
        images[i] = _draw_cue(images[i], s)
        segs[i][cue_mask(s)] = False

  images = (np.clip(images, 0.0, 1.0) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
  labels = segs.any(axis=(1, 2)).astype(np.float32)
  rows = segs.any(axis=2)  # [N, H, C]
  cols = segs.any(axis=1)  # [N, W, C]
  idx = np.arange(s)[None, :, None]
  big = s + 1
  boxes = np.stack(
    [
      np.where(rows, idx, big).min(axis=1),
      np.where(cols, idx, big).min(axis=1),
      np.where(rows, idx, -1).max(axis=1) + 1,
      np.where(cols, idx, -1).max(axis=1) + 1,
    ],
    axis=-1,
  ).astype(np.float32)
  boxes *= labels[..., None]
  visible = segs.sum(axis=(1, 2))
  difficult = (labels > 0) & (visible < 0.8 * np.maximum(full, 1))
  return {"image": images, "label": labels, "segmentation": segs, "boxes": boxes,
          "difficult": difficult, "cue": cue}


def denormalize(images: np.ndarray) -> np.ndarray:
  """Maps normalised images back to raw RGB.

  Args:
    images: float32[..., 3] normalised images.

  Returns:
    float32[..., 3] raw RGB, in [0, 1] for images made by :func:`make`.
  """
  return images * np.asarray(STD, np.float32) + np.asarray(MEAN, np.float32)
