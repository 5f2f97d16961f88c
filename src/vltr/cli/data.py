"""vltr-data: build, inspect and validate feature stores.

    vltr-data synth --out F.h5 [--num-classes 60 --n-max 300 --imbalance-ratio 0.01 ...]
    vltr-data validate FILE [FILE ...]      one line per problem, exit 1 if any
    vltr-data info FILE                     sizes, splits, class-count profile, groups
    vltr-data import {videolt,minikinetics200,charades,generic} ... [--out F.h5]
                                            a public feature release -> a store (docs/importers.md)

The videolt, minikinetics200 and charades imports write, by default, where training reads:
the path ``vltr-train dataset=<dataset> features=<backbone>`` opens; they print the exact
``vltr-train`` command that uses the store.

Longer than most modules: every vltr-data subcommand's arguments and help text sit here, so that
the command line reads in one place; the work is in vltr.data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from vltr.training.stores import import_destination, train_command
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


def _parser(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    description: Sequence[str],
    examples: Sequence[str],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        parents=list(parents),
        formatter_class=help_formatter(),
        description=paragraphs(*description),
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
    )


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "synth",
        "write the synthetic long-tailed dataset as a store",
        [
            "Write the embedded synthetic long-tailed dataset (the default dataset of "
            "vltr-train) as a store: long-tailed class counts, weak multi-label videos, "
            "features from a fixed random non-linear backbone."
        ],
        [
            "vltr-data synth --out data/tiny.h5 --num-classes 10 --n-max 60",
            "vltr-data synth --out data/ir001.h5 --imbalance-ratio 0.01 --seed 1",
        ],
    )
    p.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    for f in dataclasses.fields(SyntheticSpec):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(
            flag,
            type=type(f.default),
            default=f.default,
            help=f"{SYNTH_HELP.get(f.name, f.name)} (default: {f.default})",
        )


def cmd_synth(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
    spec = SyntheticSpec.from_dict(values)
    importers.check_out(args.out, args.force)
    path = generate(spec, args.out)
    store = FeatureStore(path)
    print(
        f"wrote {path}: {store.num_videos} videos, {store.num_classes} classes, "
        f"{store.frames} frames x {store.dim} dims, splits "
        + ", ".join(f"{k}={len(v)}" for k, v in store.splits.items())
    )
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

        store = VideoFeatureDataModule(
            name="info", path=args.file, imbalance_ratio=args.imbalance_ratio
        ).store
    counts = store.class_counts("train")
    groups = group_masks(counts, head_min=args.head_min, tail_max=args.tail_max)
    info = dataclasses.asdict(store.info())
    info.update(
        layout="contiguous (memmap reads)" if store.contiguous else "chunked/compressed (h5py)",
        train_count_min=int(counts.min()),
        train_count_max=int(counts.max()),
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
    p.add_argument(
        "--out",
        required=out_required,
        metavar="FILE.h5",
        help="output store (written atomically)"
        if out_required
        else "output store (written atomically); default: the path vltr-train "
        "dataset=<dataset> features=<backbone> reads",
    )
    p.add_argument(
        "--dtype",
        choices=["float16", "float32"],
        default="float16",
        help="feature dtype in the store (default: float16)",
    )
    p.add_argument(
        "--backbone",
        default="unknown",
        help="the features' backbone, stored in the file and naming the store: a "
        "features= config (resnet101, resnet50, tsm_r50) for the default --out "
        "(default: unknown)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="reader threads (default: all cores available)"
    )
    p.add_argument("--chunk-videos", type=int, default=64, help="videos per write (default: 64)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (default: a bar on a terminal, else a line every 5 %%)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    return p


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    common, common_out = _import_common(), _import_common(out_required=True)
    imp = _parser(
        sub,
        "import",
        "convert a public feature release into a store",
        [
            "Convert a public feature release (a folder of per-video [T_i, D] arrays "
            "plus list files) into one store, resampling each video to --frames with "
            "VideoLT's linspace rule; docs/importers.md.",
            "videolt, minikinetics200 and charades write by default where vltr-train "
            "reads (dataset=<dataset> features=<backbone>; $VLTR_VIDEOLT_DIR, ... or "
            "data/<dataset>/) and print the vltr-train command that uses the store.",
        ],
        [
            "vltr-data import videolt --features ResNet101-feature --lists labels "
            "--backbone resnet101",
            "vltr-data import minikinetics200 --features features --lists data --backbone resnet50",
            "vltr-data import generic --features feats --train tr.lst --val va.lst "
            "--test te.lst --out my.h5",
            "vltr-data import videolt --help      the flags of one release",
        ],
    )
    kinds = imp.add_subparsers(dest="release", required=True, metavar="RELEASE")
    for release in importers.RELEASES.values():
        p = _parser(
            kinds,
            release.name,
            release.help,
            release.description,
            release.examples,
            parents=[common_out if release.out_required else common],
        )
        release.add_arguments(p)


def cmd_import(args: argparse.Namespace) -> int:
    release = importers.RELEASES[args.release]
    dataset = release.training_dataset(args)
    out, target = import_destination(args.out, args.backbone, dataset)
    kw = dict(
        frames=args.frames,
        dtype=args.dtype,
        backbone=args.backbone,
        workers=args.workers,
        chunk_videos=args.chunk_videos,
        progress=not args.no_progress,
        overwrite=args.force,
    )
    result = release.run(args, out, kw, _warn)
    print(
        f"wrote {result.path}: {result.num_videos} videos, {result.num_classes} classes, "
        f"{result.frames} frames x {result.dim} dims, splits "
        + ", ".join(f"{k}={v}" for k, v in result.split_sizes.items())
        + f" ({result.seconds:.1f} s, {result.videos_per_second:,.0f} videos/s)"
    )
    for problem in validate_store(result.path, scan_values=False):  # values checked on import
        _warn(problem)
    print(
        "train on it: "
        + train_command(Path(result.path), target, dataset, result.dim, result.frames)
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=help_formatter(),
        description=paragraphs(
            "Build, inspect and validate feature stores: one HDF5 file per dataset and "
            "backbone, read by vltr-train (docs/format.md)."
        ),
        epilog="examples:\n"
        "  vltr-data import videolt --features ResNet101-feature --lists labels "
        "--backbone resnet101\n"
        "  vltr-data validate data/videolt/videolt-resnet101.h5\n"
        "  vltr-data info data/videolt/videolt-resnet101.h5 --imbalance-ratio 0.1\n"
        "  vltr-data synth --out data/tiny.h5 --num-classes 10\n\n"
        "vltr-data COMMAND --help describes each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _synth_parser(sub)
    p = _parser(
        sub,
        "validate",
        "check stores; one line per problem, exit 1 if any",
        [
            "Check stores against the format (datasets, shapes, labels, splits, "
            "attributes) and scan the features for NaN/Inf; one line per problem, exit "
            "status 1 if any file has one."
        ],
        [
            "vltr-data validate data/videolt/videolt-resnet101.h5",
            "vltr-data validate data/*.h5 --no-scan --quiet",
        ],
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="stores to check")
    p.add_argument("--no-scan", action="store_true", help="skip the NaN/Inf scan of features")
    p.add_argument("--quiet", action="store_true", help="print nothing for valid files")
    p = _parser(
        sub,
        "info",
        "describe a store",
        [
            "Sizes, splits, layout, the class-count profile and the head / medium / tail "
            "groups of a store, as JSON."
        ],
        [
            "vltr-data info data/videolt/videolt-resnet101.h5",
            "vltr-data info mk200.h5 --imbalance-ratio 0.01 --head-min 300 --tail-max 40",
        ],
    )
    p.add_argument("file", metavar="FILE", help="the store")
    p.add_argument(
        "--head-min",
        type=int,
        default=500,
        help="head classes have more training videos than this (default: 500)",
    )
    p.add_argument(
        "--tail-max",
        type=int,
        default=100,
        help="tail classes have at most this many (default: 100)",
    )
    p.add_argument(
        "--imbalance-ratio",
        type=float,
        default=None,
        help="describe the train split as dataset.imbalance_ratio=X restricts it",
    )
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
    handler = {
        "synth": cmd_synth,
        "validate": cmd_validate,
        "info": cmd_info,
        "import": cmd_import,
    }[args.command]
    # signal handlers can only be set from the main thread (not when called from a thread)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
        if main_thread
        else {}
    )
    try:
        return handler(args)
    except VltrError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (Terminated, KeyboardInterrupt) as e:
        signum = e.args[0] if isinstance(e, Terminated) else signal.SIGINT
        removed = (
            f"; nothing was written at {args.out}" if args.command in ("synth", "import") else ""
        )
        print(f"{PROG}: stopped by {signal.Signals(signum).name}{removed}", file=sys.stderr)
        return 128 + int(signum)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main())
