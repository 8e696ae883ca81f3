"""Data: the tf.data input pipeline, augmentation layers and a preview of batches."""
