"""Acquire: the Kaggle API adapter, download, safe unpacking, image validation and the index."""
