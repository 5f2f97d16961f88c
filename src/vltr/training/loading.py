"""Load a trained model from a ``vltr-train`` checkpoint, for notebooks and scripts.

    import vltr

    model = vltr.load_model("logs/train/runs/<run>/checkpoints/epoch012.ckpt")
    model.module                     # the LightningModule, weights loaded, in eval mode
    model.config                     # the run's resolved config (dataset, features, method...)
    model.datamodule                 # its DataModule, built from that config
    preds = model.predict("test")    # per-video scores and labels (vltr.evaluation.predictions)

The checkpoint is read with ``torch.load(..., weights_only=True)`` (no pickled code runs) and
needs nothing but what ``vltr-train`` stores in it: the weights and the resolved run config,
from which the DataModule and the module are built exactly as training built them. The module
needs the dataset's class counts (losses and groups depend on them), so the store the run
trained on must be readable; ``dataset`` overrides (``path=...`` for a moved store) apply to
the DataModule config first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.data.datamodule import VideoFeatureDataModule
from vltr.evaluation.predictions import Predictions
from vltr.utils.errors import ConfigError, StoreError


@dataclass
class TrainedModel:
    """A trained module with the config and DataModule of its run (see :func:`load_model`)."""

    module: L.LightningModule
    config: DictConfig
    datamodule: VideoFeatureDataModule
    ckpt_path: Path

    def predict(self, split: str = "test") -> Predictions:
        """Scores (logits, float32) and labels of every video of ``split``, in store order."""
        if split not in ("val", "test"):
            raise ValueError(f"split must be val or test, got {split!r}")
        dm = self.datamodule
        dm.setup("predict")
        loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
        device = next(self.module.parameters()).device
        scores, targets, index = [], [], []
        self.module.eval()
        with torch.no_grad():
            for batch in loader:
                mask = batch.mask.to(device) if batch.mask is not None else None
                scores.append(self.module(batch.features.to(device), mask).float().cpu())
                targets.append(batch.targets.cpu() > 0.5)
                index.append(batch.index.cpu())
        info = dm.info()
        idx = torch.cat(index).numpy()
        order = np.argsort(idx, kind="stable")
        ids = np.asarray(dm.store.video_ids(), dtype=str)
        return Predictions(
            index=idx[order],
            video_ids=ids[idx[order]],
            scores=torch.cat(scores).numpy()[order],
            targets=torch.cat(targets).numpy()[order],
            class_names=np.asarray(info.class_names),
            class_counts=info.class_counts,
            head_min=info.head_min,
            tail_max=info.tail_max,
            split=split,
        )


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A ``vltr-train`` checkpoint's contents, loaded weights-only (one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, foreign, or holding objects weights-only refuses
        raise StoreError(
            f"{path}: not a readable checkpoint ({str(e).strip().splitlines()[0]})"
        ) from None
    if (
        not isinstance(ckpt, dict)
        or "state_dict" not in ckpt
        or "config" not in (ckpt.get("vltr") or {})
    ):
        raise ConfigError(f"{path}: not a vltr checkpoint (no weights or stored run config)")
    return ckpt


def load_model(
    ckpt_path: str | os.PathLike[str], map_location: Any = "cpu", **dataset: Any
) -> TrainedModel:
    """The trained module of a ``vltr-train`` checkpoint, with its run's config and DataModule.

    ``dataset``: overrides of the run's ``dataset`` config (default ``num_workers=0``, which
    suits notebooks); e.g. ``path="/new/place/videolt-resnet101.h5"``.
    """
    from vltr.training.builders import build_datamodule, build_module
    from vltr.training.config import validate_config

    ckpt = read_checkpoint(ckpt_path, map_location)
    cfg = OmegaConf.create(ckpt["vltr"]["config"])
    with open_dict(cfg):
        cfg.dataset.num_workers = 0
        for key, value in dataset.items():
            cfg.dataset[key] = value
    validate_config(cfg)  # the stored config is checked like a command line
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.info())
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{ckpt_path}: the checkpoint's weights do not fit the model its "
            f"config builds ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, e.g. {(missing or unexpected)[0]})"
        )
    module.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    module.eval()
    return TrainedModel(module=module, config=cfg, datamodule=datamodule, ckpt_path=Path(ckpt_path))
