"""Checkpoints and configs run no code, and every bad option is one line with exit status 2.

A crafted checkpoint (a pickle whose object runs a shell command when unpickled) is refused by
``vltr-eval``, ``init_ckpt`` and resuming; the run config stored in a checkpoint is checked like
a command line and instantiates only allow-listed classes; evaluation never writes into the
folders recorded in a checkpoint; a checkpoint of another class count or feature dim, a
truncated or empty ``last.ckpt``, out-of-range values, Hydra's own composition errors, an unset
``???`` value, an unwritable output folder and failed multirun jobs all end in one line.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from vltr.training.config import validate_config
from vltr.utils.errors import CheckpointError, ConfigError, VltrError

from conftest import TINY_OVERRIDES, compose_at, main_exit, run_cli

SRC = Path(__file__).resolve().parents[1] / "src" / "vltr"
EPOCHS = ["schedule.epochs=2", "schedule.scheduler.milestones=[1]"]
TINY = [
    o
    for o in TINY_OVERRIDES
    if not o.startswith(("trainer.max_epochs", "schedule.epochs", "schedule.scheduler.milestones"))
]
# the dataset part of TINY (vltr-eval ... dataset=synthetic)
TINY_DATA = [o for o in TINY if o.lstrip("+").startswith(("dataset.", "features."))]


class RunsCode:
    """Unpickling this runs ``touch marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A real 2-epoch run (root, run directory with checkpoints/epoch00{0,1}.ckpt, last.ckpt)."""
    from vltr.training.train import train

    root = tmp_path_factory.mktemp("security")
    run = root / "run"
    cfg = compose_at(root, *TINY, *EPOCHS, "logger=none", out=run)
    train(cfg)
    GlobalHydra.instance().clear()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    yield root, run


def best(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("epoch*.ckpt"))[-1]


def crafted(run: Path, dest: Path, marker: Path) -> Path:
    """A real checkpoint of ``run`` with an object that runs code when unpickled."""
    ckpt = torch.load(best(run), map_location="cpu", weights_only=True)
    ckpt["vltr"]["note"] = RunsCode(marker)
    torch.save(ckpt, dest)
    return dest


def with_config(run: Path, dest: Path, **changes: object) -> Path:
    """A real checkpoint of ``run`` whose stored config has ``changes`` (dotted keys)."""
    ckpt = torch.load(best(run), map_location="cpu", weights_only=True)
    for dotted, value in changes.items():
        node = ckpt["vltr"]["config"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    torch.save(ckpt, dest)
    return dest


def one_line_error(proc, prog: str) -> str:  # noqa: ANN001
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"{prog}: error: "), lines[-3:]
    return lines[-1]


# ------------------------------------------------------------------------ checkpoints: no code
@pytest.mark.e2e
def test_crafted_checkpoint_is_refused_by_vltr_eval(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    evil = crafted(trained[1], tmp_path / "evil.ckpt", marker)
    before = evil.read_bytes()
    proc = run_cli(["vltr-eval", f"ckpt_path={evil}", f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    line = one_line_error(proc, "vltr-eval")
    assert line.startswith(f"vltr-eval: error: {evil}: refused: its pickle asks for posix.system")
    assert not marker.exists(), "the checkpoint's code ran"
    assert evil.read_bytes() == before


@pytest.mark.parametrize("option", ["init_ckpt", "ckpt_path"])
def test_crafted_checkpoint_is_refused_by_init_ckpt_and_resume(
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
) -> None:
    marker = tmp_path / "code-ran"
    evil = crafted(trained[1], tmp_path / "evil.ckpt", marker)
    code, line = main_exit(
        monkeypatch,
        capsys,
        "vltr-train",
        *TINY,
        *EPOCHS,
        "logger=none",
        f"paths.root_dir={trained[0]}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"{option}={evil}",
    )
    assert code == 2
    assert line.startswith(
        f"vltr-train: error: {evil}: refused: its pickle asks for posix.system"
    ), line
    assert f"({option};" in line
    assert not marker.exists(), "the checkpoint's code ran"
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_no_weights_only_false_in_the_package() -> None:
    offenders = [
        f"{p}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"weights_only\s*=\s*False", line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"aggregator._target_": "posix.system"},
            "aggregator._target_='posix.system' is not a vltr",
        ),
        ({"aggregator._target_": "torch.load"}, "aggregator._target_='torch.load' is not a model"),
        ({"strategy.loss._target_": "vltr.utils.io.write_text_atomic"}, "strategy.loss._target_="),
        ({"dataset.name": "${oc.env:HOME}"}, "dataset.name is an interpolation"),
        ({"dataset.clip_frames": 0}, "dataset.clip_frames: must be >= 1, got 0"),
        ({"aggregator.hidden_dimm": 3}, "aggregator.hidden_dimm: unknown key"),
    ],
)
def test_stored_config_is_checked_and_allow_listed(
    trained: tuple[Path, Path], tmp_path: Path, change: dict, message: str
) -> None:
    from vltr.training.evaluate import load_run_config

    path = with_config(trained[1], tmp_path / "x.ckpt", **change)
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(err.value).startswith(f"{path}: stored config: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def eval_cfg(root: Path, ckpt: Path, *overrides: str) -> DictConfig:
    return compose_at(
        root,
        f"ckpt_path={ckpt}",
        "trainer.enable_progress_bar=false",
        "splits=[val]",
        *overrides,
        config_name="eval",
        out=root / "eval",
    )


def test_eval_uses_its_own_data_dir(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """The synthetic cache is made in this evaluation's paths.data_dir, never in the
    (absolute) directory recorded in the checkpoint."""
    from vltr.training.evaluate import evaluate

    recorded = tmp_path / "recorded" / "data"
    ckpt = with_config(
        trained[1],
        tmp_path / "m.ckpt",
        **{"dataset.data_dir": str(recorded), "paths.data_dir": str(recorded)},
    )
    root = tmp_path / "evalroot"
    results = evaluate(eval_cfg(root, ckpt))
    assert 0 <= results["val"]["mAP"] <= 1
    assert not recorded.parent.exists()
    assert list((root / "data").glob("synthetic-*.h5"))


@pytest.mark.parametrize("how", ["vltr-eval", "resume", "init_ckpt"])
def test_checkpoint_of_other_classes_or_dim_is_one_line(
    trained: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    from vltr.training.evaluate import evaluate
    from vltr.training.train import train

    ckpt = best(trained[1])
    if how == "vltr-eval":
        data = [o.replace("num_classes=10", "num_classes=12") for o in TINY_DATA]
        cfg = eval_cfg(tmp_path, ckpt, "dataset=synthetic", "features=synthetic", *data)
        run = evaluate
    else:
        overrides = [o.replace("features.dim=32", "features.dim=16") for o in TINY]
        option = f"init_ckpt={ckpt}" if how == "init_ckpt" else f"ckpt_path={ckpt}"
        cfg = compose_at(tmp_path, *overrides, *EPOCHS, "logger=none", option)
        run = train
    with pytest.raises(CheckpointError) as err:
        run(cfg)
    text = str(err.value)
    assert text.startswith(f"{ckpt}: weight ") and "has shape" in text and "\n" not in text
    assert "12 classes" in text if how == "vltr-eval" else "16-dim features" in text
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_last_checkpoint_names_the_others(
    trained: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    from vltr.training.train import train

    run = tmp_path / "run"
    shutil.copytree(trained[1] / "checkpoints", run / "checkpoints")
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"")
    cfg = compose_at(tmp_path, *TINY, *EPOCHS, "logger=none", "ckpt_path=last", out=run)
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    text = str(err.value)
    assert text.startswith(f"{last}: ") and "\n" not in text
    assert ("empty file" if damage == "empty" else "truncated or not a checkpoint") in text
    other = run / "checkpoints" / best(trained[1]).name  # the best-on-val one, kept beside it
    assert (
        f"other checkpoints in {run / 'checkpoints'}: {other.name} (e.g. ckpt_path={other})" in text
    )
    assert not (run / "metrics.json").exists()


# ------------------------------------------------------------------------------ config ranges
@pytest.mark.parametrize(
    "override,message",
    [
        ("dataset.clip_frames=0", "dataset.clip_frames: must be >= 1, got 0"),
        ("dataset.clip_frames=-3", "dataset.clip_frames: must be >= 1, got -3"),
        ("dataset.batch_size=0", "dataset.batch_size: must be >= 1, got 0"),
        ("dataset.batch_size=-2", "dataset.batch_size: must be >= 1, got -2"),
        ("dataset.num_workers=-1", "dataset.num_workers: must be >= 0, got -1"),
        ("dataset.synthetic.n_max=-5", "dataset.synthetic.n_max: must be >= 1, got -5"),
        ("schedule.optimizer.lr=0", "schedule.optimizer.lr: must be > 0, got 0"),
        ("schedule.optimizer.lr=-0.1", "schedule.optimizer.lr: must be > 0, got -0.1"),
    ],
)
def test_out_of_range_values_are_one_line(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_at(tmp_path, override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg)


def test_zero_clip_frames_exits_2_instead_of_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, line = main_exit(
        monkeypatch,
        capsys,
        "vltr-train",
        *TINY,
        "dataset.clip_frames=0",
        "logger=none",
        f"paths.root_dir={tmp_path}",
    )
    assert code == 2
    assert line == "vltr-train: error: dataset.clip_frames: must be >= 1, got 0"
    assert not list(tmp_path.rglob("metrics.json"))


# --------------------------------------------------------------- Hydra's errors, in one line
@pytest.mark.parametrize(
    "argv,expected",
    [
        (
            ["trainer.max_epoch=3"],
            "vltr-train: error: trainer.max_epoch: no such key (did you mean "
            "trainer.max_epochs?; to add a new key use +trainer.max_epoch=3)",
        ),
        (
            ["strategy=nope"],
            "vltr-train: error: strategy=nope: no such option (choose one of: bce, "
            "cb_loss, cbs, eql, focal, ldam_drw, mixup, srs)",
        ),
        (
            ["strategy=focall"],
            "vltr-train: error: strategy=focall: no such option (did you mean "
            "focal? choose one of: bce,",
        ),
        (["trainer.max_epochs=[1"], "vltr-train: error: no viable alternative at input '[1'"),
        (
            ["dataset=store"],
            "vltr-train: error: dataset.path: no value given (set it on the "
            "command line: dataset.path=...)",
        ),
    ],
)
def test_hydra_and_missing_value_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    expected: str,
) -> None:
    code, line = main_exit(
        monkeypatch, capsys, "vltr-train", *argv, f"paths.root_dir={tmp_path}", "logger=none"
    )
    assert code == 2
    assert line.startswith(expected), line


def test_unwritable_output_folder_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system
        folder = Path("/sys/vltr-not-writable")
        assert not _can_mkdir("/sys"), "no unwritable folder to test with"
    else:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    code, line = main_exit(
        monkeypatch,
        capsys,
        "vltr-train",
        f"hydra.run.dir={folder}/run",
        f"paths.root_dir={tmp_path}",
        "logger=none",
    )
    assert code == 2
    assert line.startswith(f"vltr-train: error: {folder}"), line
    assert ": cannot access or write (" in line and "outputs go under paths.log_dir" in line


def _can_mkdir(parent: str) -> bool:
    probe = Path(parent) / "vltr-probe"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


# ---------------------------------------------------------------------- multirun exit status
@pytest.mark.e2e
def test_multirun_with_failed_jobs_exits_nonzero_and_lists_them(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            *TINY,
            "logger=none",
            f"paths.root_dir={tmp_path}",
            f"hydra.sweep.dir={sweep}",
            "dataset.imbalance_ratio=2.0,3.0",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = [sweep / "0" / "failed.json", sweep / "1" / "failed.json"]
    assert all(p.is_file() for p in failed)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"2 of 2 jobs failed: {failed[0]}, {failed[1]}"


def test_stored_config_without_vltr_block_is_refused(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from vltr.training.evaluate import load_run_config

    ckpt = torch.load(best(trained[1]), map_location="cpu", weights_only=True)
    del ckpt["vltr"]
    torch.save(ckpt, tmp_path / "plain.ckpt")
    with pytest.raises(VltrError, match="not a vltr checkpoint"):
        load_run_config(tmp_path / "plain.ckpt")


def test_eval_reads_the_stored_config(trained: tuple[Path, Path]) -> None:
    from vltr.training.evaluate import load_run_config

    cfg = load_run_config(best(trained[1]))
    with open_dict(cfg):
        assert cfg.dataset.synthetic.num_classes == 10
    assert "logger" not in cfg and "callbacks" not in cfg  # only what evaluation builds


class MyAggregator(torch.nn.Module):
    """A user's own aggregator class, outside vltr."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()


def test_allowed_targets_widens_the_allow_list(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from vltr.training.evaluate import load_run_config

    target = f"{__name__}.MyAggregator"
    path = with_config(trained[1], tmp_path / "own.ckpt", **{"aggregator._target_": target})
    with pytest.raises(ConfigError, match="eval.allowed_targets"):
        load_run_config(path)
    cfg = load_run_config(path, [f"{__name__}."])  # eval.allowed_targets on the command line
    assert cfg.aggregator._target_ == target
