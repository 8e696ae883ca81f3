"""Kernel: the pipeline pushed as a Kaggle notebook session on a GPU or TPU, followed, fetched, submitted."""
