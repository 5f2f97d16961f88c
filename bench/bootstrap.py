"""Paired-bootstrap cost at VideoLT's test size (51,239 videos x 1,004 classes).

One bootstrap replicate of one run, two ways, in the same process:

* naive: draw the videos, build the resampled score matrix and compute per-class AP on it
  (``vltr.evaluation.metrics.average_precision``: a sort per class of the whole split);
* vltr: ``WeightedAP`` (``vltr.analysis.bootstrap``): the ranking made once per run, a
  replicate is one gather and one cumulative sum over each class's ranks down to its last
  positive.

Both give the same AP (checked here on the first replicate). Scores: a model with a per-class
signal (positives shifted by 2 standard deviations), labels long-tailed like VideoLT's test set.

    .venv/bin/python bench/bootstrap.py [--replicates 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vltr.analysis.bootstrap import WeightedAP
from vltr.evaluation.metrics import average_precision


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=51239)
    p.add_argument("--classes", type=int, default=1004)
    p.add_argument("--replicates", type=int, default=3)
    args = p.parse_args()
    n, c = args.videos, args.classes
    rng = np.random.default_rng(0)
    prior = np.exp(-np.arange(c) / (c / 5))
    labels = rng.choice(c, size=n, p=prior / prior.sum())
    targets = np.zeros((n, c), dtype=bool)
    targets[np.arange(n), labels] = True
    second = rng.random(n) < 0.15  # multi-label videos
    targets[np.flatnonzero(second), rng.integers(0, c, int(second.sum()))] = True
    scores = (rng.standard_normal((n, c)) + 2.0 * targets).astype(np.float16)

    start = time.perf_counter()
    fast = WeightedAP(scores, targets)
    build = time.perf_counter() - start
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(args.replicates)]

    start = time.perf_counter()
    ours = [fast.ap(w.astype(np.float64))[0] for w in draws]
    t_fast = (time.perf_counter() - start) / len(draws)

    start = time.perf_counter()
    naive = []
    for w in draws:
        rows = np.repeat(np.arange(n), w)
        naive.append(average_precision(scores[rows].astype(np.float32), targets[rows]))
    t_naive = (time.perf_counter() - start) / len(draws)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, naive, strict=True))
    print(
        f"{n:,} videos x {c:,} classes; ranks kept per replicate: {fast.work / 1e6:.1f} M "
        f"of {n * c / 1e6:.1f} M; max |AP difference| {diff:.1e}"
    )
    print(f"ranking once per run: {build:.1f} s")
    print(
        f"per replicate: naive {t_naive:.2f} s, vltr {t_fast:.2f} s: "
        f"{t_naive / t_fast:.1f}x faster; 1,000 replicates x 2 runs: "
        f"{2000 * t_fast / 60:.1f} min (one thread; replicates run in parallel threads)"
    )


if __name__ == "__main__":
    main()
