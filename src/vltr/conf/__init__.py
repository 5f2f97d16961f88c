"""vltr's Hydra config tree. Importing it (Hydra does, to find the configs) registers the
OmegaConf resolvers the configs use."""

from __future__ import annotations

from omegaconf import OmegaConf


def _epoch_fraction(max_epochs: int, fraction: float) -> int:
    """``int(max_epochs * fraction)``: schedule points that scale with the run's length."""
    return int(int(max_epochs) * float(fraction))


OmegaConf.register_new_resolver("vltr.epoch_fraction", _epoch_fraction, replace=True)
