"""Datasets: the synthetic shapes benchmark and TFDS loaders."""
