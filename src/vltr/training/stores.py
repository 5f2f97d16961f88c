"""Where training reads a store: the path ``vltr-train dataset=<dataset> features=<backbone>``
opens (composed like training's config), where an import writes by default, and the
``vltr-train`` command that trains on a store written elsewhere."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from vltr.utils.errors import VltrError


@dataclass(frozen=True)
class TrainingStore:
    """Where ``vltr-train dataset=<dataset> features=<features>`` reads its store."""

    dataset: str
    features: str
    path: Path
    env_var: str | None  # the variable that moves the store's folder (VLTR_VIDEOLT_DIR)
    dim: int
    frames: int


def feature_configs() -> list[str]:
    """The ``features=`` options of the config tree (backbones)."""
    from importlib.resources import files

    folder = files("vltr.conf") / "features"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def training_store(dataset: str, features: str) -> TrainingStore:
    """Compose ``vltr-train dataset=<dataset> features=<features>`` (its root: ``$VLTR_ROOT``
    else this directory, as vltr-train's) and read the store path it would open."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    root = os.environ.get("VLTR_ROOT") or os.getcwd()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[f"dataset={dataset}", f"features={features}", f"paths.root_dir={root}"],
            )
    finally:
        GlobalHydra.instance().clear()
    raw = str(cfg.dataset._get_node("path")._value())
    env = re.search(r"oc\.env:(\w+)", raw)
    return TrainingStore(
        dataset=dataset,
        features=features,
        path=Path(str(OmegaConf.select(cfg, "dataset.path"))),
        env_var=env.group(1) if env else None,
        dim=int(cfg.features.dim),
        frames=int(cfg.features.frames),
    )


def import_destination(
    out: str | os.PathLike[str] | None, backbone: str, dataset: str | None
) -> tuple[Path, TrainingStore | None]:
    """The store path an import writes (``out``: its --out), and the training config that reads
    it (None: none does; ``dataset`` None: no dataset config reads this release).

    Without --out: the path training reads (an unknown --backbone is refused). With --out
    named like a training store (``<dataset>-<name>.h5``) whose name is not --backbone:
    refused, since ``features=<name>`` would read it as that backbone's features.
    """
    known = feature_configs()
    if dataset is None:
        if out is None:  # the CLI requires --out for such a release
            raise VltrError("give --out FILE.h5")
        return Path(out), None
    target = training_store(dataset, backbone) if backbone in known else None
    if out is None:
        if target is None:
            raise VltrError(
                f"--backbone {backbone}: not a features config; name the "
                f"backbone ({', '.join(b for b in known if b != 'synthetic')}) so "
                f"the store goes where vltr-train dataset={dataset} "
                "features=<backbone> reads it, or give --out"
            )
        return target.path, target
    out = Path(out)
    named = re.fullmatch(rf"{re.escape(dataset)}-(.+)\.h5", out.name)
    if named and named.group(1) != backbone:
        raise VltrError(
            f"--out {out}: vltr-train dataset={dataset} features={named.group(1)} "
            f"would read this file as {named.group(1)} features, but --backbone "
            f"is {backbone}: name it {dataset}-{backbone}.h5 (or pass --backbone "
            f"{named.group(1)})"
        )
    return out, target


def train_command(
    out: Path, target: TrainingStore | None, dataset: str | None, dim: int, frames: int
) -> str:
    """The ``vltr-train`` command that trains on the store at ``out``."""
    quote = shlex.quote
    if target is None:
        name = dataset or "store"
        return (
            f"vltr-train dataset={name} dataset.path={quote(str(out))} "
            f"features.dim={dim} features.frames={frames}"
        )
    args = [f"dataset={target.dataset}", f"features={target.features}"]
    if (dim, frames) != (target.dim, target.frames):
        args += [f"features.dim={dim}", f"features.frames={frames}"]
    env = []
    if out.resolve() == target.path.resolve():
        for var in ("VLTR_ROOT", target.env_var):
            if var and os.environ.get(var):
                env.append(f"{var}={quote(os.environ[var])}")
    elif out.name == target.path.name and target.env_var:
        env.append(f"{target.env_var}={quote(str(out.resolve().parent))}")
    else:
        args.append(f"dataset.path={quote(str(out.resolve()))}")
    # with no variable set, the store's path is relative to the launch directory
    where = (
        f"  (run from {quote(os.getcwd())})"
        if not env and out.resolve() == target.path.resolve()
        else ""
    )
    return " ".join([*env, "vltr-train", *args]) + where
