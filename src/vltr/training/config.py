"""Config validation: a misspelled or mistyped key fails at start with a one-line message.

Two layers, both run before anything is built:

1. Dataclass schemas for the fixed part of the tree (top-level keys, ``paths``, ``features``):
   merged with ``OmegaConf.structured`` so unknown keys and wrong types are rejected.
2. Every node with a ``_target_`` (dataset, aggregator, strategy loss, method, trainer,
   loggers, callbacks, ...) is checked against the target's signature: each key must be a
   parameter of the callable (unless it takes ``**kwargs``), and values of simply-typed
   parameters (int, float, bool, str and their Optionals) must have that type. This covers
   every group a later issue adds without a schema per class.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vltr.utils.errors import ConfigError

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# a method's config keys that describe its procedure, not constructor arguments (MEID's stages)
METHOD_ONLY_KEYS = {"stages"}


@dataclass
class PathsSchema:
    root_dir: str = "."
    data_dir: str = "data"
    log_dir: str = "logs"
    output_dir: str = "."


@dataclass
class FeaturesSchema:
    name: str = "synthetic"
    dim: int = 128
    frames: int = 150


@dataclass
class StrategySchema:
    """A strategy: its loss, and optionally a training sampler and a batch transform."""

    name: str | None = None
    loss: Any = None
    sampler: Any = None
    batch_transform: Any = None


@dataclass
class ScheduleSchema:
    """A paper's optimisation schedule (``schedule=...``)."""

    epochs: int = 40
    optimizer: Any = None
    scheduler: Any = None
    gradient_clip_val: float | None = None


@dataclass
class TrainSchema:
    task_name: str = "train"
    run_name: str = "run"
    tags: list[str] = field(default_factory=list)
    seed: int = 0
    ckpt_path: str | None = None
    test: bool = True
    monitor: str = "val/mAP"
    start_stage: int = 1
    init_ckpt: str | None = None
    compile: bool = False
    paths: PathsSchema = field(default_factory=PathsSchema)
    features: FeaturesSchema = field(default_factory=FeaturesSchema)
    dataset: Any = None
    aggregator: Any = None
    head: Any = None
    strategy: StrategySchema = field(default_factory=StrategySchema)
    method: Any = None
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None


@dataclass
class EvalOptionsSchema:
    """``vltr-eval``'s ``eval.*``: the test split resampled to other class distributions
    (:mod:`vltr.evaluation.resample`; names are checked there, in one line)."""

    # null (the split as it is), one of uniform/longtailed/inverse, or a list of them
    test_distribution: Any = None
    resample_repeats: int = 5
    # videos per resampled set; null = the test split's size
    resample_size: int | None = None
    seed: int = 0
    # packages (e.g. "mypkg.") whose classes a checkpoint's stored config may instantiate,
    # besides vltr, torch and Lightning (vltr.training.checkpoints.check_allowed_targets)
    allowed_targets: list[str] = field(default_factory=list)


@dataclass
class EvalSchema:
    task_name: str = "eval"
    ckpt_path: str = "???"
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    eval: EvalOptionsSchema = field(default_factory=EvalOptionsSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    features: Any = None
    dataset: Any = None
    trainer: Any = None


def validate_config(cfg: DictConfig, schema: type = TrainSchema) -> None:
    """Raise :class:`ConfigError` naming the first bad key of ``cfg``."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        OmegaConf.merge(OmegaConf.structured(schema), plain)
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    try:
        _check_targets(plain, "")
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    _check_ranges(plain)


# (key, lowest allowed value, whether the lowest value itself is allowed); a key absent from the
# config or set to null is not checked. Values outside these ranges trained on nothing (e.g.
# clip_frames=0 sampled zero frames and exited 0) or failed deep inside torch.
RANGES: tuple[tuple[str, float, bool], ...] = (
    ("seed", 0, True),
    ("features.dim", 1, True),
    ("features.frames", 1, True),
    ("dataset.clip_frames", 1, True),
    ("dataset.batch_size", 1, True),
    ("dataset.eval_batch_size", 1, True),
    ("dataset.num_workers", 0, True),
    ("dataset.synthetic.num_classes", 2, True),
    ("dataset.synthetic.n_max", 1, True),
    ("dataset.synthetic.frames", 1, True),
    ("dataset.synthetic.dim", 1, True),
    ("dataset.synthetic.min_eval_per_class", 1, True),
    ("dataset.synthetic.latent_dim", 1, True),
    ("dataset.synthetic.backbone_hidden", 1, True),
    ("dataset.synthetic.num_superclasses", 1, True),
    ("schedule.optimizer.lr", 0, False),
    ("schedule.optimizer.weight_decay", 0, True),
    ("schedule.epochs", -1, True),
    ("trainer.max_epochs", -1, True),
    ("trainer.devices", 1, True),
    ("trainer.num_nodes", 1, True),
    ("trainer.accumulate_grad_batches", 1, True),
    ("eval.resample_repeats", 1, True),
)


def require_values(cfg: DictConfig) -> None:
    """Before a run starts: a ``???`` value left unset (e.g. ``dataset.path`` of
    ``dataset=store``) is one line. Separate from :func:`validate_config`, which also checks
    configs that are only composed (the presets leave their store path to the user)."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    missing = sorted(OmegaConf.missing_keys(plain))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key}: no value given (set it on the command line: {key}=...)")


def _check_ranges(cfg: DictConfig) -> None:
    for key, low, inclusive in RANGES:
        try:
            value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        except OmegaConfBaseException:
            continue  # an interpolation that resolves only inside a run (${hydra:...})
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value < low or (value == low and not inclusive):
            bound = f">= {low}" if inclusive else f"> {low}"
            raise ConfigError(f"{key}: must be {bound}, got {value}")


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    return f"config key {key!r}: {msg}" if key else f"config: {msg}"


def _check_targets(node: Any, where: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_target_node(node, where)
        for key in node:
            if key in _HYDRA_KEYS:
                continue
            _check_targets(node._get_node(key), f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_targets(item, f"{where}[{i}]")


def _check_target_node(node: DictConfig, where: str) -> None:
    target = node["_target_"]
    try:
        obj = get_object(target)
    except Exception:
        raise ConfigError(f"{where}._target_: cannot import {target!r}") from None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = None
    else:
        accepted = set(params)
    hints = _type_hints(obj)
    for key in node:
        if key in _HYDRA_KEYS or (where == "method" and key in METHOD_ONLY_KEYS):
            continue
        if accepted is not None and key not in accepted:
            close = difflib.get_close_matches(str(key), sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}.{key}: unknown key for {target}{hint}")
        if OmegaConf.is_missing(node, key):
            continue
        value = node._get_node(key)
        if isinstance(value, (DictConfig, ListConfig)) or value._is_interpolation():
            continue
        expected = hints.get(str(key))
        if expected is not None and not _matches(value._value(), expected):
            raise ConfigError(
                f"{where}.{key}: expected {_type_name(expected)}, got {value._value()!r}"
            )


def _type_hints(obj: Any) -> dict[str, Any]:
    fn = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


_SIMPLE = (int, float, bool, str)


def _matches(value: Any, expected: Any) -> bool:
    """True unless ``expected`` is a simple type (or Optional/Union of them) ``value`` is not."""
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        options = typing.get_args(expected)
        return any(_matches(value, o) for o in options)
    if expected is type(None):
        return value is None
    if expected not in _SIMPLE:
        return True  # complex annotations are the target's business
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
