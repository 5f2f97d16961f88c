"""Hydra callbacks vltr registers in ``conf/hydra/default.yaml``."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
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


# a multirun job that failed writes this file (its one-line reason and overrides) into its
# directory and returns; the sweep goes on
FAILED_JOB_FILE = "failed.json"
_FAILED: list[Path] = []


def sweep_failures() -> list[Path]:
    """The ``failed.json`` files of the last multirun of this process (empty after a single
    run or a sweep without failures)."""
    return list(_FAILED)


class SweepFailures(Callback):
    """At the end of a multirun, say how many jobs failed and where their ``failed.json`` is.

    Every job runs to its end whatever the others do; ``vltr-train`` then exits non-zero when
    any failed (:func:`sweep_failures`), so a script or CI step that runs a sweep sees it. Runs
    in the process that launched the sweep, after every job (also for submitit/SLURM jobs,
    whose directories are on the shared file system).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _FAILED.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        if not sweep.is_dir():
            return
        jobs = sorted({p.parent for p in sweep.rglob(".hydra") if p.parent != sweep})
        failed = [job / FAILED_JOB_FILE for job in jobs if (job / FAILED_JOB_FILE).is_file()]
        _FAILED[:] = failed
        if failed:
            print(
                f"{len(failed)} of {len(jobs)} jobs failed: " + ", ".join(str(p) for p in failed),
                file=sys.stderr,
                flush=True,
            )
