"""Per-class AP at VideoLT test size: ``vltr.evaluation.metrics.average_precision`` vs sklearn.

Data: ``--samples`` x ``--classes`` (default 51,239 x 1,004, the VideoLT test split) with
long-tailed multi-label targets (1-2 labels per sample, class frequencies decaying
exponentially, so tail classes have a handful of positives and some may have none) and float32
scores = noisy logits correlated with the targets. A fraction of the scores is rounded to one
decimal so that exact ties (between positives and negatives) are common and the tie handling
is exercised.

vltr: best of 3 calls. sklearn: ``average_precision_score`` per column, one run (column
extraction included). Classes without a positive get 0 in vltr; sklearn is undefined there,
so those columns are left out of the comparison. The last line is the headline.

    .venv/bin/python bench/metrics.py [--samples 51239] [--classes 1004]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.metrics import average_precision_score

from vltr.evaluation.metrics import average_precision


def make_data(
    samples: int, classes: int, tie_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32 [N, C], targets float32 {0, 1} [N, C])."""
    rng = np.random.default_rng(seed)
    # long tail: frequency of class c ~ exp(-4 c / C), head/tail ratio ~ e^4 ~ 55,
    # classes in a random column order
    freq = np.exp(-4.0 * np.arange(classes) / classes)
    freq = rng.permutation(freq / freq.sum())
    targets = np.zeros((samples, classes), dtype=np.float32)
    first = rng.choice(classes, size=samples, p=freq)
    targets[np.arange(samples), first] = 1.0
    extra = np.flatnonzero(rng.random(samples) < 0.4)  # ~1.4 labels per sample
    targets[extra, rng.choice(classes, size=len(extra), p=freq)] = 1.0
    # logits: noise plus a per-class separation for the true labels
    separation = rng.uniform(0.5, 3.0, size=classes).astype(np.float32)
    scores = rng.standard_normal((samples, classes), dtype=np.float32)
    scores += targets * separation
    # exact ties: round a fraction of the scores to one decimal
    tied = rng.random((samples, classes)) < tie_fraction
    scores[tied] = np.round(scores[tied], 1)
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray, columns: np.ndarray) -> np.ndarray:
    out = np.zeros(scores.shape[1], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in columns:
            out[k] = average_precision_score(targets[:, k], scores[:, k])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=51239)
    p.add_argument("--classes", type=int, default=1004)
    p.add_argument("--ties", type=float, default=0.2, help="fraction of scores rounded to 0.1")
    p.add_argument("--repeats", type=int, default=3, help="vltr calls (best is reported)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    t0 = time.perf_counter()
    scores, targets = make_data(args.samples, args.classes, args.ties, args.seed)
    n, c = scores.shape
    positives = targets.sum(axis=0).astype(np.int64)
    with_pos = np.flatnonzero(positives > 0)
    labels_per_sample = targets.sum(axis=1).mean()
    distinct = np.mean([len(np.unique(scores[:, k])) for k in range(0, c, max(1, c // 50))])
    print(
        f"data: {n} x {c} in {time.perf_counter() - t0:.1f}s, {labels_per_sample:.2f} labels "
        f"per sample, positives per class min {positives.min()} / median "
        f"{int(np.median(positives))} / max {positives.max()}, {c - len(with_pos)} class(es) "
        f"without positives, ~{distinct:,.0f} distinct scores per column of {n}"
    )

    vltr_times: list[float] = []
    ap_vltr = np.empty(0)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ap_vltr = average_precision(scores, targets)
        vltr_times.append(time.perf_counter() - t0)
    t_vltr = min(vltr_times)
    print(
        "vltr average_precision: "
        + ", ".join(f"{t:.2f}s" for t in vltr_times)
        + f" -> best {t_vltr:.2f}s"
    )

    t0 = time.perf_counter()
    ap_sk = sklearn_ap(scores, targets, with_pos)
    t_sk = time.perf_counter() - t0
    print(f"sklearn average_precision_score per column ({len(with_pos)} columns): {t_sk:.2f}s")

    assert ap_vltr.shape == (c,)
    assert np.all(ap_vltr[positives == 0] == 0.0), "vltr: classes without positives must get 0"
    diff = np.abs(ap_vltr[with_pos] - ap_sk[with_pos])
    worst = with_pos[int(np.argmax(diff))]
    print(
        f"mAP over {len(with_pos)} classes with positives: vltr {ap_vltr[with_pos].mean():.6f}, "
        f"sklearn {ap_sk[with_pos].mean():.6f}; worst class {worst} "
        f"({positives[worst]} positives)"
    )
    print(
        f"metrics: vltr AP {t_vltr:.2f}s vs sklearn {t_sk:.2f}s on {n}x{c} -> speed-up "
        f"{t_sk / t_vltr:.1f}x, max |diff| = {diff.max():.1e}"
    )


if __name__ == "__main__":
    main()
