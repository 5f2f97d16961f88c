"""``vltr-data``: build, inspect and validate feature stores.

    vltr-data synth --out F.h5 [--num-classes 60 --n-max 300 --imbalance-ratio 0.01 ...]
    vltr-data validate FILE [FILE ...]      one line per problem, exit 1 if any
    vltr-data info FILE                     sizes, splits, class-count profile, groups
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

import numpy as np

from vltr.data.longtail import group_masks, imbalance_ratio
from vltr.data.store import FeatureStore, validate_store
from vltr.data.synthetic import SyntheticSpec, generate
from vltr.errors import VltrError

PROG = "vltr-data"


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the synthetic long-tailed dataset as a store")
    p.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    for f in dataclasses.fields(SyntheticSpec):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, type=type(f.default), default=f.default,
                       help=f"(default: {f.default})")


def cmd_synth(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
    spec = SyntheticSpec.from_dict(values)
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
    store = FeatureStore(args.file)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"synth": cmd_synth, "validate": cmd_validate, "info": cmd_info}[args.command]
    try:
        return handler(args)
    except VltrError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
