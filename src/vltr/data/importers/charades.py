"""CharadesLT / CharadesEgoLT (MEID; ``vltr-data import charades``): 157 classes, multi-label
lists, variable-length videos resampled to 200 frames."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from vltr.data.importers import Release, Warn
from vltr.data.importers.generic import import_lists
from vltr.data.importers.lists import lists_from
from vltr.data.importers.writer import ImportResult
from vltr.utils.errors import StoreError

CHARADES_VARIANTS = ("charadeslt", "charadesegolt")


def import_charades(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    val_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    dataset: str = "charadeslt",
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int = 157,
    frames: int = 200,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """CharadesLT / CharadesEgoLT (MEID): multi-label lists, variable-length videos -> 200."""
    if dataset not in CHARADES_VARIANTS:
        raise StoreError(f"{out}: dataset must be one of {', '.join(CHARADES_VARIANTS)}")
    write_kw.setdefault("source", f"{dataset}-release")
    return import_lists(
        features,
        out,
        (train_list, val_list, test_list),
        class_names,
        num_classes,
        frames,
        overwrite,
        (".npy",),
        dataset,
        **write_kw,
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=list(CHARADES_VARIANTS),
        default="charadeslt",
        help="which benchmark (stored as the source; default: charadeslt)",
    )
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", help="folder with train.lst, val.lst (or validate.lst), test.lst")
    p.add_argument("--train-list", help="train list file (instead of --lists)")
    p.add_argument("--val-list", help="validation list file (instead of --lists)")
    p.add_argument("--test-list", help="test list file (instead of --lists)")
    p.add_argument(
        "--class-names",
        help="one class name per line, in class-index order (e.g. Charades_v1_classes.txt)",
    )
    p.add_argument("--num-classes", type=int, default=157, help="number of classes (default: 157)")
    p.add_argument("--frames", type=int, default=200, help="frames per video (default: 200)")


def _run(args: argparse.Namespace, out: Path, kw: dict[str, Any], warn: Warn) -> ImportResult:
    lists = lists_from(
        args.lists,
        {"train": ["train.lst"], "val": ["val.lst", "validate.lst"], "test": ["test.lst"]},
        {"train": args.train_list, "val": args.val_list, "test": args.test_list},
    )
    return import_charades(
        args.features,
        out,
        train_list=lists["train"],
        val_list=lists["val"],
        test_list=lists["test"],
        dataset=args.dataset,
        class_names=args.class_names,
        num_classes=args.num_classes,
        **kw,
    )


def _dataset(args: argparse.Namespace) -> str:
    return args.dataset


RELEASE = Release(
    name="charades",
    help="CharadesLT / CharadesEgoLT (MEID; 157 classes, 200 frames)",
    description=(
        "CharadesLT / CharadesEgoLT: FEATURES/{vid}.npy [T_i, D]; lists 'vid l1,l2,...' for "
        "train, val and test.",
        "Without --out the store goes where vltr-train dataset=<--dataset> features=<backbone> "
        "reads it.",
    ),
    examples=(
        "vltr-data import charades --features feats --lists lists --backbone resnet101",
        "vltr-data import charades --dataset charadesegolt --features feats "
        "--lists lists --class-names Charades_v1_classes.txt --backbone resnet101",
    ),
    add_arguments=_add_arguments,
    run=_run,
    dataset=_dataset,
)
