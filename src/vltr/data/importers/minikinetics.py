"""Imbalanced-MiniKinetics200 (MOVE; ``vltr-data import minikinetics200``): all train clips,
a per-class val hold-out, the release's balanced val list as test."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from vltr.data.importers import Release, Warn
from vltr.data.importers.features import locate_features
from vltr.data.importers.lists import check_labels, lists_from, read_label_list
from vltr.data.importers.writer import (
    ImportResult,
    check_out,
    concat_splits,
    resolve_class_names,
    write_videos,
)
from vltr.utils.errors import StoreError


def import_minikinetics200(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    val_per_class: int = 10,
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int = 200,
    frames: int = 150,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """Imbalanced-MiniKinetics200 (MOVE): ALL train clips, the balanced val list as test.

    ``features`` holds ``train/`` and ``val/`` (the release's layout) or is one flat folder.
    Validation: the LAST ``val_per_class`` clips of each class in ``train_list`` order are held
    out, so the FIRST clips, which the imbalance recipe keeps, stay in train. The imbalance
    ratio is applied at load time (``dataset.imbalance_ratio``); the store records
    ``imbalance_n_max``, the largest class count of the full train list (MOVE's n_max), so the
    recipe's per-rank counts match MOVE's although the hold-out shortened every class.
    """
    check_out(out, overwrite)
    if val_per_class < 1:
        raise StoreError(f"{out}: --val-per-class must be >= 1, got {val_per_class}")
    train_rows = read_label_list(train_list)
    test_rows = read_label_list(test_list)
    names = resolve_class_names(class_names, num_classes, train_rows)
    for rows, path in ((train_rows, train_list), (test_rows, test_list)):
        check_labels(rows, len(names), Path(path))
        multi = next((vid for vid, labels in rows if len(labels) != 1), None)
        if multi is not None:
            raise StoreError(
                f"{path}: video {multi} must have exactly one label (MiniKinetics is single-label)"
            )
    primary = np.array([labels[0] for _, labels in train_rows], dtype=np.int64)
    counts = np.bincount(primary, minlength=len(names))
    short = np.flatnonzero((counts > 0) & (counts <= val_per_class))
    if len(short):
        c = int(short[0])
        raise StoreError(
            f"{train_list}: class {names[c]} (index {c}) has {int(counts[c])} "
            f"clips; --val-per-class {val_per_class} needs more than that"
        )
    # position of each clip among its class's clips, counted from the end of the list
    from_end = np.empty(len(primary), dtype=np.int64)
    seen = np.zeros(len(names), dtype=np.int64)
    for i in range(len(primary) - 1, -1, -1):
        from_end[i] = seen[primary[i]]
        seen[primary[i]] += 1
    held = from_end < val_per_class
    root = Path(features)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "val" if (root / "val").is_dir() else root
    videos, splits = concat_splits(
        [
            ("train", locate_features(train_dir, train_rows)),
            ("test", locate_features(test_dir, test_rows)),
        ],
        {"train": train_list, "test": test_list},
    )
    splits = {"train": np.flatnonzero(~held), "val": np.flatnonzero(held), "test": splits["test"]}
    write_kw.setdefault("source", "minikinetics200-release")
    attrs = {"imbalance_n_max": int(counts.max()), "val_per_class": int(val_per_class)}
    return write_videos(
        out,
        videos,
        splits,
        names,
        frames=frames,
        attrs=attrs,
        description="MiniKinetics200",
        **write_kw,
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features",
        required=True,
        help="folder with train/ and val/ of {ytid_start_end}.npy, or one flat folder",
    )
    p.add_argument("--lists", help="folder with train.lst and val.lst (the release's data/)")
    p.add_argument("--train-list", help="train list (lines 'ytid_start_end classidx')")
    p.add_argument("--test-list", help="the release's balanced val list, used as TEST")
    p.add_argument(
        "--val-per-class",
        type=int,
        default=10,
        help="last N train clips of each class (list order) held out as val (default: 10)",
    )
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument("--num-classes", type=int, default=200, help="number of classes (default: 200)")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")


def _run(args: argparse.Namespace, out: Path, kw: dict[str, Any], warn: Warn) -> ImportResult:
    lists = lists_from(
        args.lists,
        {"train": ["train.lst"], "test": ["val.lst"]},
        {"train": args.train_list, "test": args.test_list},
    )
    return import_minikinetics200(
        args.features,
        out,
        train_list=lists["train"],
        test_list=lists["test"],
        val_per_class=args.val_per_class,
        class_names=args.class_names,
        num_classes=args.num_classes,
        **kw,
    )


RELEASE = Release(
    name="minikinetics200",
    help="Imbalanced-MiniKinetics200 (MOVE; imbalance applied at load time)",
    description=(
        "Imbalanced-MiniKinetics200: all train clips (minus a per-class val hold-out) and the "
        "balanced val list as test. The imbalance ratio is applied at load time "
        "(dataset.imbalance_ratio).",
        "Without --out the store goes where vltr-train dataset=minikinetics200 "
        "features=<backbone> reads it ($VLTR_MINIKINETICS_DIR, else data/minikinetics200/).",
    ),
    examples=(
        "vltr-data import minikinetics200 --features feats --lists data --backbone resnet50",
        "vltr-data import minikinetics200 --features feats --train-list train.lst "
        "--test-list val.lst --class-names classes.txt --out mk200.h5",
    ),
    add_arguments=_add_arguments,
    run=_run,
    dataset="minikinetics200",
)
