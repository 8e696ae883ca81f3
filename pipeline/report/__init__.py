"""Report: one self-contained HTML page per run that shows what the model learned."""
