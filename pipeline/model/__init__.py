"""Model: the backbone registry, the classifier built on it, and device setup."""
