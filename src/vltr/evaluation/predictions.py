"""Per-video predictions of an evaluated split, saved with the run: ``predictions_<split>.npz``.

What paired comparisons between runs need (:mod:`vltr.analysis.bootstrap`, the notebooks), and
nothing a model would: one row per video of the split, in store order.

=================  ==========  ================================================================
key                dtype       what
=================  ==========  ================================================================
``index``          int64 [N]   the videos' indices in the store (ascending)
``video_ids``      str [N]     the videos' ids
``scores``         float16     the model's logits ``[N, C]`` (logits, not sigmoids: a float16
                               sigmoid saturates near 1 and would tie confident predictions)
``label_indptr``   int64       the ground truth as CSR rows (multi-label): video ``i`` has
``label_indices``  int32       ``label_indices[label_indptr[i]:label_indptr[i + 1]]``
``class_names``    str [C]
``class_counts``   int64 [C]   training videos per class (the groups' source)
``head_min``,      int         the run's group thresholds
``tail_max``
``split``          str
=================  ==========  ================================================================

Plain arrays (``np.load(..., allow_pickle=False)`` reads them). At VideoLT's size (51,239 test
videos x 1,004 classes) the file is ~103 MB, written uncompressed in ~0.2 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vltr.data.longtail import group_masks
from vltr.utils.errors import StoreError
from vltr.utils.io import atomic_path

FORMAT = 1


@dataclass(frozen=True)
class Predictions:
    """One split's predictions, per video (see the module docstring for the fields)."""

    index: np.ndarray
    video_ids: np.ndarray
    scores: np.ndarray
    targets: np.ndarray  # [N, C] bool
    class_names: np.ndarray
    class_counts: np.ndarray
    head_min: int
    tail_max: int
    split: str = "test"

    def __len__(self) -> int:
        return len(self.index)

    @property
    def groups(self) -> dict[str, np.ndarray]:
        """Head / medium / tail class masks from the training counts."""
        return group_masks(self.class_counts, head_min=self.head_min, tail_max=self.tail_max)

    def metrics(self) -> dict[str, float]:
        """VideoLT's metrics of these predictions (as ``metrics.json`` holds them, up to the
        float16 rounding of the scores)."""
        from vltr.evaluation.metrics import summarize

        return summarize(self.scores.astype(np.float32), self.targets, self.groups)[0]

    def top_k(self, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """``(classes [N, k], scores [N, k])``: each video's k highest-scoring classes."""
        k = min(k, self.scores.shape[1])
        top = np.argsort(-self.scores.astype(np.float32), axis=1, kind="stable")[:, :k]
        return top, np.take_along_axis(self.scores, top, axis=1)


def save_predictions(path: str | os.PathLike[str], predictions: Predictions) -> Path:
    """Write ``predictions`` to ``path`` (``.npz``), atomically."""
    targets = np.asarray(predictions.targets, dtype=bool)
    rows, cols = np.nonzero(targets)
    indptr = np.zeros(len(targets) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(targets)), out=indptr[1:])
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            format=np.int64(FORMAT),
            index=np.asarray(predictions.index, np.int64),
            video_ids=np.asarray(predictions.video_ids, dtype=str),
            scores=np.asarray(predictions.scores, dtype=np.float16),
            label_indptr=indptr,
            label_indices=cols.astype(np.int32),
            class_names=np.asarray(predictions.class_names, dtype=str),
            class_counts=np.asarray(predictions.class_counts, np.int64),
            head_min=np.int64(predictions.head_min),
            tail_max=np.int64(predictions.tail_max),
            split=np.asarray(predictions.split),
        )
    return path


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
    """Read a ``predictions_<split>.npz`` file (a missing or foreign file: one-line error)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such predictions file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # truncated, not an npz, or an object array
        raise StoreError(f"{path}: not a readable predictions file ({e})") from None
    missing = {"index", "scores", "label_indptr", "label_indices", "class_counts"} - set(data)
    if missing:
        raise StoreError(f"{path}: not a vltr predictions file (no {', '.join(sorted(missing))})")
    n, c = data["scores"].shape
    targets = np.zeros((n, c), dtype=bool)
    indptr = data["label_indptr"]
    targets[np.repeat(np.arange(n), np.diff(indptr)), data["label_indices"]] = True
    return Predictions(
        index=data["index"],
        video_ids=data["video_ids"],
        scores=data["scores"],
        targets=targets,
        class_names=data["class_names"],
        class_counts=data["class_counts"],
        head_min=int(data["head_min"]),
        tail_max=int(data["tail_max"]),
        split=str(data["split"]),
    )
