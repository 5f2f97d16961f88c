"""Running AP per class from compact per-video records (FrameStack's rAP): float16 logits,
bit-packed labels and the video index in ``2 C + ceil(C / 8) + 8`` bytes a video, so a
training epoch's predictions at VideoLT scale (179k videos, 1,004 classes) take 384 MB; AP is
computed a block of classes at a time (float32 for one block only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vltr.evaluation.metrics import average_precision

_AP_BLOCK = 128  # classes per AP block (a multiple of 8: blocks start on whole label bytes)
_F16_MAX = 65504.0


def record_width(num_classes: int) -> int:
    """Bytes per recorded video: float16 logits, bit-packed labels, int64 index."""
    return 2 * num_classes + (num_classes + 7) // 8 + 8


def pack_records(logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[B, record_width(C)]`` uint8 rows: ``logits`` as float16 (clamped to its finite range),
    ``targets > 0.5`` packed 8 classes a byte (little bit order), ``index`` as int64."""
    b, c = logits.shape
    scores = logits.detach().float().clamp(-_F16_MAX, _F16_MAX).half().contiguous()
    bits = (targets.detach() > 0.5).to(torch.uint8)
    pad = (-c) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(b, pad)], dim=1)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    packed = (bits.view(b, -1, 8) * weights).sum(dim=2, dtype=torch.uint8)
    idx = index.detach().long().reshape(b, 1).contiguous()
    return torch.cat([scores.view(torch.uint8), packed, idx.view(torch.uint8)], dim=1)


def unpack_records(rows: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_records`: ``(float16 scores [N, C], bool targets [N, C],
    int64 index [N])``."""
    c = num_classes
    scores = np.ascontiguousarray(rows[:, : 2 * c]).view(np.float16)
    nbytes = (c + 7) // 8
    targets = np.unpackbits(
        rows[:, 2 * c : 2 * c + nbytes], axis=1, count=c, bitorder="little"
    ).astype(bool)
    index = np.ascontiguousarray(rows[:, 2 * c + nbytes :]).view(np.int64)[:, 0]
    return scores, targets, index


def rap_from_records(chunks: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-class AP ``[C]`` (float64) of the recorded rows (a list of ``[n, W]`` uint8 arrays).

    Each video counts once: rows repeating an earlier row's index are dropped (first occurrence
    in list order kept). Equals ``average_precision(scores.astype(float32), targets)`` on the
    kept rows; computed ``_AP_BLOCK`` classes at a time, so float32 exists for one block only.
    """
    c = num_classes
    chunks = [ch for ch in chunks if len(ch)]
    ap = np.zeros(c, dtype=np.float64)
    if not chunks:
        return ap
    nbytes = (c + 7) // 8
    index = np.concatenate(
        [np.ascontiguousarray(ch[:, 2 * c + nbytes :]).view(np.int64)[:, 0] for ch in chunks]
    )
    _, first = np.unique(index, return_index=True)
    keep = None if len(first) == len(index) else np.sort(first)
    for lo in range(0, c, _AP_BLOCK):
        hi = min(lo + _AP_BLOCK, c)
        scores = np.concatenate(
            [np.ascontiguousarray(ch[:, 2 * lo : 2 * hi]).view(np.float16) for ch in chunks]
        )
        b0, b1 = 2 * c + lo // 8, 2 * c + (hi + 7) // 8
        labels = np.concatenate(
            [np.unpackbits(ch[:, b0:b1], axis=1, count=hi - lo, bitorder="little") for ch in chunks]
        )
        if keep is not None:
            scores, labels = scores[keep], labels[keep]
        ap[lo:hi] = average_precision(scores.astype(np.float32), labels.astype(np.float32))
    return ap
