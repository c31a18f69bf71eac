"""Figures: saliency overlays and deletion/insertion curves, written as PNG.

Everything renders through matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``), never through ``pyplot``, so importing this module changes no global
backend and works on headless machines and in threads.

Figure sizes are fixed (no ``bbox_inches="tight"``), so the PNG pixel size is predictable:
``save_overlays`` writes ``(PANEL_PX * (K + 1)) x (PANEL_PX + TITLE_PX)`` pixels (W x H) and
``save_curves`` writes ``CURVE_SIZE_PX``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANEL_PX = 200
TITLE_PX = 30
CURVE_SIZE_PX = (480, 360)  # (width, height)
_DPI = 100


def _minmax(x: np.ndarray) -> np.ndarray:
  """Min-max scales ``x`` to [0, 1]; a constant array maps to zeros."""
  x = np.asarray(x, np.float64)
  lo, hi = np.min(x), np.max(x)
  if not np.isfinite(lo) or not np.isfinite(hi):
    raise ValueError("array contains non-finite values")
  if hi - lo <= 0:
    return np.zeros_like(x)
  return (x - lo) / (hi - lo)


def _check_image(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image must have shape [H, W, 3], got {image.shape}")
  return image


def display_image(image: np.ndarray) -> np.ndarray:
  """The image as displayed: min-max scaled to [0, 1] over all channels together.

  Args:
    image: float32[H, W, 3] in any range (e.g. normalised model input).

  Returns:
    float64[H, W, 3] in [0, 1].
  """
  return _minmax(_check_image(image))


def overlay(
  image: np.ndarray,
  saliency: np.ndarray,
  *,
  alpha: float = 0.5,
  cmap: str = "jet",
) -> np.ndarray:
  """Blends a colour-mapped saliency map over an image.

  ``out = round(255 * ((1 - alpha) * minmax(image) + alpha * cmap(minmax(saliency))))``, where
  ``minmax`` scales to [0, 1] (a constant array maps to 0).

  Args:
    image: float32[H, W, 3] in any range; min-max scaled to [0, 1] for display.
    saliency: float32[H, W] saliency map, any range.
    alpha: Weight of the heat map in [0, 1]; 0 returns the scaled image.
    cmap: A matplotlib colormap name.

  Returns:
    uint8[H, W, 3] RGB.

  Raises:
    ValueError: For mismatched shapes, ``alpha`` outside [0, 1] or an unknown colormap.
  """
  image = _check_image(image)
  saliency = np.asarray(saliency)
  if saliency.shape != image.shape[:2]:
    raise ValueError(
      f"saliency must have the image's shape {image.shape[:2]}, got {saliency.shape}"
    )
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}")
  if cmap not in matplotlib.colormaps:
    raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
  heat = matplotlib.colormaps[cmap](_minmax(saliency))[..., :3]
  out = (1.0 - alpha) * _minmax(image) + alpha * heat
  return np.clip(np.round(255.0 * out), 0, 255).astype(np.uint8)


def _save(fig: Figure, path: str | os.PathLike) -> str:
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png", dpi=_DPI)
  return path


def save_overlays(
  path: str | os.PathLike,
  image: np.ndarray,
  maps: np.ndarray,
  titles: Sequence[str],
  *,
  alpha: float = 0.5,
  cmap: str = "jet",
) -> str:
  """Writes one PNG row: the image, then one overlay per saliency map.

  Args:
    path: Output ``.png`` path; parent folders are created.
    image: float32[H, W, 3] in any range.
    maps: float32[K, H, W] saliency maps (each min-max scaled on its own).
    titles: ``K`` panel titles, one per map (the image panel is titled "image").
    alpha: Heat-map weight, see :func:`overlay`.
    cmap: Colormap name, see :func:`overlay`.

  Returns:
    The path written. The PNG is ``PANEL_PX * (K + 1)`` wide and ``PANEL_PX + TITLE_PX`` high.

  Raises:
    ValueError: For mismatched shapes or a wrong number of titles.
  """
  image = _check_image(image)
  maps = np.asarray(maps)
  if maps.ndim != 3 or maps.shape[1:] != image.shape[:2]:
    raise ValueError(
      f"maps must have shape [K, {image.shape[0]}, {image.shape[1]}], got {maps.shape}"
    )
  if len(titles) != maps.shape[0]:
    raise ValueError(f"need one title per map ({maps.shape[0]}), got {len(titles)}")
  panels = [display_image(image)] + [overlay(image, m, alpha=alpha, cmap=cmap) for m in maps]
  names = ["image", *titles]
  n = len(panels)
  width, height = PANEL_PX * n, PANEL_PX + TITLE_PX
  fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
  for i, (panel, name) in enumerate(zip(panels, names)):
    ax = fig.add_axes((i / n, 0.0, 1.0 / n, PANEL_PX / height))
    ax.imshow(panel, interpolation="nearest")
    ax.set_axis_off()
    fig.text(
      (i + 0.5) / n, 1.0 - 0.5 * TITLE_PX / height, name, ha="center", va="center", fontsize=9
    )
  return _save(fig, path)


def save_curves(
  path: str | os.PathLike,
  curves: Mapping[str, np.ndarray],
  title: str,
) -> str:
  """Plots deletion/insertion curves on x in [0, 1], with their AUC in the legend.

  The AUC is the trapezoid rule on [0, 1]: ``(sum(a) - a[0]/2 - a[-1]/2) / (n - 1)``.

  Args:
    path: Output ``.png`` path; parent folders are created.
    curves: Name -> float32[n] scores at fractions ``linspace(0, 1, n)`` (``n >= 2``; the
      curves may have different lengths).
    title: Figure title.

  Returns:
    The path written; the PNG is ``CURVE_SIZE_PX`` (width, height) pixels.

  Raises:
    ValueError: For an empty dict or a curve that is not 1-D with at least 2 points.
  """
  if not curves:
    raise ValueError("curves must hold at least one curve, got an empty mapping")
  width, height = CURVE_SIZE_PX
  fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
  ax = fig.add_subplot(1, 1, 1)
  for name, curve in curves.items():
    a = np.asarray(curve, np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
      raise ValueError(f"curve {name!r} must be 1-D with >= 2 points, got shape {a.shape}")
    auc = (a.sum() - a[0] / 2 - a[-1] / 2) / (a.shape[0] - 1)
    ax.plot(np.linspace(0.0, 1.0, a.shape[0]), a, label=f"{name} (AUC {auc:.3f})")
  ax.set_xlim(0.0, 1.0)
  ax.set_xlabel("fraction of pixels")
  ax.set_ylabel("score")
  ax.set_title(title)
  ax.legend(loc="best", fontsize=8)
  fig.tight_layout()
  return _save(fig, path)


def save_training_curves(
  path: str | os.PathLike,
  histories: Mapping[str, Sequence[Mapping[str, float]]],
  *,
  keys: Sequence[str] = ("train_loss", "val_loss"),
) -> str:
  """Plots per-epoch training histories, one panel per run, side by side.

  Args:
    path: Output ``.png`` path; parent folders are created.
    histories: Run name -> list of per-epoch records ``{"epoch": int, "train_loss": float,
      ...}`` (the ``history.json`` of the classifier, Explainer and captioner runs).
    keys: Record entries plotted (those missing from a run are skipped).

  Returns:
    The path written; each panel is ``CURVE_SIZE_PX`` pixels.

  Raises:
    ValueError: For an empty mapping, an empty history, or a run with none of ``keys``.
  """
  if not histories:
    raise ValueError("histories must hold at least one run, got an empty mapping")
  width, height = CURVE_SIZE_PX
  n = len(histories)
  fig = Figure(figsize=(n * width / _DPI, height / _DPI), dpi=_DPI)
  for i, (name, history) in enumerate(histories.items()):
    if not history:
      raise ValueError(f"history of {name!r} is empty")
    present = [k for k in keys if all(isinstance(r.get(k), int | float) for r in history)]
    if not present:
      raise ValueError(f"history of {name!r} has none of the keys {list(keys)}")
    ax = fig.add_subplot(1, n, i + 1)
    epochs = [r.get("epoch", j + 1) for j, r in enumerate(history)]
    for k in present:
      ax.plot(epochs, [r[k] for r in history], marker=".", label=k)
    ax.set_xlabel("epoch")
    ax.set_title(name)
    ax.legend(loc="best", fontsize=8)
  fig.tight_layout()
  return _save(fig, path)


def save_map_grid(path: str, images, gts, rows: Sequence[tuple[str, np.ndarray]],
                titles: Sequence[str], row_images: Sequence[int]) -> str:
  """A grid PNG like the paper's Fig. 5: per row the image, its GT mask, then map overlays.

  Args:
    path: Output ``.png``.
    images: float32[N, H, W, 3] images (any range).
    gts: bool[N, H, W] the explained class mask of each image.
    rows: ``(row label, maps float[M, H, W])`` per row.
    titles: ``M`` column titles of the maps.
    row_images: For each row, the index into ``images``/``gts``.

  Returns:
    The path written.
  """
  if not rows:
    raise ValueError("save_map_grid needs at least one row")
  ncol = 2 + len(titles)
  panel, label_w, title_h = 1.3, 1.6, 0.3
  fig = Figure(figsize=(label_w + panel * ncol, title_h + panel * len(rows)), dpi=100)
  width, height = fig.get_size_inches()
  for r, ((label, maps), i) in enumerate(zip(rows, row_images)):
    if len(maps) != len(titles):
      raise ValueError(f"row {label!r} has {len(maps)} maps for {len(titles)} titles")
    panels = [display_image(images[i]), np.asarray(gts[i], np.float32)]
    panels += [overlay(images[i], m) for m in maps]
    y = 1.0 - (title_h + panel * (r + 1)) / height
    fig.text(0.5 * label_w / width, y + 0.5 * panel / height, label, ha="center",
             va="center", fontsize=7, wrap=True)
    for c, img in enumerate(panels):
      ax = fig.add_axes(((label_w + panel * c) / width, y, panel / width, panel / height))
      ax.imshow(img, interpolation="nearest", cmap="gray" if c == 1 else None, vmin=0, vmax=1)
      ax.set_axis_off()
      if r == 0:
        fig.text((label_w + panel * (c + 0.5)) / width, 1.0 - 0.5 * title_h / height,
                 (["image", "GT", *titles])[c], ha="center", va="center", fontsize=8)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png", dpi=100)
  return path


def save_mask_figures(folder: str, test: dict, masks: dict[str, np.ndarray],
                      num_images: int, denormalize: Callable | None = None) -> list[str]:
  """One PNG per test image: the image, its ground truth and each method's target mask.

  Args:
    folder: Output folder (``image_XXX.png``).
    test: ``{"image": float32[B, H, W, 3], "label": multi-hot [B, C], "segmentation":
      bool[B, H, W, C]}``.
    masks: ``{method: float32[B, C, H, W]}`` (timing entries are skipped).
    num_images: How many of the first images with a present class to draw.
    denormalize: Maps normalised images back to display colours (default: min-max per image).

  Returns:
    The written paths.
  """
  labels = np.asarray(test["label"]) > 0
  names = [k for k in masks if not k.endswith("_seconds_per_image")]
  paths = []
  for i in np.flatnonzero(labels.any(axis=1))[:max(num_images, 0)]:
    gt = (np.asarray(test["segmentation"][i], bool) & labels[i]).any(-1).astype(np.float32)
    target = [np.asarray(masks[k][i], np.float32)[labels[i]].max(axis=0) for k in names]
    image = np.asarray(test["image"][i], np.float32)
    paths.append(save_overlays(
        os.path.join(folder, f"image_{i:03d}.png"),
        denormalize(image) if denormalize else image, np.stack([gt, *target]),
        ["G.T.", *names]))
  return paths
