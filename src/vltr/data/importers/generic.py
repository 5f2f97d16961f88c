"""Any folder of per-video arrays plus three list files (``vltr-data import generic``), and the
three-list import that CharadesLT / CharadesEgoLT share with it."""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vltr.data.importers import Release, Warn
from vltr.data.importers.features import locate_features
from vltr.data.importers.lists import check_labels, read_label_list
from vltr.data.importers.writer import (
    SPLIT_NAMES,
    ImportResult,
    check_out,
    concat_splits,
    resolve_class_names,
    write_videos,
)


def import_generic(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    val_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    frames: int = 150,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """Any folder of ``{vid}.npy`` / ``{vid}.pt`` arrays ``[T_i, D]`` and three list files.

    Class names come from ``class_names`` (one per line), else ``class000``... for
    ``num_classes`` classes, else for max label + 1.
    """
    write_kw.setdefault("source", "generic-import")
    return import_lists(
        features,
        out,
        (train_list, val_list, test_list),
        class_names,
        num_classes,
        frames,
        overwrite,
        (".npy", ".pt"),
        "import",
        **write_kw,
    )


def import_lists(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    lists: Sequence[str | os.PathLike[str]],
    class_names: str | os.PathLike[str] | None,
    num_classes: int | None,
    frames: int,
    overwrite: bool,
    extensions: Sequence[str],
    description: str,
    **write_kw: Any,
) -> ImportResult:
    """One folder of feature files and the train, val and test lists (in that order)."""
    check_out(out, overwrite)
    all_rows = [read_label_list(path) for path in lists]
    names = resolve_class_names(class_names, num_classes, itertools.chain.from_iterable(all_rows))
    parts = []
    for split, rows, path in zip(SPLIT_NAMES, all_rows, lists, strict=True):
        check_labels(rows, len(names), Path(path))
        parts.append((split, locate_features(features, rows, extensions)))
    videos, splits = concat_splits(parts, dict(zip(SPLIT_NAMES, lists, strict=True)))
    return write_videos(
        out, videos, splits, names, frames=frames, description=description, **write_kw
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, help="folder of {vid}.npy or {vid}.pt")
    p.add_argument("--train", required=True, help="train list file")
    p.add_argument("--val", required=True, help="validation list file")
    p.add_argument("--test", required=True, help="test list file")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")
    p.add_argument("--class-names", help="one class name per line, in class-index order")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes (default: from --class-names, else max label + 1)",
    )
    p.add_argument("--source", default="generic-import", help="stored as the source attribute")


def _run(args: argparse.Namespace, out: Path, kw: dict[str, Any], warn: Warn) -> ImportResult:
    return import_generic(
        args.features,
        out,
        train_list=args.train,
        val_list=args.val,
        test_list=args.test,
        class_names=args.class_names,
        num_classes=args.num_classes,
        source=args.source,
        **kw,
    )


RELEASE = Release(
    name="generic",
    help="any folder of {vid}.npy/.pt arrays [T_i, D] + list files",
    description=(
        "Any folder of per-video {vid}.npy or {vid}.pt arrays [T_i, D] and one list file per "
        "split, lines 'vid l1,l2,...'. Train on the store with vltr-train dataset=store "
        "dataset.path=FILE.h5 (the command is printed).",
    ),
    examples=(
        "vltr-data import generic --features feats --train train.lst --val val.lst "
        "--test test.lst --out mine.h5",
        "vltr-data import generic --features feats --train tr.lst --val va.lst "
        "--test te.lst --class-names names.txt --frames 64 --out mine.h5",
    ),
    add_arguments=_add_arguments,
    run=_run,
)
