"""Find and load finished runs from their output directories.

A run directory is one that holds ``metrics.json`` (a finished ``vltr-train``) or
``failed.json`` (a sweep member that failed). Sweeps are directories of such directories, so a
path may be a run, a multirun, or any folder above them (``logs/``). Per-stage directories of
multi-stage methods (``stage1/`` under a MEID run) are part of their run, not runs of their own.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vltr.conf import imbalance_ratio, method_label
from vltr.utils.errors import StoreError

# strategies that are methods of their own (they set `method`): the row is named after them
METHOD_STRATEGIES = ("framestack", "move")


@dataclass(frozen=True)
class RunResult:
    """One run: what it was (config choices) and its best-on-val checkpoint's metrics."""

    path: Path
    dataset: str | None = None
    features: str | None = None
    aggregator: str | None = None
    strategy: str | None = None
    method: str | None = None
    imbalance_ratio: float | None = None
    seed: int | None = None
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # set for a failed sweep member
    overrides: tuple[str, ...] = ()
    experiment: str | None = None
    max_epochs: int | None = None
    # the run's record for comparing settings (vltr.analysis.settings): metrics.json's run
    # block (with the same fallbacks as the fields above), Hydra's group choices and the
    # composed config (unresolved)
    run_block: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    choices: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    composed: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def label(self) -> str:
        """The row name in the papers' tables: the method (``medc``, ``meid``), a strategy that
        is a method (``framestack``, ``move``), or the long-tail strategy (``bce``, ``cbs``)."""
        return method_label(self.method, self.strategy)

    def metrics(self, split: str) -> dict[str, float]:
        if split not in ("val", "test"):
            raise ValueError(f"split must be val or test, got {split!r}")
        return self.val if split == "val" else self.test


def project_root() -> Path:
    """Where runs and data live for the notebooks: ``$VLTR_ROOT`` (as for ``vltr-train``), else
    the working directory, or its parent when that is the repository's ``notebooks/``."""
    env = os.environ.get("VLTR_ROOT")
    if env:
        return Path(env)
    cwd = Path.cwd()
    return cwd.parent if cwd.name == "notebooks" else cwd


def latest_sweep(root: str | Path) -> Path:
    """The most recently written multirun directory under ``root/logs`` (any sweep directory:
    Hydra writes ``multirun.yaml`` into each), e.g. ``logs/train/multiruns/<timestamp>`` or a
    ``hydra.sweep.dir`` of the user's."""
    base = Path(root) / "logs"
    sweeps = [p.parent for p in base.rglob("multirun.yaml")] if base.is_dir() else []
    if not sweeps:
        raise StoreError(f"{base}: no multirun yet (run vltr-train -m ...)")
    return max(sweeps, key=lambda p: (p / "multirun.yaml").stat().st_mtime)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or under ``paths``, sorted, stage sub-directories excluded.

    A path that does not exist is an error (:class:`StoreError`, one line naming it).
    """
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise StoreError(f"{p}: no such run or sweep directory")
        if p.is_file():
            p = p.parent
        for marker in ("metrics.json", "failed.json"):
            found.update(m.parent for m in p.rglob(marker))
    # a run's stage<k>/ directories have their own metrics.json: keep only the outermost.
    # Natural order: a sweep's job 10 comes after job 9 (Hydra's order of the sweep's values)
    runs = sorted(found, key=_natural_key)
    return [r for r in runs if not any(a in found for a in r.parents)]


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


def _hydra_choices(run_dir: Path) -> dict[str, Any]:
    """Config-group choices from Hydra's own record (runs older than the ``run`` block)."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    hydra = _load_yaml(path).get("hydra", {})
    return dict(hydra.get("runtime", {}).get("choices", {}) or {})


def _hydra_overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides from Hydra's record (runs older than the run block's
    ``overrides``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return [str(o) for o in data] if isinstance(data, list) else []


def _load_yaml(path: Path) -> dict[str, Any]:
    # unresolved: Hydra's records hold ${hydra:...} interpolations only Hydra can resolve
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return data if isinstance(data, dict) else {}


def _composed(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ".hydra" / "config.yaml"
    return _load_yaml(path) if path.is_file() else {}


def load_run(run_dir: str | Path) -> RunResult:
    """Load one run directory (``metrics.json`` or ``failed.json`` plus ``.hydra/``)."""
    run_dir = Path(run_dir)
    metrics_path, failed_path = run_dir / "metrics.json", run_dir / "failed.json"
    payload: dict[str, Any] = {}
    error = None
    failed_overrides: list[str] = []
    try:
        if metrics_path.is_file():
            payload = json.loads(metrics_path.read_text())
        elif failed_path.is_file():
            failed = json.loads(failed_path.read_text())
            error = str(failed.get("error", "failed"))
            failed_overrides = list(failed.get("overrides") or [])
        else:
            raise StoreError(f"{run_dir}: not a run directory (no metrics.json or failed.json)")
    except json.JSONDecodeError as e:
        raise StoreError(f"{run_dir}: unreadable run record ({e})") from None
    run = dict(payload.get("run") or {})
    choices = _hydra_choices(run_dir)
    cfg = _composed(run_dir)
    if "imbalance_ratio" not in run:
        # as run_description records it: the subsampling ratio, else the synthetic generator's
        dataset = cfg.get("dataset") or {}
        ratio = imbalance_ratio(
            dataset.get("imbalance_ratio"), (dataset.get("synthetic") or {}).get("imbalance_ratio")
        )
        run["imbalance_ratio"] = None if ratio == "natural" else ratio
    if "seed" not in run:
        run["seed"] = cfg.get("seed")
    if "max_epochs" not in run:
        run["max_epochs"] = (cfg.get("trainer") or {}).get("max_epochs")
    if "overrides" not in run:
        run["overrides"] = failed_overrides or _hydra_overrides(run_dir)

    def pick(key: str) -> str | None:
        value = run.get(key, choices.get(key))
        return None if value is None else str(value)

    for key in ("dataset", "features", "aggregator", "strategy", "method", "experiment"):
        run[key] = pick(key)
    ir = run.get("imbalance_ratio")
    return RunResult(
        path=run_dir,
        dataset=pick("dataset") or payload.get("dataset"),
        features=pick("features"),
        aggregator=pick("aggregator"),
        strategy=pick("strategy"),
        method=pick("method"),
        imbalance_ratio=None if ir is None else float(ir),
        seed=run.get("seed"),
        val={k: float(v) for k, v in (payload.get("val") or {}).items()},
        test={k: float(v) for k, v in (payload.get("test") or {}).items()},
        error=error,
        overrides=tuple(run.get("overrides") or ()),
        experiment=pick("experiment"),
        max_epochs=run.get("max_epochs"),
        run_block=run,
        choices=choices,
        composed=cfg,
    )


def load_runs(paths: Iterable[str | Path]) -> list[RunResult]:
    """:func:`load_run` for every run directory at or under ``paths``."""
    dirs = find_run_dirs(paths)
    if not dirs:
        raise StoreError(
            f"no run found under {', '.join(map(str, paths))} (looked for "
            "metrics.json / failed.json)"
        )
    return [load_run(d) for d in dirs]


def load_per_class(run: RunResult | str | Path, split: str = "test") -> list[dict[str, Any]]:
    """Rows of ``per_class_ap_{split}.csv``: class_index, class_name, train_count, group, ap.

    A multi-stage run (MEID) keeps them in its stage directories: the last stage's are the
    run's (its result is the last stage's)."""
    run_dir = run.path if isinstance(run, RunResult) else Path(run)
    name = f"per_class_ap_{split}.csv"
    path = run_dir / name
    if not path.is_file():
        stages = sorted((p for p in run_dir.glob(f"stage*/{name}")), key=_natural_key)
        if not stages:
            raise StoreError(f"{path}: no per-class AP file for split {split!r}")
        path = stages[-1]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {
            "class_index": int(r["class_index"]),
            "class_name": r["class_name"],
            "train_count": int(r["train_count"]),
            "group": r["group"],
            "ap": float(r["ap"]),
        }
        for r in rows
    ]


def predictions_path(run: RunResult | Path, split: str = "test") -> Path:
    """A run's ``predictions_<split>.npz`` (a multi-stage run's: its last stage's)."""
    run_dir = run.path if isinstance(run, RunResult) else Path(run)
    name = f"predictions_{split}.npz"
    if (run_dir / name).is_file():
        return run_dir / name
    stages = sorted(
        run_dir.glob(f"stage*/{name}"),
        key=lambda p: int("".join(filter(str.isdigit, p.parent.name)) or 0),
    )
    if not stages:
        raise StoreError(
            f"{run_dir / name}: no per-video predictions (runs save them after "
            "testing: callbacks.test_predictions)"
        )
    return stages[-1]
