"""Evaluation beyond the plain split metrics (resampled test distributions)."""
