"""vltr-data: build, inspect and validate feature stores.

    vltr-data synth --out F.h5 [--num-classes 60 --n-max 300 --imbalance-ratio 0.01 ...]
    vltr-data validate FILE [FILE ...]      one line per problem, exit 1 if any
    vltr-data info FILE                     sizes, splits, class-count profile, groups
    vltr-data import {videolt,minikinetics200,charades,generic} ... [--out F.h5]
                                            a public feature release -> a store (docs/importers.md)

The videolt, minikinetics200 and charades imports write, by default, where training reads:
the path ``vltr-train dataset=<dataset> features=<backbone>`` opens; they print the exact
``vltr-train`` command that uses the store.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vltr.data import importers
from vltr.data.longtail import group_masks, imbalance_ratio
from vltr.data.store import FeatureStore, validate_store
from vltr.data.synthetic import SyntheticSpec, generate
from vltr.utils.errors import VltrError
from vltr.utils.help import help_formatter, paragraphs

PROG = "vltr-data"

# what each SyntheticSpec field sets (vltr-data synth --help)
SYNTH_HELP = {
    "num_classes": "number of classes",
    "n_max": "training videos of the largest class",
    "imbalance_ratio": "n_min / n_max of the training counts (exponential profile)",
    "frames": "frames per video",
    "dim": "feature dimension",
    "val_fraction": "share of each class's videos in val",
    "test_fraction": "share of each class's videos in test",
    "min_eval_per_class": "at least this many val and test videos per class",
    "multi_label_fraction": "share of videos with a second label",
    "segment_min": "shortest class-relevant segment, as a fraction of the video",
    "segment_max": "longest class-relevant segment, as a fraction of the video",
    "latent_dim": "dimension of the latent class signal",
    "num_superclasses": "groups of similar classes (confusable classes)",
    "class_spread": "how far classes of one superclass lie apart",
    "signal": "strength of the class signal against background",
    "scene_std": "per-video background (scene) noise",
    "noise_std": "per-frame noise",
    "backbone_hidden": "width of the fixed random non-linear 'backbone'",
    "dtype": "feature dtype in the store",
    "seed": "generator seed",
}
# the importers whose store a dataset config reads: release -> dataset config (charades: the
# --dataset flag's value)
TRAINING_DATASETS = {"videolt": "videolt", "minikinetics200": "minikinetics200"}


def _parser(sub: argparse._SubParsersAction, name: str, help: str, description: Sequence[str],
            examples: Sequence[str], parents: Sequence[argparse.ArgumentParser] = ()
            ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, parents=list(parents),
                          formatter_class=help_formatter(),
                          description=paragraphs(*description),
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "synth", "write the synthetic long-tailed dataset as a store",
                ["Write the embedded synthetic long-tailed dataset (the default dataset of "
                 "vltr-train) as a store: long-tailed class counts, weak multi-label videos, "
                 "features from a fixed random non-linear backbone."],
                ["vltr-data synth --out data/tiny.h5 --num-classes 10 --n-max 60",
                 "vltr-data synth --out data/ir001.h5 --imbalance-ratio 0.01 --seed 1"])
    p.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    for f in dataclasses.fields(SyntheticSpec):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, type=type(f.default), default=f.default,
                       help=f"{SYNTH_HELP.get(f.name, f.name)} (default: {f.default})")


def cmd_synth(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
    spec = SyntheticSpec.from_dict(values)
    importers.check_out(args.out, args.force)
    path = generate(spec, args.out)
    store = FeatureStore(path)
    print(f"wrote {path}: {store.num_videos} videos, {store.num_classes} classes, "
          f"{store.frames} frames x {store.dim} dims, splits "
          + ", ".join(f"{k}={len(v)}" for k, v in store.splits.items()))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        problems = validate_store(path, scan_values=not args.no_scan)
        for line in problems:
            print(line)
        if problems:
            status = 1
        elif not args.quiet:
            print(f"{path}: ok")
    return status


def cmd_info(args: argparse.Namespace) -> int:
    if args.imbalance_ratio is None:
        store = FeatureStore(args.file)
    else:  # the train split exactly as training sees it with dataset.imbalance_ratio
        from vltr.data.datamodule import VideoFeatureDataModule

        store = VideoFeatureDataModule(name="info", path=args.file,
                                       imbalance_ratio=args.imbalance_ratio).store
    counts = store.class_counts("train")
    groups = group_masks(counts, head_min=args.head_min, tail_max=args.tail_max)
    info = dataclasses.asdict(store.info())
    info.update(
        layout="contiguous (memmap reads)" if store.contiguous else "chunked/compressed (h5py)",
        train_count_min=int(counts.min()), train_count_max=int(counts.max()),
        imbalance_ratio=round(imbalance_ratio(counts), 5),
        labels_per_video=round(float(np.diff(store.label_indptr).mean()), 3),
        groups={k: int(v.sum()) for k, v in groups.items()},
        group_rule=f"tail n<={args.tail_max}, head n>{args.head_min}",
    )
    print(json.dumps(info, indent=2))
    return 0


# ------------------------------------------------------------------------------------- import
def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _import_common(out_required: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", required=out_required, metavar="FILE.h5",
                   help="output store (written atomically)" if out_required else
                   "output store (written atomically); default: the path vltr-train "
                   "dataset=<dataset> features=<backbone> reads")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                   help="feature dtype in the store (default: float16)")
    p.add_argument("--backbone", default="unknown",
                   help="the features' backbone, stored in the file and naming the store: a "
                   "features= config (resnet101, resnet50, tsm_r50) for the default --out "
                   "(default: unknown)")
    p.add_argument("--workers", type=int, default=None,
                   help="reader threads (default: all cores available)")
    p.add_argument("--chunk-videos", type=int, default=64,
                   help="videos per write (default: 64)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress (default: a bar on a terminal, else a line every 5 %%)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    return p


def _lists_from(args: argparse.Namespace, names: dict[str, Sequence[str]]) -> dict[str, Path]:
    """Explicit --X-list flags win; otherwise the first existing name in --lists DIR."""
    out: dict[str, Path] = {}
    for key, candidates in names.items():
        explicit = getattr(args, f"{key}_list")
        if explicit is not None:
            out[key] = Path(explicit)
            continue
        if args.lists is None:
            raise VltrError(f"give --lists DIR or --{key}-list FILE")
        found = [Path(args.lists) / c for c in candidates if (Path(args.lists) / c).is_file()]
        if not found:
            raise VltrError(f"{args.lists}: no {' or '.join(candidates)} "
                            f"(or give --{key}-list FILE)")
        out[key] = found[0]
    return out


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    common, common_out = _import_common(), _import_common(out_required=True)
    imp = _parser(sub, "import", "convert a public feature release into a store",
                  ["Convert a public feature release (a folder of per-video [T_i, D] arrays "
                   "plus list files) into one store, resampling each video to --frames with "
                   "VideoLT's linspace rule; docs/importers.md.",
                   "videolt, minikinetics200 and charades write by default where vltr-train "
                   "reads (dataset=<dataset> features=<backbone>; $VLTR_VIDEOLT_DIR, ... or "
                   "data/<dataset>/) and print the vltr-train command that uses the store."],
                  ["vltr-data import videolt --features ResNet101-feature --lists labels "
                   "--backbone resnet101",
                   "vltr-data import minikinetics200 --features features --lists data "
                   "--backbone resnet50",
                   "vltr-data import generic --features feats --train tr.lst --val va.lst "
                   "--test te.lst --out my.h5",
                   "vltr-data import videolt --help      the flags of one release"])
    kinds = imp.add_subparsers(dest="release", required=True, metavar="RELEASE")

    p = _parser(kinds, "videolt", "the VideoLT release (1,004 classes)",
                ["VideoLT: FEATURES/{vid}.npy [T_i, 2048]; LISTS/ holds train.lst, "
                 "validate.lst, test.lst and count-labels-train.lst. Splits: train / val = "
                 "validate.lst / test.",
                 "Without --out the store goes where vltr-train dataset=videolt "
                 "features=<backbone> reads it: $VLTR_VIDEOLT_DIR/videolt-<backbone>.h5, else "
                 "data/videolt/videolt-<backbone>.h5 under $VLTR_ROOT or this directory."],
                ["vltr-data import videolt --features /data/VideoLT/ResNet101-feature "
                 "--lists /data/VideoLT/labels --backbone resnet101",
                 "VLTR_VIDEOLT_DIR=/scratch/stores vltr-data import videolt --features F "
                 "--lists L --backbone tsm_r50",
                 "vltr-data import videolt --features F --lists L --backbone resnet50 "
                 "--out /tmp/videolt-resnet50.h5"],
                parents=[common])
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", required=True, help="the release's labels/ folder")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")

    p = _parser(kinds, "minikinetics200",
                "Imbalanced-MiniKinetics200 (MOVE; imbalance applied at load time)",
                ["Imbalanced-MiniKinetics200: all train clips (minus a per-class val "
                 "hold-out) and the balanced val list as test. The imbalance ratio is applied "
                 "at load time (dataset.imbalance_ratio).",
                 "Without --out the store goes where vltr-train dataset=minikinetics200 "
                 "features=<backbone> reads it ($VLTR_MINIKINETICS_DIR, else "
                 "data/minikinetics200/)."],
                ["vltr-data import minikinetics200 --features feats --lists data "
                 "--backbone resnet50",
                 "vltr-data import minikinetics200 --features feats --train-list train.lst "
                 "--test-list val.lst --class-names classes.txt --out mk200.h5"],
                parents=[common])
    p.add_argument("--features", required=True,
                   help="folder with train/ and val/ of {ytid_start_end}.npy, or one flat folder")
    p.add_argument("--lists", help="folder with train.lst and val.lst (the release's data/)")
    p.add_argument("--train-list", help="train list (lines 'ytid_start_end classidx')")
    p.add_argument("--test-list", help="the release's balanced val list, used as TEST")
    p.add_argument("--val-per-class", type=int, default=10,
                   help="last N train clips of each class (list order) held out as val "
                   "(default: 10)")
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument("--num-classes", type=int, default=200,
                   help="number of classes (default: 200)")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")

    p = _parser(kinds, "charades", "CharadesLT / CharadesEgoLT (MEID; 157 classes, 200 frames)",
                ["CharadesLT / CharadesEgoLT: FEATURES/{vid}.npy [T_i, D]; lists "
                 "'vid l1,l2,...' for train, val and test.",
                 "Without --out the store goes where vltr-train dataset=<--dataset> "
                 "features=<backbone> reads it."],
                ["vltr-data import charades --features feats --lists lists --backbone "
                 "resnet101",
                 "vltr-data import charades --dataset charadesegolt --features feats "
                 "--lists lists --class-names Charades_v1_classes.txt --backbone resnet101"],
                parents=[common])
    p.add_argument("--dataset", choices=list(importers.CHARADES_VARIANTS), default="charadeslt",
                   help="which benchmark (stored as the source; default: charadeslt)")
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", help="folder with train.lst, val.lst (or validate.lst), test.lst")
    p.add_argument("--train-list", help="train list file (instead of --lists)")
    p.add_argument("--val-list", help="validation list file (instead of --lists)")
    p.add_argument("--test-list", help="test list file (instead of --lists)")
    p.add_argument("--class-names", help="one class name per line, in class-index order "
                   "(e.g. Charades_v1_classes.txt)")
    p.add_argument("--num-classes", type=int, default=157,
                   help="number of classes (default: 157)")
    p.add_argument("--frames", type=int, default=200, help="frames per video (default: 200)")

    p = _parser(kinds, "generic", "any folder of {vid}.npy/.pt arrays [T_i, D] + list files",
                ["Any folder of per-video {vid}.npy or {vid}.pt arrays [T_i, D] and one list "
                 "file per split, lines 'vid l1,l2,...'. Train on the store with vltr-train "
                 "dataset=store dataset.path=FILE.h5 (the command is printed)."],
                ["vltr-data import generic --features feats --train train.lst --val val.lst "
                 "--test test.lst --out mine.h5",
                 "vltr-data import generic --features feats --train tr.lst --val va.lst "
                 "--test te.lst --class-names names.txt --frames 64 --out mine.h5"],
                parents=[common_out])
    p.add_argument("--features", required=True, help="folder of {vid}.npy or {vid}.pt")
    p.add_argument("--train", required=True, help="train list file")
    p.add_argument("--val", required=True, help="validation list file")
    p.add_argument("--test", required=True, help="test list file")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument("--num-classes", type=int, default=None,
                   help="number of classes (default: from --class-names, else max label + 1)")
    p.add_argument("--source", default="generic-import", help="stored as the source attribute")


# ------------------------------------------------------------ where training reads the store
@dataclasses.dataclass(frozen=True)
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
            cfg = compose("train", overrides=[f"dataset={dataset}", f"features={features}",
                                              f"paths.root_dir={root}"])
    finally:
        GlobalHydra.instance().clear()
    raw = str(cfg.dataset._get_node("path")._value())
    env = re.search(r"oc\.env:(\w+)", raw)
    return TrainingStore(dataset=dataset, features=features,
                         path=Path(str(OmegaConf.select(cfg, "dataset.path"))),
                         env_var=env.group(1) if env else None,
                         dim=int(cfg.features.dim), frames=int(cfg.features.frames))


def _import_out(args: argparse.Namespace, dataset: str | None) -> tuple[Path, TrainingStore | None]:
    """The store path to write, and the training config that reads it (None: none does).

    Without --out: the path training reads (an unknown --backbone is refused). With --out
    named like a training store (``<dataset>-<name>.h5``) whose name is not --backbone:
    refused, since ``features=<name>`` would read it as that backbone's features.
    """
    backbone = args.backbone
    known = feature_configs()
    if dataset is None:
        return Path(args.out), None
    target = training_store(dataset, backbone) if backbone in known else None
    if args.out is None:
        if target is None:
            raise VltrError(f"--backbone {backbone}: not a features config; name the "
                            f"backbone ({', '.join(b for b in known if b != 'synthetic')}) so "
                            f"the store goes where vltr-train dataset={dataset} "
                            "features=<backbone> reads it, or give --out")
        return target.path, target
    out = Path(args.out)
    named = re.fullmatch(rf"{re.escape(dataset)}-(.+)\.h5", out.name)
    if named and named.group(1) != backbone:
        raise VltrError(f"--out {out}: vltr-train dataset={dataset} features={named.group(1)} "
                        f"would read this file as {named.group(1)} features, but --backbone "
                        f"is {backbone}: name it {dataset}-{backbone}.h5 (or pass --backbone "
                        f"{named.group(1)})")
    return out, target


def train_command(out: Path, target: TrainingStore | None, dataset: str | None, dim: int,
                  frames: int) -> str:
    """The ``vltr-train`` command that trains on the store at ``out``."""
    quote = shlex.quote
    if target is None:
        name = dataset or "store"
        return (f"vltr-train dataset={name} dataset.path={quote(str(out))} "
                f"features.dim={dim} features.frames={frames}")
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
    where = f"  (run from {quote(os.getcwd())})" \
        if not env and out.resolve() == target.path.resolve() else ""
    return " ".join([*env, "vltr-train", *args]) + where


def cmd_import(args: argparse.Namespace) -> int:
    dataset = {**TRAINING_DATASETS, "charades": getattr(args, "dataset", None)}.get(args.release)
    out, target = _import_out(args, dataset)
    kw = dict(frames=args.frames, dtype=args.dtype, backbone=args.backbone, workers=args.workers,
              chunk_videos=args.chunk_videos, progress=not args.no_progress,
              overwrite=args.force)
    if args.release == "videolt":
        result = importers.import_videolt(args.features, args.lists, out, warn=_warn, **kw)
    elif args.release == "minikinetics200":
        lists = _lists_from(args, {"train": ["train.lst"], "test": ["val.lst"]})
        result = importers.import_minikinetics200(
            args.features, out, train_list=lists["train"], test_list=lists["test"],
            val_per_class=args.val_per_class, class_names=args.class_names,
            num_classes=args.num_classes, **kw)
    elif args.release == "charades":
        lists = _lists_from(args, {"train": ["train.lst"], "val": ["val.lst", "validate.lst"],
                                   "test": ["test.lst"]})
        result = importers.import_charades(
            args.features, out, train_list=lists["train"], val_list=lists["val"],
            test_list=lists["test"], dataset=args.dataset, class_names=args.class_names,
            num_classes=args.num_classes, **kw)
    else:
        result = importers.import_generic(
            args.features, out, train_list=args.train, val_list=args.val,
            test_list=args.test, class_names=args.class_names, num_classes=args.num_classes,
            source=args.source, **kw)
    print(f"wrote {result.path}: {result.num_videos} videos, {result.num_classes} classes, "
          f"{result.frames} frames x {result.dim} dims, splits "
          + ", ".join(f"{k}={v}" for k, v in result.split_sizes.items())
          + f" ({result.seconds:.1f} s, {result.videos_per_second:,.0f} videos/s)")
    for problem in validate_store(result.path, scan_values=False):  # values checked on import
        _warn(problem)
    print("train on it: " + train_command(Path(result.path), target, dataset, result.dim,
                                          result.frames))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=help_formatter(),
        description=paragraphs(
            "Build, inspect and validate feature stores: one HDF5 file per dataset and "
            "backbone, read by vltr-train (docs/format.md)."),
        epilog="examples:\n"
        "  vltr-data import videolt --features ResNet101-feature --lists labels "
        "--backbone resnet101\n"
        "  vltr-data validate data/videolt/videolt-resnet101.h5\n"
        "  vltr-data info data/videolt/videolt-resnet101.h5 --imbalance-ratio 0.1\n"
        "  vltr-data synth --out data/tiny.h5 --num-classes 10\n\n"
        "vltr-data COMMAND --help describes each command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _synth_parser(sub)
    p = _parser(sub, "validate", "check stores; one line per problem, exit 1 if any",
                ["Check stores against the format (datasets, shapes, labels, splits, "
                 "attributes) and scan the features for NaN/Inf; one line per problem, exit "
                 "status 1 if any file has one."],
                ["vltr-data validate data/videolt/videolt-resnet101.h5",
                 "vltr-data validate data/*.h5 --no-scan --quiet"])
    p.add_argument("files", nargs="+", metavar="FILE", help="stores to check")
    p.add_argument("--no-scan", action="store_true", help="skip the NaN/Inf scan of features")
    p.add_argument("--quiet", action="store_true", help="print nothing for valid files")
    p = _parser(sub, "info", "describe a store",
                ["Sizes, splits, layout, the class-count profile and the head / medium / tail "
                 "groups of a store, as JSON."],
                ["vltr-data info data/videolt/videolt-resnet101.h5",
                 "vltr-data info mk200.h5 --imbalance-ratio 0.01 --head-min 300 --tail-max 40"])
    p.add_argument("file", metavar="FILE", help="the store")
    p.add_argument("--head-min", type=int, default=500,
                   help="head classes have more training videos than this (default: 500)")
    p.add_argument("--tail-max", type=int, default=100,
                   help="tail classes have at most this many (default: 100)")
    p.add_argument("--imbalance-ratio", type=float, default=None,
                   help="describe the train split as dataset.imbalance_ratio=X restricts it")
    _import_parsers(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM/SIGHUP while a command runs: unwinds like Ctrl-C, so a store being written is
    removed (:class:`~vltr.data.store.StoreWriter` deletes its temporary file on any exception).
    A BaseException, so that no ``except Exception`` on the way swallows it."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"synth": cmd_synth, "validate": cmd_validate, "info": cmd_info,
               "import": cmd_import}[args.command]
    # signal handlers can only be set from the main thread (not when called from a thread)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)
                } if main_thread else {}
    try:
        return handler(args)
    except VltrError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (Terminated, KeyboardInterrupt) as e:
        signum = e.args[0] if isinstance(e, Terminated) else signal.SIGINT
        removed = (f"; nothing was written at {args.out}"
                   if args.command in ("synth", "import") else "")
        print(f"{PROG}: stopped by {signal.Signals(signum).name}{removed}", file=sys.stderr)
        return 128 + int(signum)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main())
