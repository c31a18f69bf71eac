"""Training utilities: classifiers on the benchmark datasets."""
