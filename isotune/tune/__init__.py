"""Tuning on ranks: measure a profile, run the Optuna studies (rank 0 drives, every rank
measures), keep the storage."""
