"""Hydra callbacks vltr registers in ``conf/hydra/default.yaml``."""

from __future__ import annotations

import copy
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class HydraConfigForSweeps(Callback):
    """Make ``${hydra:...}`` resolvable while a multirun is set up, not only inside its jobs.

    vltr's output paths hang off ``paths.root_dir`` = ``${oc.env:VLTR_ROOT,${hydra:runtime.cwd}}``
    (absolute paths in every file a run writes). Hydra sets the config that ``${hydra:...}``
    reads only when a job starts, but the sweeper and launcher resolve ``hydra.sweep.dir`` (and
    submitit its ``.submitit`` folder) before any job: without this callback every
    ``vltr-train -m`` (and every Optuna study) failed with "HydraConfig was not set" unless
    ``paths.root_dir`` or ``VLTR_ROOT`` was given. Each job still sets its own config.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not HydraConfig.initialized():
            # a copy: set_config marks the hydra node read-only, and the sweeper's own config
            # must stay as Hydra made it
            HydraConfig.instance().set_config(copy.deepcopy(config))
