"""Demo: a generated competition and the sandbox Kaggle server that serves it offline."""
