"""Hydra config tree: every group option composes and validates; bad keys fail at start."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from omegaconf import DictConfig

from vltr.training.config import validate_config
from vltr.utils.errors import ConfigError

from conftest import main_exit, run_cli

CONF = resources.files("vltr.conf")
Compose = Callable[..., DictConfig]


def options(group: str) -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in CONF.joinpath(group).iterdir() if p.name.endswith(".yaml")
    )


GROUPS = [
    "dataset",
    "features",
    "aggregator",
    "head",
    "strategy",
    "method",
    "schedule",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "debug",
]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(compose_cfg: Compose, group: str, option: str) -> None:
    cfg = compose_cfg(f"{group}={option}")
    validate_config(cfg)


def test_paper_presets_use_their_papers_schedules(compose_cfg: Compose) -> None:
    cfg = compose_cfg("experiment=videolt/base_bce_nonlinear_linear_resnet101_videolt")
    assert cfg.features.dim == 2048 and cfg.features.frames == 150
    assert cfg.schedule.optimizer.lr == pytest.approx(1e-4)
    assert cfg.trainer.max_epochs == 100 and cfg.dataset.batch_size == 128
    assert cfg.dataset.clip_frames == 60 and cfg.aggregator.hidden_dim == 2048
    assert list(cfg.schedule.scheduler.milestones) == [30, 60]
    assert cfg.trainer.gradient_clip_val == 20.0
    assert cfg.dataset.groups == {"head_min": 500, "tail_max": 100}
    move = compose_cfg("experiment=move/move_bce_move-dual_nonlinear_resnet50_videolt")
    assert move.schedule.optimizer.lr == pytest.approx(1e-3)
    assert list(move.schedule.scheduler.milestones) == [50]
    assert move.aggregator._target_.endswith("MoveDualAggregator")
    assert move.method._target_.endswith("MoveModule")
    # milestones are fractions of the run's epochs: a short run keeps the paper's shape
    short = compose_cfg(
        "experiment=videolt/base_bce_nonlinear_linear_resnet101_videolt", "trainer.max_epochs=10"
    )
    assert list(short.schedule.scheduler.milestones) == [3, 6]


@pytest.mark.parametrize(
    "method,aggregator,head",
    [
        ("base", "NonLinearFrameAggregator", "LinearHead"),
        ("framestack", "NonLinearFrameAggregator", "LinearHead"),
        ("move", "MoveDualAggregator", "NonLinearHead"),
        ("medc", "NonLinearFrameAggregator", "LinearHead"),
        ("meid", "FrameAttentionAggregator", "LinearHead"),
    ],
)
def test_an_imbalance_ratio_sweep_runs_each_method_on_its_own_architecture(
    compose_cfg: Compose, method: str, aggregator: str, head: str
) -> None:
    # the README's sweep: -m method=base,framestack,move dataset=synthetic_balanced
    # dataset.imbalance_ratio=...; each member composes as its own method would alone
    cfg = compose_cfg(
        f"method={method}", "dataset=synthetic_balanced", "dataset.imbalance_ratio=0.01"
    )
    assert cfg.aggregator._target_.endswith(aggregator)
    assert cfg.head._target_.endswith(head)
    assert cfg.dataset.imbalance_ratio == 0.01
    validate_config(cfg)


def test_eval_config_composes(compose_cfg: Compose) -> None:
    from vltr.training.config import EvalSchema

    cfg = compose_cfg("ckpt_path=x.ckpt", config_name="eval")
    validate_config(cfg, EvalSchema)
    cfg = compose_cfg(
        "ckpt_path=x.ckpt", "dataset=synthetic", "features=synthetic", config_name="eval"
    )
    validate_config(cfg, EvalSchema)


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "+trainer.max_epoch=3",
            "trainer.max_epoch: unknown key for lightning.pytorch.Trainer "
            "(did you mean 'max_epochs'?)",
        ),
        ("+dataset.batch_sise=3", "dataset.batch_sise: unknown key"),
        ("+aggregator.hiden_dim=3", "did you mean 'hidden_dim'?"),
        ("+strategy.loss.gamma=2", "strategy.loss.gamma: unknown key"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected"),
        ("dataset.batch_size=1.5", "dataset.batch_size: expected int"),
        ("features.dim=abc", "features.dim"),
        ("+learning_rate=0.1", "learning_rate"),
        ("schedule.optimizer._target_=torch.optim.Adamm", "cannot import 'torch.optim.Adamm'"),
        ("+method.eta=0.3", "method.eta: unknown key for vltr.methods.base.VideoRecognitionModule"),
    ],
)
def test_bad_keys_fail_with_one_clear_message(
    compose_cfg: Compose, override: str, message: str
) -> None:
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_misspelled_key_one_line_exit_2(tmp_path: Path) -> None:
    proc = run_cli(
        ["vltr-train", f"paths.root_dir={tmp_path}", "+trainer.max_epoch=1"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "vltr-train: error: trainer.max_epoch: unknown key for lightning.pytorch.Trainer "
        "(did you mean 'max_epochs'?)"
    )
    assert not (tmp_path / "data").exists()  # failed before touching any data


def test_cli_missing_store_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VLTR_VIDEOLT_DIR", str(tmp_path / "nowhere"))
    code, last = main_exit(
        monkeypatch,
        capsys,
        "vltr-train",
        f"paths.root_dir={tmp_path}",
        "dataset=videolt",
        "features=resnet101",
    )
    assert code == 2
    assert last == (
        f"vltr-train: error: {tmp_path}/nowhere/videolt-resnet101.h5: no such feature store"
    )


def test_drw_epoch_scales_with_run_length(compose_cfg: Compose) -> None:
    cfg = compose_cfg("experiment=videolt/base_ldam-drw_nonlinear_linear_resnet101_videolt")
    assert cfg.strategy.loss.drw_epoch == 50  # VideoLT: epoch 50 of 100
    cfg = compose_cfg("strategy=ldam_drw")
    assert cfg.strategy.loss.drw_epoch == 20
