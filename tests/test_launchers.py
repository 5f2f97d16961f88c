"""Scaling configs: the SLURM launcher and trainer compose with the values the docs promise, the
Optuna studies name only keys that exist, and a real sweep runs through submitit's local
executor (the same submit/pickle/collect path as SLURM, without a cluster)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.training.config import validate_config

from conftest import TINY_OVERRIDES, run_cli


@pytest.fixture
def compose_with_hydra(tmp_path: Path) -> Iterator:
    """Compose ``train`` with its ``hydra`` node kept (launcher and sweeper live there)."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
            cfg = compose(
                config_name="train",
                return_hydra_config=True,
                overrides=[f"paths.root_dir={tmp_path}", *overrides],
            )
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves as in a real run
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def task_part(cfg: DictConfig) -> DictConfig:
    """The run's config without ``hydra``, as the task function receives it."""
    task = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(task):
        del task["hydra"]
        task.paths.output_dir = "out"
    return task


def test_slurm_launcher_follows_the_trainer(compose_with_hydra) -> None:
    cfg = compose_with_hydra(
        "hydra/launcher=slurm", "trainer=slurm", "trainer.devices=4", "trainer.num_nodes=2"
    )
    launcher = cfg.hydra.launcher
    # typed by the plugin's schema: a mistyped value fails at start, not at submission
    # (by name: Hydra's plugin discovery imports the plugin module under its own module object)
    assert OmegaConf.get_type(launcher).__qualname__ == "SlurmQueueConf"
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    # one task per device (Lightning checks devices == SLURM_NTASKS_PER_NODE), one GPU each
    assert launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4
    assert launcher.nodes == 2
    assert launcher.timeout_min == 1440 and launcher.cpus_per_task == 8
    assert launcher.mem_gb == 64 and launcher.partition is None
    assert launcher.array_parallelism == 16 and launcher.max_num_timeout == 0
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    trainer = cfg.trainer
    assert (trainer.strategy, trainer.devices, trainer.num_nodes) == ("ddp", 4, 2)
    assert trainer.accelerator == "gpu"
    validate_config(task_part(cfg))  # every trainer key is a Trainer argument


def test_slurm_launcher_writes_the_expected_sbatch_script(
    compose_with_hydra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's own launch(), up to the point where it would call sbatch: the script it
    submits asks for what Lightning's SLURMEnvironment then checks (tasks per node = devices)."""
    import shutil

    import submitit
    import submitit.slurm.slurm as submitit_slurm
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    cfg = compose_with_hydra(
        "hydra/launcher=slurm",
        "trainer=slurm",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    which = shutil.which
    monkeypatch.setattr(
        submitit_slurm.shutil,
        "which",  # no cluster here: pretend srun exists
        lambda name, *a, **k: "/usr/bin/srun" if name == "srun" else which(name),
    )

    class Submitted(Exception):
        pass

    def capture(self: submitit.AutoExecutor, fn: object, *args: object) -> None:
        raise Submitted(
            self._executor._make_submission_file_text("COMMAND", "uid")
            + f"\n# jobs {len(args[0])}, array_parallelism "
            f"{self._executor.parameters.get('array_parallelism')}"
        )

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    launcher = SlurmLauncher(**{k: v for k, v in params.items() if k != "_target_"})
    launcher.setup(hydra_context=None, task_function=None, config=cfg)  # type: ignore[arg-type]
    with pytest.raises(Submitted) as submitted:
        launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    script = str(submitted.value)
    for line in (
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --nodes=2",
        "#SBATCH --time=1440",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --partition=gpu",
        "# jobs 2, array_parallelism 16",
    ):
        assert line in script.splitlines(), (line, script)
    assert "srun" in script and "COMMAND" in script  # one srun: one process per task


def test_slurm_launcher_defaults_to_one_task(compose_with_hydra) -> None:
    cfg = compose_with_hydra("hydra/launcher=slurm")
    assert cfg.trainer.devices == 1
    assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.nodes == 1
    with pytest.raises(Exception, match="timeout_min"):  # the schema types every field
        compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.timeout_min=soon")


@pytest.mark.parametrize(
    "study,experiment",
    [
        ("synthetic_optuna", "synthetic/base_bce_nonlinear_linear_synthetic_synthetic"),
        ("videolt_optuna", "videolt/base_bce_nonlinear_linear_resnet101_videolt"),
    ],
)
def test_optuna_study_configs(compose_with_hydra, study: str, experiment: str) -> None:
    cfg = compose_with_hydra(f"experiment={experiment}", f"hparams_search={study}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == 1234
    assert sweeper.n_trials > 1 and cfg.hydra.mode == RunMode.MULTIRUN  # -m optional
    assert cfg.monitor == "val/mAP"  # what vltr-train returns to the sweeper
    # a misspelled search-space key would only fail inside every trial: check them here
    task = task_part(cfg)
    for key in sweeper.params:
        assert OmegaConf.select(task, key, throw_on_missing=True) is not None, key
    validate_config(task)
    # the monitored metric switches with one override
    assert compose_with_hydra(f"hparams_search={study}", "monitor=val/mAP_tail").monitor == (
        "val/mAP_tail"
    )


@pytest.mark.e2e
@pytest.mark.skipif("VLTR_ROOT" in os.environ, reason="the default paths are under test")
def test_multirun_with_default_paths(tmp_path: Path) -> None:
    # no paths.root_dir, no hydra.sweep.dir: the sweep directory hangs off ${hydra:runtime.cwd},
    # which Hydra only resolves inside jobs unless vltr.training.hydra_callbacks sets it up first
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    proc = run_cli(
        ["vltr-train", "-m", *overrides, "debug=fast", "logger=none", "seed=0,1"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    for job in (0, 1):
        metrics = json.loads((sweeps[0] / str(job) / "metrics.json").read_text())
        assert metrics["best_ckpt"].startswith(str(sweeps[0] / str(job)))  # absolute paths
    assert list((tmp_path / "data").glob("synthetic-*.h5"))


@pytest.mark.e2e
def test_submitit_local_sweep_runs_one_job_per_member(tmp_path: Path) -> None:
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            "hydra/launcher=submitit_local",
            f"paths.root_dir={tmp_path}",
            *overrides,
            "debug=fast",
            "logger=none",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    for job in (0, 1):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert metrics["run"]["job_num"] == job and metrics["run"]["seed"] == job
        assert 0.0 <= metrics["test"]["mAP"] <= 1.0
    # each member ran as its own submitit job (its own process, pickled result)
    results = list((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2, sorted(p.name for p in (sweep / ".submitit").rglob("*"))
