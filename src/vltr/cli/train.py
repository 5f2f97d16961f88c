"""``vltr-train``: fit, select the best checkpoint on val, test it, print the H/M/T table.

A thin ``@hydra.main`` over :func:`vltr.training.train.train`, which tests and other tools
call with a composed config. One line and exit 2 for bad input (a file, a key, a value);
in a multirun every job runs, and the sweep exits 1 when any job failed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vltr.cli.common import find_user_error, hydra_errors, one_line, user_errors
from vltr.training.hydra_callbacks import FAILED_JOB_FILE, sweep_failures
from vltr.training.loggers import finish_wandb
from vltr.training.train import train
from vltr.utils.io import write_json_atomic
from vltr.utils.warnings import quiet_known_warnings

log = logging.getLogger("vltr.train")

# what a failed sweep member returns to a sweeper: the worst possible mAP, so an Optuna study
# records the trial as bad instead of stopping
FAILED_VALUE = 0.0


@hydra.main(version_base="1.3", config_path="pkg://vltr.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    quiet_known_warnings()
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        with user_errors("vltr-train"):
            result = train(cfg)
    else:
        # in a sweep, one failing job is logged (and recorded in its directory); the others go on
        # and the sweep's end says how many failed (SweepFailures); a job run again in the same
        # directory starts without the failure record of its earlier attempt
        failed = Path(cfg.paths.output_dir) / FAILED_JOB_FILE
        failed.unlink(missing_ok=True)
        try:
            result = train(cfg)
        except Exception as e:
            user = find_user_error(e)  # bad input: its one line; anything else: a traceback
            reason = one_line(user or e)
            log.error("job %s failed: %s", HydraConfig.get().job.num, reason, exc_info=user is None)
            finish_wandb()
            write_json_atomic(
                failed,
                {
                    "error": f"{type(e).__name__}: {reason}",
                    "overrides": list(HydraConfig.get().overrides.task),
                },
            )
            return FAILED_VALUE
    # the value Hydra sweepers (optuna) optimise: the monitored val metric of the best checkpoint
    monitor = str(cfg.get("monitor", "val/mAP"))
    return result["val"].get(monitor.split("/", 1)[-1])


def main() -> None:
    """``vltr-train``: one line and exit 2 for Hydra's own errors; exit 1 after a multirun in
    which any job failed (every job runs; the failed ones are listed)."""
    with hydra_errors("vltr-train"):
        hydra_main()
    if sweep_failures():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
