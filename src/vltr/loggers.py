"""Experiment loggers built from config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_has_credentials() -> bool:
    """True when W&B can authenticate without asking: WANDB_API_KEY or a stored login."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(wandb.Api(timeout=1).api_key)  # reads the netrc/settings, no network
    except Exception:
        return False


def wandb_logger(
    project: str = "vltr",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    save_dir: str = ".",
    mode: str = "auto",
    **kwargs: Any,
) -> WandbLogger:
    """A :class:`WandbLogger` whose ``mode`` may be ``auto``: online with credentials, else offline.

    ``WANDB_MODE`` in the environment wins over the config (``disabled`` in tests, ``offline``
    on clusters without network). Offline runs land in ``save_dir/wandb/offline-run-*``; upload
    them later with ``wandb sync``.
    """
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode must be auto/online/offline/disabled, got {mode!r}")
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "auto":
        mode = "online" if wandb_has_credentials() else "offline"
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(project=project, name=name, group=group, tags=list(tags),
                       save_dir=save_dir, offline=mode == "offline",
                       mode=None if mode == "offline" else mode, **kwargs)


def finish_wandb() -> None:
    """Close the active W&B run, so consecutive multirun jobs do not merge into one run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
