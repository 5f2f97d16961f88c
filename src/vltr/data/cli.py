"""``vltr-data``: build, inspect and validate feature stores.

    vltr-data synth --out F.h5 [--num-classes 60 --n-max 300 --imbalance-ratio 0.01 ...]
    vltr-data validate FILE [FILE ...]      one line per problem, exit 1 if any
    vltr-data info FILE                     sizes, splits, class-count profile, groups
    vltr-data import {videolt,minikinetics200,charades,generic} ... --out F.h5
                                            a public feature release -> a store (docs/importers.md)
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
from vltr.errors import VltrError

PROG = "vltr-data"


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the synthetic long-tailed dataset as a store")
    p.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    for f in dataclasses.fields(SyntheticSpec):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, type=type(f.default), default=f.default,
                       help=f"(default: {f.default})")


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


def _import_common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", required=True, help="output store .h5 (written atomically)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                   help="feature dtype in the store (default: float16)")
    p.add_argument("--backbone", default="unknown",
                   help="backbone name stored in the file, e.g. resnet101 (default: unknown)")
    p.add_argument("--workers", type=int, default=None,
                   help="reader threads (default: all cores available)")
    p.add_argument("--chunk-videos", type=int, default=64,
                   help="videos per write (default: 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    common = _import_common()
    imp = sub.add_parser("import", help="convert a public feature release into a store",
                         description="Convert a public feature release (a folder of per-video "
                         "[T_i, D] arrays plus list files) into one store; docs/importers.md.")
    kinds = imp.add_subparsers(dest="release", required=True, metavar="RELEASE")

    p = kinds.add_parser("videolt", parents=[common], help="the VideoLT release (1,004 classes)",
                         description="VideoLT: FEATURES/{vid}.npy [T_i, 2048]; LISTS/ holds "
                         "train.lst, validate.lst, test.lst and count-labels-train.lst. Splits: "
                         "train / val = validate.lst / test.")
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", required=True, help="the release's labels/ folder")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")

    p = kinds.add_parser("minikinetics200", parents=[common],
                         help="Imbalanced-MiniKinetics200 (MOVE; imbalance applied at load time)",
                         description="Imbalanced-MiniKinetics200: all train clips (minus a "
                         "per-class val hold-out) and the balanced val list as test. The "
                         "imbalance ratio is applied at load time (dataset.imbalance_ratio).")
    p.add_argument("--features", required=True,
                   help="folder with train/ and val/ of {ytid_start_end}.npy, or one flat folder")
    p.add_argument("--lists", help="folder with train.lst and val.lst (the release's data/)")
    p.add_argument("--train-list", help="train list (lines 'ytid_start_end classidx')")
    p.add_argument("--test-list", help="the release's balanced val list, used as TEST")
    p.add_argument("--val-per-class", type=int, default=10,
                   help="last N train clips of each class (list order) held out as val "
                   "(default: 10)")
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument("--num-classes", type=int, default=200, help="(default: 200)")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")

    p = kinds.add_parser("charades", parents=[common],
                         help="CharadesLT / CharadesEgoLT (MEID; 157 classes, 200 frames)",
                         description="CharadesLT / CharadesEgoLT: FEATURES/{vid}.npy [T_i, D]; "
                         "lists 'vid l1,l2,...' for train, val and test.")
    p.add_argument("--dataset", choices=list(importers.CHARADES_VARIANTS), default="charadeslt",
                   help="which benchmark (stored as the source; default: charadeslt)")
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", help="folder with train.lst, val.lst (or validate.lst), test.lst")
    p.add_argument("--train-list")
    p.add_argument("--val-list")
    p.add_argument("--test-list")
    p.add_argument("--class-names", help="one class name per line, in class-index order "
                   "(e.g. Charades_v1_classes.txt)")
    p.add_argument("--num-classes", type=int, default=157, help="(default: 157)")
    p.add_argument("--frames", type=int, default=200, help="frames per video (default: 200)")

    p = kinds.add_parser("generic", parents=[common],
                         help="any folder of {vid}.npy/.pt arrays [T_i, D] + list files",
                         description="Any folder of per-video {vid}.npy or {vid}.pt arrays "
                         "[T_i, D] and one list file per split, lines 'vid l1,l2,...'.")
    p.add_argument("--features", required=True, help="folder of {vid}.npy or {vid}.pt")
    p.add_argument("--train", required=True, help="train list file")
    p.add_argument("--val", required=True, help="validation list file")
    p.add_argument("--test", required=True, help="test list file")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument("--num-classes", type=int, default=None,
                   help="number of classes (default: from --class-names, else max label + 1)")
    p.add_argument("--source", default="generic-import", help="stored as the source attribute")


def cmd_import(args: argparse.Namespace) -> int:
    kw = dict(frames=args.frames, dtype=args.dtype, backbone=args.backbone, workers=args.workers,
              chunk_videos=args.chunk_videos, progress=not args.no_progress,
              overwrite=args.force)
    if args.release == "videolt":
        result = importers.import_videolt(args.features, args.lists, args.out, warn=_warn, **kw)
    elif args.release == "minikinetics200":
        lists = _lists_from(args, {"train": ["train.lst"], "test": ["val.lst"]})
        result = importers.import_minikinetics200(
            args.features, args.out, train_list=lists["train"], test_list=lists["test"],
            val_per_class=args.val_per_class, class_names=args.class_names,
            num_classes=args.num_classes, **kw)
    elif args.release == "charades":
        lists = _lists_from(args, {"train": ["train.lst"], "val": ["val.lst", "validate.lst"],
                                   "test": ["test.lst"]})
        result = importers.import_charades(
            args.features, args.out, train_list=lists["train"], val_list=lists["val"],
            test_list=lists["test"], dataset=args.dataset, class_names=args.class_names,
            num_classes=args.num_classes, **kw)
    else:
        result = importers.import_generic(
            args.features, args.out, train_list=args.train, val_list=args.val,
            test_list=args.test, class_names=args.class_names, num_classes=args.num_classes,
            source=args.source, **kw)
    print(f"wrote {result.path}: {result.num_videos} videos, {result.num_classes} classes, "
          f"{result.frames} frames x {result.dim} dims, splits "
          + ", ".join(f"{k}={v}" for k, v in result.split_sizes.items())
          + f" ({result.seconds:.1f} s, {result.videos_per_second:,.0f} videos/s)")
    for problem in validate_store(result.path, scan_values=False):  # values checked on import
        _warn(problem)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _synth_parser(sub)
    p = sub.add_parser("validate", help="check stores; one line per problem, exit 1 if any")
    p.add_argument("files", nargs="+")
    p.add_argument("--no-scan", action="store_true", help="skip the NaN/Inf scan of features")
    p.add_argument("--quiet", action="store_true", help="print nothing for valid files")
    p = sub.add_parser("info", help="describe a store")
    p.add_argument("file")
    p.add_argument("--head-min", type=int, default=500)
    p.add_argument("--tail-max", type=int, default=100)
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
