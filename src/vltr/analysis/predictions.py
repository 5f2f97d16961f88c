"""Per-video analysis of a run's saved predictions (``predictions_<split>.npz``): what the
H/M/T means hide.

* :func:`load_run_predictions`: a run's predictions (a multi-stage run's last stage);
* :func:`video_table`: per-video ground truth and top-k predictions, by class name;
* :func:`primary_groups`: each video's group, from its rarest label (a video with one tail
  label is a tail video);
* :func:`group_confusion`: for videos of each group, the share whose top-1 prediction is right,
  or wrong and in the head / medium / tail;
* :func:`absorbing_classes`: the classes that take the most top-1 predictions of videos of
  another group (which head classes absorb tail videos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vltr.analysis.runs import RunResult, predictions_path
from vltr.data.longtail import GROUP_NAMES
from vltr.evaluation.predictions import Predictions, load_predictions


def load_run_predictions(run: RunResult | str | Path, split: str = "test") -> Predictions:
    """A run's ``predictions_<split>.npz`` (written after testing; a multi-stage run's last
    stage's)."""
    return load_predictions(
        predictions_path(Path(run.path if isinstance(run, RunResult) else run), split)
    )


def class_groups(pred: Predictions) -> np.ndarray:
    """``[C]`` group name of each class (from the training counts)."""
    out = np.empty(len(pred.class_counts), dtype=object)
    for name, mask in pred.groups.items():
        out[mask] = name
    return out


def primary_groups(pred: Predictions) -> np.ndarray:
    """``[N]`` group of each video's rarest label by training count (``None``: no label)."""
    groups = class_groups(pred)
    counts = np.where(pred.targets, pred.class_counts[None, :], np.iinfo(np.int64).max)
    rarest = counts.argmin(axis=1)
    return np.where(pred.targets.any(axis=1), groups[rarest], None)


def video_table(
    pred: Predictions, videos: np.ndarray | None = None, k: int = 3
) -> list[dict[str, Any]]:
    """Rows ``{video, group, labels, top}`` for ``videos`` (row positions; default all):
    ``labels`` the true class names, ``top`` the k best ``name (score)`` with a mark on the
    correct ones."""
    rows = np.arange(len(pred)) if videos is None else np.asarray(videos)
    top, scores = pred.top_k(k)
    groups = primary_groups(pred)
    out = []
    for i in rows:
        labels = np.flatnonzero(pred.targets[i])
        shown = [
            f"{'✓ ' if c in labels else ''}{pred.class_names[c]} ({float(s):.2f})"
            for c, s in zip(top[i], scores[i], strict=True)
        ]
        out.append(
            {
                "video": str(pred.video_ids[i]),
                "group": groups[i],
                "labels": ", ".join(str(pred.class_names[c]) for c in labels),
                "top": "; ".join(shown),
            }
        )
    return out


def group_confusion(pred: Predictions) -> dict[str, dict[str, float]]:
    """``{true group: {"correct", "head", "medium", "tail", "videos"}}``: for the videos of each
    group (:func:`primary_groups`), the share whose top-1 class is one of their labels, or a
    wrong class of each group; ``videos`` their number."""
    top1 = pred.top_k(1)[0][:, 0]
    correct = pred.targets[np.arange(len(pred)), top1]
    predicted = class_groups(pred)[top1]
    rows = primary_groups(pred)
    out: dict[str, dict[str, float]] = {}
    for g in GROUP_NAMES:
        sel = rows == g
        n = int(sel.sum())
        row: dict[str, float] = {
            "videos": n,
            "correct": float(correct[sel].mean()) if n else float("nan"),
        }
        for p in GROUP_NAMES:
            row[p] = float((~correct[sel] & (predicted[sel] == p)).mean()) if n else float("nan")
        out[g] = row
    return out


def absorbing_classes(
    pred: Predictions, source: str = "tail", target: str = "head", top: int = 10
) -> list[dict[str, Any]]:
    """The ``target``-group classes that are the wrong top-1 prediction of the most
    ``source``-group videos: rows ``{class, train_count, videos, share}`` (``share``: of the
    source group's videos), most first."""
    top1 = pred.top_k(1)[0][:, 0]
    wrong = ~pred.targets[np.arange(len(pred)), top1]
    from_source = primary_groups(pred) == source
    into = class_groups(pred)[top1] == target
    hits = np.bincount(top1[wrong & from_source & into], minlength=len(pred.class_counts))
    n = max(int(from_source.sum()), 1)
    order = [c for c in np.argsort(-hits, kind="stable") if hits[c] > 0][:top]
    return [
        {
            "class": str(pred.class_names[c]),
            "train_count": int(pred.class_counts[c]),
            "videos": int(hits[c]),
            "share": hits[c] / n,
        }
        for c in order
    ]
