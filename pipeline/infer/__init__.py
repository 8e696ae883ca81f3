"""Infer: test-time augmentation, prediction with any finished run, post-processing on OOF."""
