"""Train-loader throughput: vltr's data path vs a raw numpy memmap gather of the same file.

Builds (or reuses) a VideoLT-shaped feature store -- N videos x 150 frames x 2048 dims,
float16, contiguous -- then, in one run and on a warm page cache, measures:

* vltr: ``VideoFeatureDataset(store, "train", clip_frames=60)`` through a
  ``torch.utils.data.DataLoader`` (batch 128, shuffle, ``--workers`` processes,
  ``collate_videos``, persistent workers as in training), one full epoch per repeat;
* raw: a single-process loop over a shuffled train order that draws the same kind of frame
  indices (60, uniform with replacement, sorted), gathers ``mm[i, idx]`` from an
  ``np.memmap`` at the ``/features`` offset, stacks batches of 128 into a float16 torch tensor
  (what ``collate_videos`` hands over; the LightningModule casts to float32 on the device).

The last line is the headline: vltr videos/s, raw videos/s and their ratio.

    .venv/bin/python bench/stream.py [--videos 2000] [--workers 2] [--dir /tmp/vltr-bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from vltr.data.datamodule import VideoFeatureDataset, collate_videos
from vltr.data.store import FeatureStore, StoreWriter

FRAMES = 150
DIM = 2048
CLIP = 60
BATCH = 128
CHUNK = 64


def store_path(root: Path, videos: int, classes: int, seed: int) -> Path:
    return root / f"videolt-like-n{videos}-t{FRAMES}-d{DIM}-c{classes}-f16-s{seed}.h5"


def long_tail_labels(videos: int, classes: int, rng: np.random.Generator) -> list[list[int]]:
    """1-2 labels per video, class frequencies decaying exponentially (head to tail)."""
    weights = np.exp(-np.arange(classes) / (classes / 6.0))
    weights /= weights.sum()
    labels: list[list[int]] = []
    for _ in range(videos):
        k = 1 + int(rng.random() < 0.3)
        labels.append(sorted(int(c) for c in rng.choice(classes, size=k, replace=False, p=weights)))
    return labels


def build_store(path: Path, videos: int, classes: int, seed: int) -> float:
    """Write the store with StoreWriter; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with StoreWriter(path, num_videos=videos, frames=FRAMES, dim=DIM,
                     class_names=[f"class{c:04d}" for c in range(classes)], dtype="float16",
                     backbone="bench", source="bench") as w:
        for start in range(0, videos, CHUNK):
            n = min(CHUNK, videos - start)
            chunk = rng.standard_normal((n, FRAMES, DIM), dtype=np.float32).astype(np.float16)
            w.write_features(start, chunk)
        n_small = max(1, videos // 20)
        w.finish(
            labels=long_tail_labels(videos, classes, rng),
            video_ids=[f"bench{i:07d}" for i in range(videos)],
            # every video is in train so an epoch covers all N; val/test are small slices
            splits={"train": np.arange(videos), "val": np.arange(n_small),
                    "test": np.arange(videos - n_small, videos)},
        )
    return time.perf_counter() - t0


def ensure_store(root: Path, videos: int, classes: int, seed: int) -> Path:
    path = store_path(root, videos, classes, seed)
    if path.exists():
        try:
            store = FeatureStore(path)
            ok = (store.num_videos, store.frames, store.dim, store.num_classes) == (
                videos, FRAMES, DIM, classes) and store.contiguous
        except Exception as e:  # any unreadable cache is rebuilt
            print(f"cached store {path} unusable ({e}); rebuilding")
            ok = False
        if ok:
            print(f"store: reusing {path} ({path.stat().st_size / 2**30:.2f} GiB)")
            return path
        path.unlink()
    secs = build_store(path, videos, classes, seed)
    print(f"store: wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {secs:.1f}s")
    return path


def warm_page_cache(path: Path) -> float:
    """Read the whole file sequentially so both paths run from the page cache."""
    t0 = time.perf_counter()
    buf = bytearray(64 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def make_loader(store: FeatureStore, workers: int) -> DataLoader:
    """vltr's training loader as the DataModule builds it (persistent workers, as in training)."""
    ds = VideoFeatureDataset(store, "train", clip_frames=CLIP)
    return DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                      collate_fn=collate_videos, persistent_workers=workers > 0)


def vltr_epoch(loader: DataLoader, seed: int) -> tuple[float, int, int]:
    """One epoch through vltr's train dataset + DataLoader: (seconds, videos, batches)."""
    torch.manual_seed(seed)  # shuffle order
    videos = batches = 0
    t0 = time.perf_counter()
    for batch in loader:
        assert batch.features.shape[1:] == (CLIP, DIM)
        assert batch.features.dtype == torch.float16
        videos += len(batch)
        batches += 1
    return time.perf_counter() - t0, videos, batches


def raw_epoch(mm: np.memmap, train: np.ndarray, seed: int) -> tuple[float, int, int]:
    """One epoch of a single-process memmap gather: (seconds, videos, batches)."""
    rng = np.random.default_rng(seed)
    frames = mm.shape[1]
    videos = batches = 0
    t0 = time.perf_counter()
    order = rng.permutation(train)
    for start in range(0, len(order), BATCH):
        clips = [mm[int(i), np.sort(rng.integers(0, frames, CLIP))]
                 for i in order[start : start + BATCH]]
        features = torch.from_numpy(np.stack(clips))
        assert features.shape[1:] == (CLIP, DIM)
        videos += features.shape[0]
        batches += 1
    return time.perf_counter() - t0, videos, batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp/vltr-bench", help="where the store is built/cached")
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--classes", type=int, default=1004)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per path (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-inprocess", dest="inprocess", action="store_false",
                   help="skip the extra num_workers=0 epochs printed for context")
    args = p.parse_args()

    torch.set_num_threads(1)
    print(f"cpus: {os.cpu_count()}, torch {torch.__version__}, numpy {np.__version__}")
    path = ensure_store(Path(args.dir), args.videos, args.classes, args.seed)

    store = FeatureStore(path)
    train = store.split("train")
    with h5py.File(path, "r") as f:
        offset = int(f["features"].id.get_offset())
    mm = np.memmap(path, dtype=np.float16, mode="r", offset=offset,
                   shape=(store.num_videos, FRAMES, DIM))

    secs = warm_page_cache(path)
    print(f"warm-up: read {path.stat().st_size / 2**30:.2f} GiB sequentially in {secs:.1f}s "
          "(page cache now warm)")
    # untimed warm-up epochs: imports, worker fork, allocator, first-touch of the memmaps
    loader = make_loader(store, args.workers)
    inproc_loader = make_loader(store, 0)
    vltr_epoch(loader, args.seed)  # also starts the persistent workers
    if args.workers > 0 and args.inprocess:
        vltr_epoch(inproc_loader, args.seed)
    raw_epoch(mm, train, args.seed)

    vltr_rates: list[float] = []
    raw_rates: list[float] = []
    inproc_rates: list[float] = []
    vltr_batches = raw_batches = 0
    for r in range(args.repeats):  # interleaved so drift hits both paths alike
        s, n, vltr_batches = vltr_epoch(loader, args.seed + 1 + r)
        vltr_rates.append(n / s)
        print(f"  epoch {r}: vltr loader {n} videos, {vltr_batches} batches in {s:.2f}s "
              f"-> {n / s:,.0f} videos/s")
        if args.workers > 0 and args.inprocess:
            s, n, _ = vltr_epoch(inproc_loader, args.seed + 1 + r)
            inproc_rates.append(n / s)
            print(f"  epoch {r}: vltr loader, 0 workers (context) {n} videos in {s:.2f}s "
                  f"-> {n / s:,.0f} videos/s")
        s, n, raw_batches = raw_epoch(mm, train, args.seed + 1 + r)
        raw_rates.append(n / s)
        print(f"  epoch {r}: raw gather  {n} videos, {raw_batches} batches in {s:.2f}s "
              f"-> {n / s:,.0f} videos/s")

    x, y = statistics.median(vltr_rates), statistics.median(raw_rates)
    print(f"vltr loader (DataLoader, {args.workers} workers, batch {BATCH}, {CLIP} of {FRAMES} "
          f"frames, median of {args.repeats} epochs): {x:,.0f} videos/s, "
          f"{vltr_batches} batches/epoch")
    if inproc_rates:
        print(f"vltr loader in-process (num_workers=0, for context): "
              f"{statistics.median(inproc_rates):,.0f} videos/s")
    print(f"raw memmap gather (1 process, same batch/frames, median of {args.repeats} epochs): "
          f"{y:,.0f} videos/s, {raw_batches} batches/epoch")
    print(f"stream: vltr loader {x:,.0f} videos/s vs raw memmap gather {y:,.0f} videos/s, "
          f"ratio X/Y = {x / y:.2f} (warm cache, {args.workers} workers)")


if __name__ == "__main__":
    main()
