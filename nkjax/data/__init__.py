"""Datasets: embedded offline data, TFDS loaders and batching."""
