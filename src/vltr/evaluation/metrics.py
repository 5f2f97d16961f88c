"""Evaluation as published with VideoLT: per-class AP, group mAP, Acc@k; DDP-aware Metric.

AP of a class (VideoLT's rule, tie-aware as sklearn's ``average_precision_score``)::

    AP_c = 1/P_c * sum over positives i of  TP(score >= s_i) / #(score >= s_i)

with P_c the number of positives. A class without positives gets AP 0 and stays in the mean.
Ranking uses the raw float32 scores (logits): AP depends only on the order, and ranking after a
sigmoid would create false ties where the sigmoid saturates in float32.

Vectorised: one value sort per class plus ``searchsorted`` for the positives, instead of an
argsort over all samples per class (``bench/metrics.py`` measures it against sklearn).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torchmetrics import Metric

from vltr.data.longtail import group_masks


def _to_numpy(x: np.ndarray | torch.Tensor, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy() if dtype is np.float32 else x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def average_precision(
    scores: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    num_threads: int | None = None,
) -> np.ndarray:
    """Per-class AP ``[C]`` for scores and multi-hot targets of shape ``[N, C]``.

    Classes are processed in blocks on ``num_threads`` threads (default: all cores); numpy's
    sort releases the GIL, so the blocks run in parallel.
    """
    s = _to_numpy(scores, np.float32)
    y = _to_numpy(targets, np.float32) > 0.5
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and targets {y.shape} must both be [N, C]")
    n, c = s.shape
    ap = np.zeros(c, dtype=np.float64)
    if n == 0 or c == 0:
        return ap
    block = 32
    starts = range(0, c, block)
    threads = num_threads or os.cpu_count() or 1
    if threads == 1 or c <= block:
        for lo in starts:
            _ap_block(s, y, lo, min(lo + block, c), ap)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda lo: _ap_block(s, y, lo, min(lo + block, c), ap), starts))
    return ap


def _ap_block(s: np.ndarray, y: np.ndarray, lo: int, hi: int, out: np.ndarray) -> None:
    """AP of classes ``lo:hi`` into ``out[lo:hi]``; works on contiguous rows of the transpose."""
    s_t = np.ascontiguousarray(s[:, lo:hi].T)
    y_t = np.ascontiguousarray(y[:, lo:hi].T)
    sorted_all = np.sort(s_t, axis=1)
    n = s.shape[0]
    for k in range(hi - lo):
        pos_scores = np.sort(s_t[k][y_t[k]])
        n_pos = len(pos_scores)
        if n_pos == 0:
            continue  # no positive: AP 0 (VideoLT's rule), and it stays in the mean
        # ranked at or above each positive: all samples and positives with score >= s_i
        n_ge = n - np.searchsorted(sorted_all[k], pos_scores, side="left")
        tp_ge = n_pos - np.searchsorted(pos_scores, pos_scores, side="left")
        out[lo + k] = np.sum(tp_ge / n_ge) / n_pos


def topk_accuracy(
    scores: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, k: int
) -> float:
    """Fraction of samples with any ground-truth label among the top-``k`` scores.

    Samples without any label count as misses (they stay in the denominator). Ties at the k-th
    score are broken by class index (``argpartition`` order), as a top-k on logits does.
    """
    s = _to_numpy(scores, np.float32)
    y = _to_numpy(targets, np.float32) > 0.5
    if len(s) == 0:
        return float("nan")
    k = min(k, s.shape[1])
    top = np.argpartition(-s, kth=k - 1, axis=1)[:, :k]
    hits = np.take_along_axis(y, top, axis=1).any(axis=1)
    return float(hits.mean())


def summarize(
    scores: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    groups: Mapping[str, np.ndarray] | None = None,
    skip_absent: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """``({"mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5"}, per-class AP)``.

    A group without classes reports NaN (it has no mean), not 0. ``skip_absent`` leaves
    classes without a positive out of the means (the per-class AP still holds their 0): for
    resampled test sets (:mod:`vltr.evaluation.resample`), where a class that was not drawn is
    not part of the test distribution rather than a class the model failed on.
    """
    ap = average_precision(scores, targets)
    counted = np.ones(len(ap), dtype=bool)
    if skip_absent:
        counted = (_to_numpy(targets, np.float32) > 0.5).any(axis=0)
    out = {"mAP": float(ap[counted].mean()) if counted.any() else float("nan")}
    for name, mask in (groups or {}).items():
        m = mask & counted
        out[f"mAP_{name}"] = float(ap[m].mean()) if m.any() else float("nan")
    out["acc1"] = topk_accuracy(scores, targets, 1)
    out["acc5"] = topk_accuracy(scores, targets, 5)
    return out, ap


class VideoLTMetrics(Metric):
    """Accumulates scores, targets and sample indices; computes :func:`summarize` over the split.

    Under DDP the states are gathered from every rank before computing, and samples seen twice
    (the padding ``DistributedSampler`` adds to even out the shards) are dropped by their dataset
    index, so the result equals a single-process evaluation.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, class_counts: np.ndarray, head_min: int, tail_max: int) -> None:
        super().__init__()
        self.groups = group_masks(np.asarray(class_counts), head_min=head_min, tail_max=tail_max)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.per_class_ap: np.ndarray | None = None

    def update(self, scores: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        self.scores.append(scores.detach().float())
        self.targets.append(targets.detach().to(torch.uint8))
        self.indices.append(indices.detach().long())

    def compute(self) -> dict[str, float]:
        result, ap = summarize(*self._deduplicated()[1:], self.groups)
        self.per_class_ap = ap
        return result

    def predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's scores ``[N, C]`` and targets so far: every rank's, padding dropped.

        The samples :meth:`compute` evaluates, for evaluations that need the predictions
        themselves (resampled test distributions); call it before ``compute`` in the epoch's
        end hooks (callbacks run before the module's hook, which resets the state). Under DDP
        every rank must call it (it gathers).
        """
        return self.indexed_predictions()[1:]

    def indexed_predictions(self) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """``(dataset indices [N], scores [N, C], targets [N, C])``: :meth:`predictions` with
        the samples' dataset indices (ascending), for saving them per video."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True
        ):
            return self._deduplicated()

    def _deduplicated(self) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        scores, targets, indices = (_cat(x) for x in (self.scores, self.targets, self.indices))
        index, first = np.unique(indices.cpu().numpy(), return_index=True)
        keep = torch.as_tensor(first, device=scores.device)
        return index, scores[keep], targets[keep]


def _cat(x: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.cat(x) if x else torch.empty(0)
