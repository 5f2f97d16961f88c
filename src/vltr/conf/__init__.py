"""vltr's Hydra config tree. Importing it (Hydra does, to find the configs) registers the
OmegaConf resolvers the configs use."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from omegaconf import OmegaConf


def _epoch_fraction(max_epochs: int, fraction: float) -> int:
    """``int(max_epochs * fraction)``: schedule points that scale with the run's length."""
    return int(int(max_epochs) * float(fraction))


def _epoch_fractions(epochs: int, fractions: Iterable[float]) -> list[int]:
    """``[int(epochs * f) for f in fractions]``: LR milestones at fractions of a schedule's
    epochs, so ``schedule.epochs=12`` keeps a 100-epoch paper schedule's shape."""
    return [_epoch_fraction(epochs, f) for f in fractions]


def run_group(mode: Any, sweep_dir: str, single: str) -> str:
    """The W&B group of a run: in a multirun the sweep directory's name, else ``single``.

    Every job of one ``vltr-train -m`` sweep then lands in one W&B group (the dashboard's unit
    of comparison), whatever the jobs vary; ``single`` (task and dataset) groups lone runs.
    ``mode`` is ``${hydra:mode}`` (a ``RunMode``, or None when composed without Hydra's
    launcher, as in tests).
    """
    if mode is not None and str(getattr(mode, "name", mode)).upper().endswith("MULTIRUN"):
        return PurePath(str(sweep_dir)).name
    return str(single)


def imbalance_ratio(subsample_ratio: float | None, synthetic_ratio: float | None = None) -> Any:
    """The run's imbalance ratio for dashboards: ``dataset.imbalance_ratio`` (the MOVE
    subsampling that imbalance sweeps vary) when set, else the synthetic dataset's generated
    ratio when there is one, else ``"natural"`` (the store's train split as it is)."""
    ratio = subsample_ratio if subsample_ratio is not None else synthetic_ratio
    return float(ratio) if ratio is not None else "natural"


def method_label(method: str | None, strategy: str | None) -> str:
    """The method as tables name it (``vltr-report``'s rows, the W&B workspace's groups): the
    method (``medc``, ``meid``), or the long-tail strategy for the base method (``bce``,
    ``ldam_drw``; ``framestack`` and ``move`` are strategies that are methods)."""
    if method and str(method) != "base":
        return str(method)
    return str(strategy) if strategy else "?"


def run_tags(
    user_tags: Iterable[str] | None,
    dataset: str | None,
    strategy: str | None,
    aggregator: str | None,
    method: str | None,
    ratio: Any,
) -> list[str]:
    """W&B tags ``dataset:``, ``strategy:``, ``aggregator:``, ``method:``, ``ir:`` (the value
    of :func:`imbalance_ratio`) plus the user's ``tags``, so dashboards can filter runs by what
    they compare."""
    ir = f"{float(ratio):g}" if isinstance(ratio, (int, float)) else str(ratio)
    auto = [
        f"dataset:{dataset}",
        f"strategy:{strategy}",
        f"aggregator:{aggregator}",
        f"method:{method}",
        f"ir:{ir}",
    ]
    user = [str(t) for t in (user_tags or [])]
    return auto + [t for t in user if t not in auto]


# what each config group chooses (vltr-train --help)
GROUP_HELP = {
    "dataset": "which store to train on (videolt, minikinetics200, charades*: imported with "
    "vltr-data import; store: any store, dataset.path=FILE)",
    "features": "the backbone's features: dim and frames, names the store file",
    "aggregator": "frames -> video embedding (nn.Module)",
    "head": "video embedding -> class logits: linear, or VideoLT's non-linear classifier",
    "method": "the LightningModule and its training procedure; sets its default aggregator, "
    "head or strategy (move: move_dual + nonlinear head)",
    "strategy": "image-LT long-tail strategy: loss, sampler, mixing",
    "schedule": "a paper's optimiser, LR steps, epochs and clipping (synthetic: the default)",
    "trainer": "Lightning Trainer (cpu, gpu, ddp, ddp_spawn, slurm)",
    "logger": "csv (default), wandb (adds W&B), none",
    "callbacks": "checkpointing, progress, per-video predictions, W&B class report",
    "debug": "fast: a smoke run of a few batches; overfit: a few batches, many epochs",
    "hparams_search": "an Optuna study over the run's settings (with -m)",
    "paths": "where data is cached and runs are written",
}
# method_data: a method's dataset keys, chosen by the method config itself
HIDDEN_GROUPS = ("hydra", "experiment", "method_data")


def config_groups_help() -> str:
    """The config groups and their options, for the ``vltr-train --help`` template; the
    experiment presets are counted and named by their pattern, not listed."""
    from importlib.resources import files

    root = files("vltr.conf")
    lines = []
    groups = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    width = max(len(g) for g in groups)
    for group in groups:
        if group in HIDDEN_GROUPS:
            continue
        options = sorted(p.name[:-5] for p in (root / group).iterdir() if p.name.endswith(".yaml"))
        about = GROUP_HELP.get(group, "")
        lines += textwrap.wrap(
            ", ".join(options),
            90,
            initial_indent=f"  {group:<{width}}  ",
            subsequent_indent=" " * (width + 4),
        )
        if about:
            lines += textwrap.wrap(
                about, 90, initial_indent=" " * (width + 6), subsequent_indent=" " * (width + 6)
            )
    papers = sorted(p for p in (root / "experiment").iterdir() if p.is_dir())
    counts = {
        p.name: sum(
            1 for f in p.iterdir() if f.name.endswith(".yaml") and f.name != "metafile.yaml"
        )
        for p in papers
    }
    lines.append(
        f"  {'experiment':<{width}}  {sum(counts.values())} presets by paper ("
        + ", ".join(f"{k}: {v}" for k, v in counts.items())
        + "), named"
    )
    lines.append(
        f"  {'':<{width}}    <paper>/<method>_<strategy>_<aggregator>_<head>_"
        "<features>_<dataset>, e.g."
    )
    for name in (
        "synthetic/base_bce_nonlinear_linear_synthetic_synthetic",
        "move/move_bce_move-dual_nonlinear_resnet101_videolt",
        "videolt/framestack_focal_nonlinear_linear_resnet101_videolt",
    ):
        lines.append(f"  {'':<{width}}    experiment={name}")
    lines.append(f"  {'':<{width}}    all of them: docs/presets.md, or ls {root / 'experiment'}/*")
    return "\n".join(lines)


OmegaConf.register_new_resolver("vltr.config_groups_help", config_groups_help, replace=True)
OmegaConf.register_new_resolver("vltr.epoch_fraction", _epoch_fraction, replace=True)
OmegaConf.register_new_resolver("vltr.epoch_fractions", _epoch_fractions, replace=True)
OmegaConf.register_new_resolver("vltr.run_group", run_group, replace=True)
OmegaConf.register_new_resolver("vltr.run_tags", run_tags, replace=True)
OmegaConf.register_new_resolver("vltr.imbalance_ratio", imbalance_ratio, replace=True)
OmegaConf.register_new_resolver("vltr.method_label", method_label, replace=True)
