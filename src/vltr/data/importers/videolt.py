"""The VideoLT release (``vltr-data import videolt``): 1,004 classes, one ``.npy`` per video."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from vltr.data.importers import Release, Warn
from vltr.data.importers.features import locate_features
from vltr.data.importers.lists import (
    check_labels,
    read_label_list,
    read_videolt_counts,
    train_class_counts,
)
from vltr.data.importers.writer import (
    SPLIT_NAMES,
    ImportResult,
    check_out,
    concat_splits,
    write_videos,
)

log = logging.getLogger(__name__)

LIST_FILES = ("train.lst", "validate.lst", "test.lst")  # train / val / test


def import_videolt(
    features: str | os.PathLike[str],
    lists: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    frames: int = 150,
    overwrite: bool = False,
    warn: Warn = log.warning,
    **write_kw: Any,
) -> ImportResult:
    """The VideoLT release: ``features/{vid}.npy`` float32 ``[T_i, 2048]``; ``lists/`` holds
    ``train.lst``, ``validate.lst``, ``test.lst`` and ``count-labels-train.lst`` (class names).

    Splits: train / val = ``validate.lst`` / test. The counts in ``count-labels-train.lst`` are
    checked against ``train.lst`` (``warn`` on a mismatch).
    """
    check_out(out, overwrite)
    lists = Path(lists)
    names, counts = read_videolt_counts(lists / "count-labels-train.lst")
    parts = []
    for split, file in zip(SPLIT_NAMES, LIST_FILES, strict=True):
        rows = read_label_list(lists / file)
        check_labels(rows, len(names), lists / file)
        if split == "train":
            _warn_count_mismatch(counts, train_class_counts(rows, len(names)), names, lists, warn)
        parts.append((split, locate_features(features, rows)))
    sources = {split: lists / file for split, file in zip(SPLIT_NAMES, LIST_FILES, strict=True)}
    videos, splits = concat_splits(parts, sources)
    write_kw.setdefault("source", "videolt-release")
    return write_videos(
        out, videos, splits, names, frames=frames, description="VideoLT", **write_kw
    )


def _warn_count_mismatch(
    stated: np.ndarray, actual: np.ndarray, names: list[str], lists: Path, warn: Warn
) -> None:
    bad = np.flatnonzero(stated != actual)
    if len(bad):
        c = int(bad[0])
        warn(
            f"{lists / 'count-labels-train.lst'}: {len(bad)} class count(s) differ from "
            f"train.lst, first {names[c]} (index {c}): file says {int(stated[c])}, train.lst "
            f"has {int(actual[c])}"
        )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, help="folder of {vid}.npy")
    p.add_argument("--lists", required=True, help="the release's labels/ folder")
    p.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")


def _run(args: argparse.Namespace, out: Path, kw: dict[str, Any], warn: Warn) -> ImportResult:
    return import_videolt(args.features, args.lists, out, warn=warn, **kw)


RELEASE = Release(
    name="videolt",
    help="the VideoLT release (1,004 classes)",
    description=(
        "VideoLT: FEATURES/{vid}.npy [T_i, 2048]; LISTS/ holds train.lst, validate.lst, "
        "test.lst and count-labels-train.lst. Splits: train / val = validate.lst / test.",
        "Without --out the store goes where vltr-train dataset=videolt features=<backbone> "
        "reads it: $VLTR_VIDEOLT_DIR/videolt-<backbone>.h5, else "
        "data/videolt/videolt-<backbone>.h5 under $VLTR_ROOT or this directory.",
    ),
    examples=(
        "vltr-data import videolt --features /data/VideoLT/ResNet101-feature "
        "--lists /data/VideoLT/labels --backbone resnet101",
        "VLTR_VIDEOLT_DIR=/scratch/stores vltr-data import videolt --features F "
        "--lists L --backbone tsm_r50",
        "vltr-data import videolt --features F --lists L --backbone resnet50 "
        "--out /tmp/videolt-resnet50.h5",
    ),
    add_arguments=_add_arguments,
    run=_run,
    dataset="videolt",
)
