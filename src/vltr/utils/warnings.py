"""Silence library warnings that are wrong or irrelevant for vltr runs (and only those)."""

from __future__ import annotations

import warnings


def quiet_known_warnings() -> None:
    # vltr's metric gathers every rank's predictions and drops DistributedSampler's padding by
    # sample index, so evaluating with several devices is exact (tested)
    warnings.filterwarnings("ignore", message=".*it is recommended to use `Trainer\\(devices=1")
    # vltr-eval restores weights only; the checkpoint callbacks of the training run do not apply
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint")
    # a deprecation inside Lightning itself, not in vltr's code
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
    # tiny debug datasets have fewer batches than the logging interval
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval")
