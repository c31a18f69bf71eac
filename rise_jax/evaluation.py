"""Method x metric x dataset runner: streams a dataset, explains it, scores every map.

``evaluate(method, model_fn, dataset, metrics=...)`` calls ``method(images) -> maps
float[B, C, H, W]`` (one map per class, as :func:`rise_jax.rise` with ``classes=None``, Grad-CAM,
occlusion or an Explainer return) on each batch of the dataset, picks the maps of the classes to
score (the true labels, or the top-1 prediction) and computes the chosen metrics per
(image, class) pair. The :class:`Results` table serialises to JSON, CSV and Markdown.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from rise_jax.metrics import causal, pointing, segmentation

METRICS = ("deletion", "insertion", "pointing", "segmentation")


class Results:
  """Per-(image, class) rows plus summary means.

  Attributes:
    name: Method name.
    rows: list of dicts with ``image``, ``class`` and one column per metric value.
    pointing: The :class:`~rise_jax.metrics.PointingGame` results (when scored).
  """

  def __init__(self, name: str, rows: list[dict], pointing_results: dict | None):
    self.name = name
    self.rows = rows
    self.pointing = pointing_results

  def columns(self) -> list[str]:
    cols: list[str] = []
    for r in self.rows:
      cols += [k for k in r if k not in cols]
    return cols

  def summary(self) -> dict[str, float]:
    """Mean of every numeric column (pointing: TorchRay per-class means, all / difficult, and
    the centre baseline)."""
    out: dict[str, float] = {"pairs": len(self.rows)}
    for col in self.columns():
      if col in ("image", "class", "pointing_hit"):
        continue
      vals = [r[col] for r in self.rows if isinstance(r.get(col), int | float)]
      if vals:
        out[col] = float(np.mean(vals))
    if self.pointing is not None:
      out["pointing_all"] = self.pointing["all"]["mean"]
      out["pointing_difficult"] = self.pointing["difficult"]["mean"]
      out["pointing_centre_all"] = self.pointing["centre"]["all"]["mean"]
      out["pointing_centre_difficult"] = self.pointing["centre"]["difficult"]["mean"]
    return out

  def to_dict(self) -> dict:
    return {"method": self.name, "summary": self.summary(), "rows": self.rows,
            "pointing": self.pointing}

  def to_json(self, path: str | None = None) -> str:
    text = json.dumps(self.to_dict(), indent=2, default=to_jsonable)
    if path:
      with open(path, "w") as f:
        f.write(text + "\n")
    return text

  def to_csv(self, path: str | None = None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=self.columns())
    writer.writeheader()
    writer.writerows(self.rows)
    if path:
      with open(path, "w", newline="") as f:
        f.write(buf.getvalue())
    return buf.getvalue()

  def to_markdown(self) -> str:
    return summary_markdown([self])


def to_jsonable(v):
  """``json.dumps`` ``default=`` hook for NumPy scalars and arrays."""
  if isinstance(v, np.generic):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _fmt(v) -> str:
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.4f}"
  return str(v)


def summary_markdown(results: Sequence[Results]) -> str:
  """One Markdown table: a row per method, a column per summary figure."""
  cols: list[str] = []
  for r in results:
    cols += [k for k in r.summary() if k not in cols]
  lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  for r in results:
    s = r.summary()
    lines.append(f"| {r.name} | " + " | ".join(_fmt(s.get(c, "")) for c in cols) + " |")
  return "\n".join(lines)


def evaluate(method: Callable, model_fn: Callable, dataset: Iterable[dict], *,
             metrics: Sequence[str] = METRICS, classes: str = "true", name: str = "method",
             num_classes: int | None = None, step: int = 224,
             deletion_substrate="zeros", insertion_substrate="blur", tolerance: float = 15,
             threshold: float = 0.3, batch_size: int = 64, progress: bool = True) -> Results:
  """Runs ``method`` on every batch of ``dataset`` and scores the maps.

  Args:
    method: ``images float32[B, H, W, C_in] -> maps float[B, C, H, W]`` (all classes).
    model_fn: The black box ``images -> probabilities [b, C]`` used by deletion/insertion.
    dataset: Iterable of batches ``{"image": [B, H, W, C_in], "label": multi-hot [B, C]}``
      plus ``"segmentation": bool[B, H, W, C]`` for pointing/segmentation (or ``"boxes"``
      float[B, C, 4] for pointing).
    metrics: Any of ``"deletion"``, ``"insertion"``, ``"pointing"``, ``"segmentation"``.
    classes: ``"true"`` scores every labelled class, ``"top1"`` the top-1 predicted class.
    name: Method name for the tables.
    num_classes: ``C`` (default: the labels' width).
    step, deletion_substrate, insertion_substrate: Causal metric settings.
    tolerance: Pointing-game tolerance in pixels.
    threshold: Segmentation threshold.
    batch_size: Black-box batch for the causal metrics.
    progress: Show a progress bar.

  Returns:
    :class:`Results`.
  """
  unknown = [m for m in metrics if m not in METRICS]
  if unknown:
    raise ValueError(f"metrics must be a subset of {list(METRICS)}, got unknown {unknown}")
  if classes not in ("true", "top1"):
    raise ValueError(f"classes must be 'true' or 'top1', got {classes!r}")
  rows: list[dict] = []
  game = None
  offset = 0
  for batch in tqdm(dataset, desc=f"evaluate {name}", disable=not progress, unit="batch"):
    images = np.asarray(batch["image"], np.float32)
    labels = np.asarray(batch["label"])
    if images.ndim != 4 or labels.ndim != 2 or labels.shape[0] != images.shape[0]:
      raise ValueError(f"each batch needs image [B, H, W, C] and label [B, C], got "
                       f"{list(images.shape)} and {list(labels.shape)}")
    if game is None and "pointing" in metrics:
      game = pointing.PointingGame(num_classes or labels.shape[1], tolerance)
    maps = np.asarray(method(images))
    b, _, h, w = maps.shape if maps.ndim == 4 else (None,) * 4
    if maps.ndim != 4 or b != images.shape[0] or (h, w) != images.shape[1:3]:
      raise ValueError(f"method must return maps [B, C, H, W] = [{images.shape[0]}, C, "
                       f"{images.shape[1]}, {images.shape[2]}], got {list(maps.shape)}")
    if not np.all(np.isfinite(maps)):
      raise ValueError(f"method returned NaN or inf maps for batch starting at image {offset}")
    if classes == "true":
      pairs = [(i, int(c)) for i in range(b) for c in np.flatnonzero(labels[i])]
    else:
      top = np.argmax(np.asarray(model_fn(images)), axis=1)
      pairs = [(i, int(top[i])) for i in range(b)]
    if not pairs:
      offset += b
      continue
    idx = np.asarray([p[0] for p in pairs])
    cls = np.asarray([p[1] for p in pairs])
    sel = maps[idx, cls]
    new = [{"image": offset + int(i), "class": int(c)} for i, c in pairs]
    if "deletion" in metrics:
      aucs, _ = causal.deletion(model_fn, images[idx], sel, cls, step=step,
                                substrate=deletion_substrate, batch_size=batch_size)
      for r, a in zip(new, aucs):
        r["deletion"] = float(a)
    if "insertion" in metrics:
      aucs, _ = causal.insertion(model_fn, images[idx], sel, cls, step=step,
                                 substrate=insertion_substrate, batch_size=batch_size)
      for r, a in zip(new, aucs):
        r["insertion"] = float(a)
    if "pointing" in metrics or "segmentation" in metrics:
      seg = batch.get("segmentation")
      boxes = batch.get("boxes")
      if seg is None and (boxes is None or "segmentation" in metrics):
        raise ValueError("pointing/segmentation metrics need 'segmentation' masks in the "
                         "dataset (pointing also accepts 'boxes')")
      for r, (i, c), m in zip(new, pairs, sel):
        gt = np.asarray(seg[i, :, :, c]) if seg is not None else np.asarray(boxes[i, c])
        if "pointing" in metrics:
          r["pointing_hit"] = game.update(m, gt, c, num_present=int(labels[i].sum()))
        if "segmentation" in metrics:
          s = segmentation.segmentation_scores(m, gt, threshold=threshold)
          r.update({k: s[k] for k in ("iou", "f1", "iou_pixel", "f1_pixel")})
    rows += new
    offset += b
  return Results(name, rows, game.results() if game is not None else None)
