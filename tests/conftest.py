"""Shared fixtures: tiny real stores, composed Hydra configs, subprocess runners."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from vltr.data.store import write_store
from vltr.data.synthetic import SyntheticSpec, generate

BIN = Path(sys.executable).parent

# the tests' models are tiny: one thread each beats two fighting over 2 CI cores (measured: a
# tiny training run 17 s -> 1.9 s)
torch.set_num_threads(1)

# a synthetic dataset small enough for seconds-long end-to-end runs, still long-tailed
TINY_SYNTH = dict(
    num_classes=10,
    n_max=60,
    imbalance_ratio=0.1,
    frames=24,
    dim=32,
    min_eval_per_class=4,
    latent_dim=16,
    backbone_hidden=64,
)
TINY_OVERRIDES = [
    "features.dim=32",
    "features.frames=24",
    "dataset.synthetic.num_classes=10",
    "dataset.synthetic.n_max=60",
    "dataset.synthetic.imbalance_ratio=0.1",
    "+dataset.synthetic.min_eval_per_class=4",
    "+dataset.synthetic.latent_dim=16",
    "+dataset.synthetic.backbone_hidden=64",
    "dataset.clip_frames=12",
    "dataset.batch_size=16",
    "dataset.num_workers=0",
    "dataset.groups.head_min=30",
    "dataset.groups.tail_max=10",
    "aggregator.hidden_dim=64",
    "trainer.max_epochs=12",
    "trainer.enable_progress_bar=false",
    "schedule.scheduler.milestones=[10]",
    "schedule.optimizer.lr=3e-3",
]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_spec() -> SyntheticSpec:
    return SyntheticSpec(**TINY_SYNTH)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_spec: SyntheticSpec) -> Path:
    """A real synthetic store (read-only by convention: tests that damage files copy it)."""
    return generate(tiny_spec, tmp_path_factory.mktemp("store") / "tiny.h5")


def make_store(
    path: Path,
    n: int = 12,
    t: int = 8,
    d: int = 4,
    c: int = 3,
    seed: int = 0,
    **kwargs: object,
) -> tuple[Path, np.ndarray, list[list[int]]]:
    """A small hand-made store; every class has training videos; returns (path, X, labels)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    labels = [[i % c] + ([(i + 1) % c] if i % 4 == 0 else []) for i in range(n)]
    splits = {
        "train": np.arange(0, n // 2),
        "val": np.arange(n // 2, 3 * n // 4),
        "test": np.arange(3 * n // 4, n),
    }
    write_store(
        path, x, labels=labels, class_names=[f"c{k}" for k in range(c)], splits=splits, **kwargs
    )
    return path, x, labels


def compose_at(
    root: Path, *overrides: str, config_name: str = "train", out: Path | None = None
) -> DictConfig:
    """Compose ``train`` (or ``eval``) like the CLI does, with Hydra's runtime config set, its
    paths under ``root`` and its output directory ``out`` (default ``root/out``)."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
        cfg = compose(
            config_name=config_name,
            return_hydra_config=True,
            overrides=[f"paths.root_dir={root}", *overrides],
        )
        HydraConfig.instance().set_config(cfg)
        out = out or root / "out"
        out.mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            del cfg["hydra"]
        return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``train`` (or ``eval``) like the CLI does, with Hydra's runtime config set."""

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        return compose_at(tmp_path, *overrides, config_name=config_name)

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a console script of this venv in a subprocess."""
    full_env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    exe = str(BIN / args[0])
    return subprocess.run(
        [exe, *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def train_tiny(
    compose_cfg: Callable[..., DictConfig], *overrides: str, drop: tuple[str, ...] = ()
) -> tuple[DictConfig, dict]:
    """Train in-process on the tiny synthetic data (TINY_OVERRIDES minus the ``drop`` prefixes,
    plus ``overrides``, no logger, no last.ckpt); check the metrics every run must report."""
    from vltr.training.train import train

    base = [o for o in TINY_OVERRIDES if not o.startswith(("trainer.max_epochs", *drop))]
    cfg = compose_cfg(*base, "logger=none", *overrides)
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.save_last = False
    result = train(cfg)
    for split in ("val", "test"):
        assert 0.0 <= result[split]["mAP"] <= 1.0
        assert {"mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5"} <= set(result[split])
        assert np.isfinite(result[split]["loss"])
    return cfg, result


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real multirun: 2 imbalance ratios x 2 strategies, plus one job that fails (IR 2)."""
    root = tmp_path_factory.mktemp("sweep_root")
    sweep = root / "logs" / "train" / "multiruns" / "tiny"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            *overrides,
            "trainer.max_epochs=2",
            "schedule.scheduler.milestones=[1]",
            f"paths.root_dir={root}",
            "dataset.imbalance_ratio=0.2,1.0,2.0",
            "strategy=bce,focal",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=root,
    )
    # every job ran; the two IR-2 jobs failed, so the sweep exits 1 and lists them
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("2 of 6 jobs failed: ")
    return sweep


def main_exit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prog: str, *argv: str
) -> tuple[int, str]:
    """``PROG ARGV`` in this process, through the console script's own function; returns the
    exit status and the last line of stderr (asserting there is no traceback)."""
    from vltr.cli import eval as eval_cli
    from vltr.cli import train as train_cli

    main = {"vltr-train": train_cli.main, "vltr-eval": eval_cli.main}[prog]
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # restored after the test
    # a log handler an earlier in-process run left on a stream pytest has since closed must
    # not print its own "--- Logging error ---" traceback into this run's stderr
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.setattr(
        sys, "argv", [prog, *argv, "hydra/job_logging=none", "hydra/hydra_logging=none"]
    )
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stop:
        main()
    GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return int(stop.value.code), err.strip().splitlines()[-1]
