"""Reading checkpoints without running code from them.

A checkpoint is a pickle, and ``torch.load`` without weights-only loading runs whatever the
pickle asks for (an object whose ``__reduce__`` names ``os.system`` runs a shell command). Every
checkpoint vltr reads (``vltr-eval ckpt_path=``, ``vltr-train init_ckpt=`` and ``ckpt_path=``
to resume) goes through :func:`load_checkpoint`, i.e. torch's weights-only unpickler (tensors,
numbers, strings, lists, dicts), and Lightning is passed ``weights_only=True`` when it reads the
file again. Everything vltr writes into a checkpoint (the resolved run config, the
random-generator states of :mod:`vltr.training.resume`) is made of those types.

The run config stored in a checkpoint is data from a file, not the user's command line:
:func:`stored_run_config` keeps only the nodes ``vltr-eval`` builds from, refuses
interpolations, and instantiates only classes of vltr and the model/optimiser/data classes of
torch and Lightning (:func:`check_allowed_targets`), checked by name before anything is
imported from it.
"""

from __future__ import annotations

import inspect
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from vltr.utils.errors import CheckpointError, ConfigError

# the nodes of a stored run config that vltr-eval builds objects from (plus plain values)
EVAL_NODES = ("dataset", "features", "aggregator", "head", "strategy", "method", "schedule")
PLAIN_NODES = ("task_name", "run_name", "tags", "seed", "monitor")
TRUSTED_PACKAGES = ("vltr.", "lightning.", "torch.")


def _first_line(e: BaseException) -> str:
    for line in str(e).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(e).__name__


def other_checkpoints(path: Path) -> list[Path]:
    """The other ``.ckpt`` files next to ``path``, newest first."""
    try:
        found = [
            p
            for p in path.parent.glob("*.ckpt")
            if p.is_file() and p != path and p.stat().st_size > 0
        ]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _alternatives(path: Path, what: str) -> str:
    others = other_checkpoints(path)
    if not others:
        return ""
    names = ", ".join(p.name for p in others[:5]) + (" ..." if len(others) > 5 else "")
    return f"; other checkpoints in {path.parent}: {names} (e.g. {what}={others[0]})"


def load_checkpoint(path: str | Path, what: str) -> dict[str, Any]:
    """The checkpoint at ``path`` read weights-only; ``what`` names the option that gave it
    (``ckpt_path``, ``init_ckpt``) in errors. Every failure is one :class:`CheckpointError` line:
    a missing, empty, truncated or foreign file (naming the other checkpoints of its folder that
    could be used instead), and a pickle that asks for code."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file ({what})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint ({what})")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint{_alternatives(path, what)}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # the weights-only unpickler names the global it refused ("GLOBAL posix.system")
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        asks = f" asks for {found.group(1)}" if found else " holds objects"
        raise CheckpointError(
            f"{path}: refused: its pickle{asks}, which loading without running code does not "
            f"allow ({what}; vltr checkpoints hold only tensors and plain values)"
        ) from None
    except Exception as e:  # truncated, empty, not a zip/pickle: the user's file, not a bug
        raise CheckpointError(
            f"{path}: truncated or not a checkpoint ({_first_line(e).split('. ')[0][:120]})"
            f"{_alternatives(path, what)}"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict) ({what})")
    return ckpt


def check_weights_fit(
    state: Mapping[str, Any],
    model: torch.nn.Module,
    path: str | Path,
    what: str,
    *,
    strict: bool,
    data: str = "",
) -> int:
    """Check that the checkpoint's weights fit ``model`` before Lightning loads them; return the
    number of weights that match. A shape difference (another class count or feature dim) is
    one line naming the weight; with ``strict``, so is a missing or unexpected weight.
    ``data`` describes the run's dataset in the message (e.g. "10 classes, 32-dim features")."""
    own = model.state_dict()
    context = f" for this run's data ({data})" if data else ""
    for key, value in state.items():
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape:
            raise CheckpointError(
                f"{path}: weight {key} has shape {list(value.shape)} in the checkpoint but "
                f"{list(own[key].shape)} in the model{context}; the checkpoint was trained "
                f"with another class count or feature dim ({what})"
            )
    matched = sum(1 for key in state if key in own)
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            which = (
                f"lacks {len(missing)} weight(s) of the model, first {missing[0]}"
                if missing
                else f"has {len(unexpected)} weight(s) the model lacks, first {unexpected[0]}"
            )
            raise CheckpointError(
                f"{path}: the checkpoint {which}; it was trained with another method or "
                f"aggregator config ({what})"
            )
    return matched


def check_allowed_targets(
    node: Any, where: str, source: str, extra_prefixes: Iterable[str] = ()
) -> None:
    """Refuse any ``_target_`` under ``node`` that vltr would not build from a file.

    Allowed: classes of vltr, and classes of torch and Lightning that are models, optimisers,
    LR schedulers, samplers, data modules, loggers, callbacks or the Trainer; functions only
    from ``extra_prefixes`` (given on the user's own command line). Checked on the name before
    anything is imported, then on the imported object.
    """
    prefixes = tuple(TRUSTED_PACKAGES) + tuple(str(p) for p in extra_prefixes)
    for key, target in _targets(node, where):
        name = str(target)
        if not name.startswith(prefixes):
            raise ConfigError(
                f"{source}: {key}._target_={name!r} is not a vltr, torch or Lightning class; "
                f"refused (allow a package of yours with eval.allowed_targets=[{_package(name)}.])"
            )
        user = name.startswith(tuple(str(p) for p in extra_prefixes))
        try:
            obj = get_object(name)
        except Exception:
            raise ConfigError(f"{source}: {key}._target_: cannot import {name!r}") from None
        if user:
            continue
        if not inspect.isclass(obj) or (
            not name.startswith("vltr.") and not issubclass(obj, _allowed_bases())
        ):
            raise ConfigError(
                f"{source}: {key}._target_={name!r} is not a model, optimiser, scheduler, "
                f"sampler or Lightning class; refused"
            )


def _package(name: str) -> str:
    return name.split(".", 1)[0]


def _allowed_bases() -> tuple[type, ...]:
    import lightning as L
    from lightning.pytorch.loggers import Logger
    from torch.optim.lr_scheduler import LRScheduler
    from torch.utils.data import Sampler

    return (
        torch.nn.Module,
        torch.optim.Optimizer,
        LRScheduler,
        Sampler,
        L.LightningModule,
        L.LightningDataModule,
        L.Callback,
        L.Trainer,
        Logger,
    )


def _targets(node: Any, where: str) -> Iterable[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield where, node["_target_"]
        for key in node:
            if key != "_target_":
                yield from _targets(node._get_node(key), f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _targets(item, f"{where}[{i}]")


def _interpolation(node: Any, where: str) -> str | None:
    """The first key under ``node`` whose value is an interpolation (``${...}``), if any."""
    if node._is_interpolation():
        return where or "<root>"
    if isinstance(node, DictConfig):
        children = [(f"{where}.{k}" if where else str(k), node._get_node(k)) for k in node]
    elif isinstance(node, ListConfig):
        children = [(f"{where}[{i}]", node._get_node(i)) for i in range(len(node))]
    else:
        return None
    for sub, child in children:
        found = _interpolation(child, sub)
        if found:
            return found
    return None


def stored_run_config(
    ckpt: Mapping[str, Any], path: str | Path, extra_prefixes: Iterable[str] = ()
) -> DictConfig:
    """The run config stored in a vltr checkpoint, reduced to what evaluation builds and
    checked like a command line (keys, types, ranges) with targets from the allow-list."""
    from vltr.training.config import validate_config

    stored = ckpt.get("vltr")
    if not isinstance(stored, Mapping) or not isinstance(stored.get("config"), Mapping):
        raise ConfigError(f"{path}: not a vltr checkpoint (no stored run config)")
    raw = stored["config"]
    keep = {k: raw[k] for k in (*EVAL_NODES, *PLAIN_NODES) if k in raw}
    source = f"{path}: stored config"
    try:
        cfg = OmegaConf.create(keep)
    except Exception as e:
        raise ConfigError(f"{source}: unreadable ({_first_line(e)})") from None
    where = _interpolation(cfg, "")
    if where:
        raise ConfigError(f"{source}: {where} is an interpolation; vltr stores resolved configs")
    for node in EVAL_NODES:
        if node not in cfg:
            raise ConfigError(f"{source}: no {node} node")
    check_allowed_targets(cfg, "", source, extra_prefixes)
    try:
        validate_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg
