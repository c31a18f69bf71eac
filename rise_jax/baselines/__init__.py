"""Baseline saliency methods with the same output convention as :func:`rise_jax.rise`."""

from rise_jax.baselines.gradcam import gradcam
from rise_jax.baselines.occlusion import occlusion
from rise_jax.baselines.trivial import centre_gaussian, random_map, uniform

__all__ = ["centre_gaussian", "gradcam", "occlusion", "random_map", "uniform"]
