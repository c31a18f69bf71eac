"""Metrics that score saliency maps (they never import a saliency method)."""

from rise_jax.metrics.causal import auc, deletion, insertion
from rise_jax.metrics.class_specific import class_specific_table
from rise_jax.metrics.explainer import explainer_scores, sanity_baselines
from rise_jax.metrics.pointing import PointingGame, pointing_game
from rise_jax.metrics.segmentation import segmentation_scores
from rise_jax.metrics.statistics import (
    BootstrapCI,
    PairedDifference,
    bootstrap_ci,
    mean_of_class_means,
    paired_difference,
)

__all__ = [
    "BootstrapCI",
    "PairedDifference",
    "PointingGame",
    "auc",
    "bootstrap_ci",
    "class_specific_table",
    "deletion",
    "explainer_scores",
    "insertion",
    "mean_of_class_means",
    "paired_difference",
    "pointing_game",
    "sanity_baselines",
    "segmentation_scores",
]
