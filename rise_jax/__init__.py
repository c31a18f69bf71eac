"""rise_jax: black-box saliency for image models in JAX (RISE, Segmentation RISE, ...)."""

from rise_jax import baselines, metrics
from rise_jax.caption import caption_rise
from rise_jax.engine import BlackBoxError, batch_mesh, host_black_box
from rise_jax.evaluation import Results, evaluate, summary_markdown
from rise_jax.iassa import IassaResult, iassa, iassa_batch
from rise_jax.masks import generate_masks, load_masks, save_masks
from rise_jax.rise import RiseInfo, rise, segmentation_rise

__all__ = [
    "BlackBoxError",
    "IassaResult",
    "Results",
    "RiseInfo",
    "baselines",
    "batch_mesh",
    "caption_rise",
    "evaluate",
    "generate_masks",
    "host_black_box",
    "iassa",
    "iassa_batch",
    "load_masks",
    "metrics",
    "rise",
    "save_masks",
    "segmentation_rise",
    "summary_markdown",
]

__version__ = "0.1.0"
