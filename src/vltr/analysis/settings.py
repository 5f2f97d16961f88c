"""What a run's settings are, for deciding which runs a table may average.

Runs are averaged only when they differ in the seed alone. A run's settings are its config-group
choices (dataset, features, aggregator, strategy, method, experiment), its imbalance ratio and
epochs (``metrics.json``'s ``run`` block) and the value of every key any compared run overrode
on its command line, read from the run's composed config (``.hydra/config.yaml``) so that
``trainer.max_epochs=20`` given explicitly equals the default 20, and ``1e-3`` equals ``0.001``.

Keys that cannot change a result are not settings: the seed (what is averaged over), output
and logging places, progress display, the number of loader workers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from omegaconf import OmegaConf

# keys (and everything under them) that do not change what a run computes
NOT_SETTINGS: tuple[str, ...] = (
    "seed",
    "hydra",
    "paths",
    "logger",
    "tags",
    "run_name",
    "task_name",
    "ckpt_path",
    "test",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.default_root_dir",
    "callbacks.rich_progress_bar",
    "callbacks.progress_log",
    "callbacks.lr_monitor",
    "callbacks.wandb_class_report",
    "callbacks.test_predictions",
    "callbacks.model_checkpoint.save_last",
    "callbacks.model_checkpoint.dirpath",
    "dataset.num_workers",
    "dataset.pin_memory",
    "dataset.persistent_workers",
    "dataset.eval_batch_size",
)
# what a sweep's rows vary on purpose: not part of a column's identity in the sweep table
IMBALANCE_KEYS: tuple[str, ...] = (
    "imbalance_ratio",
    "dataset.imbalance_ratio",
    "dataset.synthetic.imbalance_ratio",
)
RUN_BLOCK_KEYS: tuple[str, ...] = (
    "dataset",
    "features",
    "aggregator",
    "strategy",
    "method",
    "experiment",
    "imbalance_ratio",
    "max_epochs",
)
DEFAULT = "(default)"
DELETED = "(removed)"


def _excluded(key: str, excluded: Sequence[str]) -> bool:
    return any(key == k or key.startswith(k + ".") or key.startswith(k + "/") for k in excluded)


def parse_override(override: str) -> tuple[str, str | None]:
    """``("trainer.max_epochs", "2")`` for ``trainer.max_epochs=2`` (also ``+key=``,
    ``++key=``); ``(key, None)`` for a deletion ``~key``."""
    text = override.strip()
    deleted = text.startswith("~")
    text = text.lstrip("~+")
    key, _, value = text.partition("=")
    return key.strip(), None if deleted else value.strip()


def override_keys(overrides: Iterable[str], excluded: Sequence[str] = NOT_SETTINGS) -> list[str]:
    keys = []
    for o in overrides:
        key, _ = parse_override(o)
        if key and not _excluded(key, excluded) and key not in keys:
            keys.append(key)
    return keys


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def setting_value(key: str, run: Any, node: Any = None) -> str:
    """The value of setting ``key`` for one run (a :class:`~vltr.analysis.runs.RunResult`), as
    text comparable across runs; ``node``: the run's composed config as an OmegaConf node
    (made from ``run.composed`` when not given)."""
    if key in RUN_BLOCK_KEYS and key in run.run_block:
        return _text(run.run_block[key])
    given = dict(map(parse_override, run.overrides))
    if key in given and given[key] is None:
        return DELETED
    if key in run.choices:  # a config-group choice (trainer=gpu, hydra/launcher=...)
        return _text(run.choices[key])
    if node is None and run.composed:
        node = OmegaConf.create(dict(run.composed))
    if node is not None:
        value = OmegaConf.select(node, key, default=DEFAULT, throw_on_resolution_failure=False)
        if value != DEFAULT:
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=False)
            return _text(value)
    return given.get(key) or DEFAULT


def distinguishing_settings(
    runs: Sequence[Any],
    family: Callable[[Any], Hashable],
    excluded: Sequence[str] = NOT_SETTINGS,
    check_seeds: bool = True,
) -> tuple[dict[int, str], list[str]]:
    """Split each family of runs (runs with the same ``family(run)``: a table row or column)
    by their settings.

    Returns ``({id(run): "key=value, ..."}, warnings)``: the text is empty for a run whose
    family shares one setting, else the settings that tell the family's groups apart (the
    table's ``settings`` column); one warning per family that had to be split, and one per
    group where two runs share a seed (repeats, not independent seeds; ``check_seeds``: only
    when a group is what gets averaged).
    """
    families: dict[Hashable, list[Any]] = defaultdict(list)
    for run in runs:
        families[family(run)].append(run)
    labels: dict[int, str] = {}
    warnings: list[str] = []
    for key, members in families.items():
        keys = [k for k in RUN_BLOCK_KEYS if not _excluded(k, excluded)]
        for run in members:
            keys += [k for k in override_keys(run.overrides, excluded) if k not in keys]
        nodes = {id(r): OmegaConf.create(dict(r.composed)) if r.composed else None for r in members}
        values = {id(r): tuple(setting_value(k, r, nodes[id(r)]) for k in keys) for r in members}
        distinct = sorted(set(values.values()))
        varying = [i for i in range(len(keys)) if len({v[i] for v in distinct}) > 1]
        for r in members:
            labels[id(r)] = ", ".join(f"{keys[i]}={values[id(r)][i]}" for i in varying)
        name = " / ".join(
            str(k) for k in (key if isinstance(key, tuple) else (key,)) if k is not None
        )
        if varying:
            warnings.append(
                f"{name}: {len(members)} runs differ in more than the seed "
                f"({', '.join(keys[i] for i in varying)}); not averaged: one row per setting"
            )
        for setting in distinct if check_seeds else ():
            seeds = [r.seed for r in members if values[id(r)] == setting and not r.failed]
            repeated = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
            if repeated:
                where = labels[id(next(r for r in members if values[id(r)] == setting))]
                warnings.append(
                    f"{name}{f' ({where})' if where else ''}: runs repeat seed "
                    f"{', '.join(map(str, repeated))}: their spread is not a "
                    "seed spread"
                )
    return labels, warnings
