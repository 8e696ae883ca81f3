"""Submit: submission files, upload through the Kaggle API, the ledger and leaderboard."""
