"""NN-Explainer training losses (Stalder et al., eq. 1-8), as pure, jittable JAX functions.

Notation: ``B`` images, ``C`` classes, masks of ``H x W = Z`` pixels. The Explainer predicts one
mask per class, ``masks float[B, C, H, W]`` in ``[0, 1]`` (channel-first, one mask per class);
``labels`` is the multi-hot ground truth ``Y`` as ``[B, C]`` (bool or 0/1).

* ``m = max_{c in Y} s_c`` (target mask), ``n = max_{c not in Y} s_c`` (non-target mask); 0 where
  the image has no such class.
* ``Lc = mean_{b, c} BCE(sigmoid(F(x * m))[b, c], Y[b, c])`` (eq. 2, mean over classes, then
  over the batch).
* ``Le = mean_b (1/C) sum_c p~_c log p~_c`` with ``p~ = softmax(F(x * (1 - m)))`` (eq. 3, the
  *negative* entropy: minimising it makes the complement's prediction uniform).
* ``La = A(m) + A(n) + Bbar`` (eq. 6) with ``A(x) = mean_{i,j} x[i, j]`` and ``Bbar`` the
  per-image mean of ``B(s_c)`` over the present classes (eq. 4-5, see :func:`bounds_loss`).
* ``Ltv = TV(m) + TV(n)`` (eq. 7-8, anisotropic, see :func:`tv`).

The total (eq. 1) splits ``la * La`` into the three coefficients the authors tune separately::

  L = Lc + le * Le + l_area_m * A(m) + l_area_n * A(n) + l_bounds * Bbar + ltv * Ltv

Every batch term is averaged over the images. The loss functions check only shapes (static, so
safe under ``jax.jit``); value checks (masks in ``[0, 1]``, multi-hot labels, finite logits) live
in :func:`check_inputs`, to call on concrete arrays outside the jitted step.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_MIN_AREA = 0.05
DEFAULT_MAX_AREA = 0.3


# ----------------------------------------------------------------------------------------------
# Validation.


def _shape(x, name: str) -> tuple[int, ...]:
  if not hasattr(x, "shape"):
    raise TypeError(f"{name} must be an array (numpy or jax), got {type(x).__name__}")
  return tuple(x.shape)


def _check_masks_labels(masks, labels) -> None:
  ms, ls = _shape(masks, "masks"), _shape(labels, "labels")
  if len(ms) != 4 or min(ms) < 1:
    raise ValueError(f"masks must have shape [B, C, H, W] (non-empty), got shape {list(ms)}")
  if ls != ms[:2]:
    raise ValueError(
        f"labels must have shape [B, C] = {list(ms[:2])} to match masks (one multi-hot entry per "
        f"class mask), got shape {list(ls)}")


def _check_logits_labels(logits, labels, name: str) -> None:
  gs, ls = _shape(logits, name), _shape(labels, "labels")
  if len(gs) != 2 or min(gs) < 1:
    raise ValueError(f"{name} must have shape [B, C] (non-empty), got shape {list(gs)}")
  if ls != gs:
    raise ValueError(
        f"labels must have shape [B, C] = {list(gs)} to match {name}, got shape {list(ls)}")


def _check_area_bounds(a, b) -> tuple[float, float]:
  for value, name in ((a, "a"), (b, "b")):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
      raise ValueError(
          f"{name} (area bound) must be a Python number in the open interval (0, 1), "
          f"got {value!r}")
  if not a < b:
    raise ValueError(f"the minimum area a must be smaller than the maximum area b, got a={a!r}, "
                     f"b={b!r}")
  return float(a), float(b)


def check_inputs(masks=None, labels=None, logits_masked=None, logits_inverse=None) -> None:
  """Validates concrete loss inputs (call outside ``jax.jit``; never on tracers).

  Any argument may be omitted; the shapes of those given must agree.

  Args:
    masks: float[B, C, H, W] class masks, finite with values in ``[0, 1]``.
    labels: multi-hot [B, C] (bool or exactly 0/1).
    logits_masked: float[B, C] explanandum logits on ``x * m``, finite.
    logits_inverse: float[B, C] explanandum logits on ``x * (1 - m)``, finite.

  Raises:
    ValueError: naming the offending argument and what is allowed.
  """
  if labels is not None:
    ls = _shape(labels, "labels")
    if len(ls) != 2:
      raise ValueError(f"labels must be multi-hot with shape [B, C], got shape {list(ls)}")
    lab = np.asarray(labels)
    if not np.all((lab == 0) | (lab == 1)):
      raise ValueError("labels must be multi-hot: bool or exactly 0/1 per class")
  if masks is not None:
    ms = _shape(masks, "masks")
    if len(ms) != 4 or min(ms) < 1:
      raise ValueError(f"masks must have shape [B, C, H, W] (non-empty), got shape {list(ms)}")
    arr = np.asarray(masks, np.float64)
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
      raise ValueError(
          f"masks must be finite with values in [0, 1] (apply a sigmoid), got range "
          f"[{np.nanmin(arr):.4g}, {np.nanmax(arr):.4g}]")
    if labels is not None:
      _check_masks_labels(masks, labels)
  for logits, name in ((logits_masked, "logits_masked"), (logits_inverse, "logits_inverse")):
    if logits is None:
      continue
    if labels is not None:
      _check_logits_labels(logits, labels, name)
    else:
      gs = _shape(logits, name)
      if len(gs) != 2 or min(gs) < 1:
        raise ValueError(f"{name} must have shape [B, C] (non-empty), got shape {list(gs)}")
    if not np.all(np.isfinite(np.asarray(logits, np.float64))):
      raise ValueError(f"{name} must be finite (raw logits of the explanandum)")
  if logits_masked is not None and logits_inverse is not None:
    if _shape(logits_masked, "logits_masked") != _shape(logits_inverse, "logits_inverse"):
      raise ValueError(
          f"logits_masked and logits_inverse must have the same shape [B, C], got "
          f"{list(logits_masked.shape)} and {list(logits_inverse.shape)}")


# ----------------------------------------------------------------------------------------------
# Loss terms.


def aggregate_masks(masks: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Target and non-target masks (element-wise maxima over present / absent classes).

  Args:
    masks: float[B, C, H, W] class masks in ``[0, 1]``.
    labels: multi-hot [B, C] ground-truth classes ``Y``.

  Returns:
    ``(m, n)``, both float[B, H, W]: ``m = max_{c in Y} s_c``, ``n = max_{c not in Y} s_c``;
    0 where the image has no present (for ``m``) or no absent (for ``n``) class.
  """
  _check_masks_labels(masks, labels)
  masks = jnp.asarray(masks)
  present = (jnp.asarray(labels) > 0)[:, :, None, None]
  zero = jnp.zeros((), masks.dtype)
  m = jnp.max(jnp.where(present, masks, zero), axis=1)
  n = jnp.max(jnp.where(present, zero, masks), axis=1)
  return m, n


def classification_loss(logits_masked: jax.Array, labels: jax.Array) -> jax.Array:
  """Multi-label BCE of ``sigmoid(F(x * m))`` against ``Y`` (eq. 2).

  ``Lc = -mean_{b, c} [Y log sigma(z) + (1 - Y) log(1 - sigma(z))]``, computed stably from the
  logits as ``softplus(z) - Y z``.

  Args:
    logits_masked: float[B, C] explanandum logits on the masked images ``x * m``.
    labels: multi-hot [B, C].

  Returns:
    Scalar: mean over classes and batch.
  """
  _check_logits_labels(logits_masked, labels, "logits_masked")
  z = jnp.asarray(logits_masked)
  y = jnp.asarray(labels).astype(z.dtype)
  return jnp.mean(jax.nn.softplus(z) - y * z)


def entropy_loss(logits_inverse: jax.Array) -> jax.Array:
  """Negative entropy of the prediction on the mask complement (eq. 3).

  ``Le = mean_b (1/C) sum_c p~_c log p~_c`` with ``p~ = softmax(F(x * (1 - m)))``. It lies in
  ``[-log(C) / C, 0]``; minimising it pushes ``p~`` towards uniform (maximum entropy).

  Args:
    logits_inverse: float[B, C] explanandum logits on ``x * (1 - m)``.

  Returns:
    Scalar.
  """
  gs = _shape(logits_inverse, "logits_inverse")
  if len(gs) != 2 or min(gs) < 1:
    raise ValueError(f"logits_inverse must have shape [B, C] (non-empty), got shape {list(gs)}")
  logp = jax.nn.log_softmax(jnp.asarray(logits_inverse), axis=-1)
  return jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1) / gs[1])


def area(x: jax.Array) -> jax.Array:
  """``A(x) = (1/Z) sum_{i,j} x[i, j]`` per image.

  Args:
    x: float[B, H, W] masks.

  Returns:
    float[B] mean mask value of each image.
  """
  return jnp.mean(jnp.asarray(x), axis=(-2, -1))


def _num_ones(z: int, frac: float) -> int:
  # floor(Z * frac), guarded against float round-off (e.g. 0.29 * 100 = 28.999999999999996).
  return int(math.floor(z * frac + 1e-9))


def bounds_per_class(masks: jax.Array, *, a: float = DEFAULT_MIN_AREA,
                     b: float = DEFAULT_MAX_AREA) -> jax.Array:
  """Area-bound penalty ``B(s_c)`` of every class mask (eq. 4-5).

  With ``q = sort(vec(s_c))`` in *descending* order, ``k_a = floor(Z a)``, ``k_b = floor(Z b)``,
  ``q_min = [1] * k_a + [0] * (Z - k_a)`` and ``q_max = [1] * k_b + [0] * (Z - k_b)``::

    B(s) = (1/Z) sum_i max(q_min[i] - q[i], 0) + (1/Z) sum_i max(q[i] - q_max[i], 0)
         = (1/Z) [ sum_{i < k_a} (1 - q[i]) + sum_{i >= k_b} q[i] ]      (for q in [0, 1])

  i.e. the ``k_a`` largest values are pushed up to 1 (area at least ``a``) and the
  ``Z - k_b`` smallest ones down to 0 (area at most ``b``); anything in between is free.

  Args:
    masks: float[B, C, H, W] class masks in ``[0, 1]``.
    a: minimum area fraction, ``0 < a < b``.
    b: maximum area fraction, ``a < b < 1``.

  Returns:
    float[B, C] ``B(s_c)`` of every image and class.
  """
  a, b = _check_area_bounds(a, b)
  ms = _shape(masks, "masks")
  if len(ms) != 4 or min(ms) < 1:
    raise ValueError(f"masks must have shape [B, C, H, W] (non-empty), got shape {list(ms)}")
  z = ms[2] * ms[3]
  flat = jnp.asarray(masks).reshape(ms[0], ms[1], z)
  q = -jnp.sort(-flat, axis=-1)  # descending
  idx = np.arange(z)
  q_min = jnp.asarray(idx < _num_ones(z, a), q.dtype)
  q_max = jnp.asarray(idx < _num_ones(z, b), q.dtype)
  below = jnp.maximum(q_min - q, 0.0)
  above = jnp.maximum(q - q_max, 0.0)
  return jnp.sum(below + above, axis=-1) / z


def bounds_loss(masks: jax.Array, labels: jax.Array, *, a: float = DEFAULT_MIN_AREA,
                b: float = DEFAULT_MAX_AREA) -> jax.Array:
  """Last term of eq. 6: mean of ``B(s_c)`` over each image's present classes, batch-averaged.

  Per image ``Bbar_i = sum_c Y[i, c] B(s_c) / sum_c Y[i, c]``. Images without any present class
  have an empty sum (eq. 6 would divide by 0) and are skipped: the batch mean runs over images
  with at least one present class only, and the term is 0 if there is none in the batch.

  Args:
    masks: float[B, C, H, W] class masks in ``[0, 1]``.
    labels: multi-hot [B, C].
    a: minimum area fraction, ``0 < a < b``.
    b: maximum area fraction, ``a < b < 1``.

  Returns:
    Scalar.
  """
  _check_masks_labels(masks, labels)
  per_class = bounds_per_class(masks, a=a, b=b)
  y = (jnp.asarray(labels) > 0).astype(per_class.dtype)
  count = jnp.sum(y, axis=-1)
  has = count > 0
  per_image = jnp.sum(y * per_class, axis=-1) / jnp.where(has, count, 1.0)
  n_images = jnp.sum(has)
  return jnp.sum(jnp.where(has, per_image, 0.0)) / jnp.maximum(n_images, 1).astype(
      per_class.dtype)


def area_loss(masks: jax.Array, labels: jax.Array, m: jax.Array, n: jax.Array, *,
              a: float = DEFAULT_MIN_AREA, b: float = DEFAULT_MAX_AREA) -> jax.Array:
  """Area regulariser ``La = A(m) + A(n) + Bbar`` (eq. 6), batch-averaged.

  ``A`` is the mean mask value (:func:`area`) averaged over all images; ``Bbar`` is
  :func:`bounds_loss` (images without a present class skipped).

  Args:
    masks: float[B, C, H, W] class masks in ``[0, 1]``.
    labels: multi-hot [B, C].
    m: float[B, H, W] target masks (:func:`aggregate_masks`).
    n: float[B, H, W] non-target masks.
    a: minimum area fraction, ``0 < a < b``.
    b: maximum area fraction, ``a < b < 1``.

  Returns:
    Scalar.
  """
  _check_aggregated(masks, m, n)
  return jnp.mean(area(m)) + jnp.mean(area(n)) + bounds_loss(masks, labels, a=a, b=b)


def _check_aggregated(masks, m, n) -> None:
  ms = _shape(masks, "masks")
  for x, name in ((m, "m"), (n, "n")):
    xs = _shape(x, name)
    if len(ms) == 4 and xs != (ms[0],) + ms[2:]:
      raise ValueError(
          f"{name} must have shape [B, H, W] = {[ms[0], ms[2], ms[3]]} to match masks, got "
          f"shape {list(xs)}")


def tv(x: jax.Array) -> jax.Array:
  """Anisotropic total variation per image (eq. 7), normalised by the pixel count ``Z``.

  ``TV(x) = (sum_{i, j} |x[i+1, j] - x[i, j]| + sum_{i, j} |x[i, j+1] - x[i, j]|) / Z`` with
  ``Z = H W``, as the paper writes it (SPEC: "mean over pixels").

  Args:
    x: float[B, H, W] masks.

  Returns:
    float[B].
  """
  xs = _shape(x, "x")
  if len(xs) != 3 or min(xs) < 1:
    raise ValueError(f"x must have shape [B, H, W] (non-empty), got shape {list(xs)}")
  x = jnp.asarray(x)
  total = (jnp.sum(jnp.abs(x[:, 1:, :] - x[:, :-1, :]), axis=(1, 2))
           + jnp.sum(jnp.abs(x[:, :, 1:] - x[:, :, :-1]), axis=(1, 2)))
  return total / (xs[1] * xs[2])


def tv_loss(m: jax.Array, n: jax.Array) -> jax.Array:
  """Smoothness loss ``Ltv = TV(m) + TV(n)`` (eq. 8), batch-averaged; see :func:`tv`.

  Args:
    m: float[B, H, W] target masks.
    n: float[B, H, W] non-target masks.

  Returns:
    Scalar.
  """
  if _shape(m, "m") != _shape(n, "n"):
    raise ValueError(f"m and n must have the same shape [B, H, W], got {list(m.shape)} and "
                     f"{list(n.shape)}")
  return jnp.mean(tv(m)) + jnp.mean(tv(n))


# ----------------------------------------------------------------------------------------------
# Total loss and the authors' coefficients.


@dataclasses.dataclass(frozen=True)
class Coefficients:
  """Loss weights of eq. 1, with ``la`` split as in the authors' table (SPEC §6).

  ``L = Lc + le Le + l_area_m A(m) + l_area_n A(n) + l_bounds Bbar + ltv Ltv``. Frozen and
  hashable, so it can be a static argument of ``jax.jit``.

  Attributes:
    le: weight of the negative-entropy loss.
    ltv: weight of the total-variation loss.
    l_bounds: weight of the area-bound term ``Bbar``.
    l_area_m: weight of the target-mask area ``A(m)``.
    l_area_n: weight of the non-target-mask area ``A(n)``.
    a: minimum area fraction of present-class masks, ``0 < a < b``.
    b: maximum area fraction, ``a < b < 1``.
    lr: learning rate the authors used with Adam (not part of the loss; kept with the preset).
  """

  le: float = 1.0
  ltv: float = 1.0
  l_bounds: float = 1.0
  l_area_m: float = 0.1
  l_area_n: float = 0.3
  a: float = DEFAULT_MIN_AREA
  b: float = DEFAULT_MAX_AREA
  lr: float = 1e-5

  def __post_init__(self):
    for name in ("le", "ltv", "l_bounds", "l_area_m", "l_area_n"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
          math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or not (
        math.isfinite(self.lr) and self.lr > 0):
      raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
    _check_area_bounds(self.a, self.b)


PRESETS: dict[str, Coefficients] = {
    "voc-vgg16": Coefficients(lr=1e-5, le=1.0, ltv=1.0, l_bounds=1.0, l_area_m=0.1,
                              l_area_n=0.3),
    "voc-resnet50": Coefficients(lr=1e-4, le=3.0, ltv=1.0, l_bounds=0.8, l_area_m=0.01,
                                 l_area_n=0.3),
    "coco-vgg16": Coefficients(lr=1e-5, le=1.0, ltv=0.3, l_bounds=0.3, l_area_m=0.03,
                               l_area_n=0.1),
    "coco-resnet50": Coefficients(lr=1e-5, le=3.0, ltv=0.05, l_bounds=0.1, l_area_m=0.01,
                                  l_area_n=0.03),
}
VOC_VGG16 = PRESETS["voc-vgg16"]
VOC_RESNET50 = PRESETS["voc-resnet50"]
COCO_VGG16 = PRESETS["coco-vgg16"]
COCO_RESNET50 = PRESETS["coco-resnet50"]


def preset(name: str) -> Coefficients:
  """The authors' coefficients for ``name`` in :data:`PRESETS` (case-insensitive)."""
  key = str(name).lower().replace("_", "-")
  if key not in PRESETS:
    raise ValueError(f"name must be one of {sorted(PRESETS)}, got {name!r}")
  return PRESETS[key]


def explainer_loss(logits_masked: jax.Array, logits_inverse: jax.Array, masks: jax.Array,
                   labels: jax.Array, coeffs: Coefficients = VOC_VGG16
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total NN-Explainer loss (eq. 1).

  ``L = Lc + le Le + l_area_m A(m) + l_area_n A(n) + l_bounds Bbar + ltv Ltv`` with ``m, n``
  from :func:`aggregate_masks`. Jittable with ``coeffs`` static (or closed over); validate
  concrete inputs with :func:`check_inputs` beforehand.

  Args:
    logits_masked: float[B, C] explanandum logits on ``x * m``.
    logits_inverse: float[B, C] explanandum logits on ``x * (1 - m)``.
    masks: float[B, C, H, W] class masks in ``[0, 1]``.
    labels: multi-hot [B, C].
    coeffs: loss weights and area bounds.

  Returns:
    ``(loss, terms)``: scalar loss and the unweighted terms ``{"classification", "entropy",
    "area_m", "area_n", "bounds", "area", "tv"}`` (``area = area_m + area_n + bounds``).
  """
  if not isinstance(coeffs, Coefficients):
    raise ValueError(f"coeffs must be a Coefficients instance, got {type(coeffs).__name__}")
  _check_masks_labels(masks, labels)
  _check_logits_labels(logits_masked, labels, "logits_masked")
  _check_logits_labels(logits_inverse, labels, "logits_inverse")
  m, n = aggregate_masks(masks, labels)
  terms = {
      "classification": classification_loss(logits_masked, labels),
      "entropy": entropy_loss(logits_inverse),
      "area_m": jnp.mean(area(m)),
      "area_n": jnp.mean(area(n)),
      "bounds": bounds_loss(masks, labels, a=coeffs.a, b=coeffs.b),
      "tv": tv_loss(m, n),
  }
  terms["area"] = terms["area_m"] + terms["area_n"] + terms["bounds"]
  loss = (terms["classification"] + coeffs.le * terms["entropy"]
          + coeffs.l_area_m * terms["area_m"] + coeffs.l_area_n * terms["area_n"]
          + coeffs.l_bounds * terms["bounds"] + coeffs.ltv * terms["tv"])
  return loss, terms
