"""Write a small stand-in for the VideoLT feature release, in the release's exact layout, so
the "Use your own features" commands (README, docs/importers.md) can be run as written without
the 295 GB download:

    OUT/ResNet101-feature/{vid}.npy   float32 [T_i, 2048], T_i varies (some < 60, some > 150)
    OUT/labels/train.lst, validate.lst, test.lst       lines "vid l1,l2,..."
    OUT/labels/count-labels-train.lst                  lines "ClassName idx count"

The videos are the embedded synthetic generator's (``vltr.data.synthetic``, at 2048 dims and
300 frames, long-tailed counts, multi-label), each cut to a random length T_i; the class
signal is real, so training on the imported store learns something.

    .venv/bin/python scripts/make_videolt_release.py --out /tmp/VideoLT-mini
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vltr.data.store import FeatureStore  # noqa: E402
from vltr.data.synthetic import SyntheticSpec, generate  # noqa: E402

SPLIT_FILES = {"train": "train.lst", "val": "validate.lst", "test": "test.lst"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to create (must not exist)")
    p.add_argument("--num-classes", type=int, default=20)
    p.add_argument("--n-max", type=int, default=40, help="training videos of the largest class")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        print(f"make_videolt_release: error: {out} exists", file=sys.stderr)
        return 2
    spec = SyntheticSpec(
        num_classes=args.num_classes,
        n_max=args.n_max,
        imbalance_ratio=0.1,
        frames=300,
        dim=2048,
        min_eval_per_class=3,
        dtype="float32",
        seed=args.seed,
    )
    rng = np.random.default_rng(args.seed)
    features = out / "ResNet101-feature"
    labels = out / "labels"
    features.mkdir(parents=True)
    labels.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(generate(spec, Path(tmp) / "release.h5"))
        ids = [f"v{i:05d}" for i in range(store.num_videos)]
        # like the release: most videos 100-300 frames, a quarter shorter than 60
        lengths = np.where(
            rng.random(store.num_videos) < 0.25,
            rng.integers(1, 60, store.num_videos),
            rng.integers(100, 301, store.num_videos),
        )
        for i, vid in enumerate(ids):
            np.save(features / f"{vid}.npy", store.read(i)[: lengths[i]].astype(np.float32))
        for split, name in SPLIT_FILES.items():
            lines = [
                f"{ids[i]} {','.join(map(str, store.labels(i)))}\n" for i in store.split(split)
            ]
            (labels / name).write_text("".join(lines))
        counts = store.class_counts("train")
        (labels / "count-labels-train.lst").write_text(
            "".join(
                f"{name} {c} {float(n)}\n"
                for c, (name, n) in enumerate(zip(store.class_names, counts, strict=True))
            )
        )
        store.close()
    sizes = ", ".join(f"{s} {len(store.split(s))}" for s in SPLIT_FILES)
    print(
        f"{out}: {len(ids)} videos ({sizes}), T_i {lengths.min()}..{lengths.max()}, "
        f"{args.num_classes} classes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
