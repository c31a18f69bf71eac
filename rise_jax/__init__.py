"""rise_jax: black-box saliency for image models in JAX (RISE, Segmentation RISE, ...)."""

from rise_jax.engine import batch_mesh
from rise_jax.masks import generate_masks, load_masks, save_masks
from rise_jax.rise import RiseInfo, rise, segmentation_rise

__all__ = [
    "RiseInfo",
    "batch_mesh",
    "generate_masks",
    "load_masks",
    "rise",
    "save_masks",
    "segmentation_rise",
]

__version__ = "0.1.0"
