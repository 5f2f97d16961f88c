"""Train-loader throughput on a warm page cache: every read mode, with and without workers, the
resident mode, today's per-sample loader and a raw numpy memmap gather, in one run.

Builds (or reuses) a VideoLT-shaped feature store -- N videos x 150 frames x 2048 dims,
float16, contiguous -- reads it once so the page cache is warm, then measures epochs of
(batch 128, 60 of 150 frames, shuffled, the DataModule's loader as it trains):

* ``raw``: one process, a shuffled order, ``mm[i, sorted frames]`` from an ``np.memmap``,
  stacked into a float16 tensor (the baseline);
* ``per-sample``: the loader as it was before batched reads (``bench/before.py``, the
  baseline "today") -- a ``__getitem__`` per video (memmap gather), ``np.stack`` and a
  whole-batch NaN/Inf check in the collate function -- in-process and with ``--workers``;
* ``mmap`` / ``pread``: vltr's loader (``VideoFeatureDataModule``, ``read_mode=...``): one
  ``__getitems__`` per batch that fills the batch tensor in place (shared memory in a worker),
  in-process (``num_workers=0``) and with ``--workers`` worker processes;
* ``resident cpu``: ``resident=cpu``: the split loaded once (not timed here), each batch one
  ``index_select`` of 128 x 60 rows.

Every path hands each batch to the same consumer, which copies the features into a preallocated
tensor (what a host-to-device copy does: it reads every byte of the batch in the training
process; a worker's batch is only mapped there until something reads it). Repeats are
interleaved so drift hits all paths alike; medians are reported. The last line is the headline:
workers / in-process, resident / memmap loader, and the loader / raw ratio.

    .venv/bin/python bench/stream.py [--videos 2000] [--workers 2] [--dir /tmp/vltr-bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
import torch
from before import before_loader

from vltr.data.datamodule import VideoBatch, VideoFeatureDataModule
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
    with StoreWriter(
        path,
        num_videos=videos,
        frames=FRAMES,
        dim=DIM,
        class_names=[f"class{c:04d}" for c in range(classes)],
        dtype="float16",
        backbone="bench",
        source="bench",
    ) as w:
        for start in range(0, videos, CHUNK):
            n = min(CHUNK, videos - start)
            chunk = rng.standard_normal((n, FRAMES, DIM), dtype=np.float32).astype(np.float16)
            w.write_features(start, chunk)
        n_small = max(1, videos // 20)
        w.finish(
            labels=long_tail_labels(videos, classes, rng),
            video_ids=[f"bench{i:07d}" for i in range(videos)],
            # every video is in train so an epoch covers all N; val/test are small slices
            splits={
                "train": np.arange(videos),
                "val": np.arange(n_small),
                "test": np.arange(videos - n_small, videos),
            },
        )
    return time.perf_counter() - t0


def ensure_store(root: Path, videos: int, classes: int, seed: int) -> Path:
    path = store_path(root, videos, classes, seed)
    if path.exists():
        try:
            store = FeatureStore(path)
            ok = (store.num_videos, store.frames, store.dim, store.num_classes) == (
                videos,
                FRAMES,
                DIM,
                classes,
            ) and store.contiguous
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
    """Read the whole file sequentially so every path runs from the page cache."""
    t0 = time.perf_counter()
    buf = bytearray(64 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def make_datamodule(
    path: Path,
    workers: int,
    read_mode: str = "mmap",
    resident: str | None = None,
    read_threads: int = 4,
) -> VideoFeatureDataModule:
    """The DataModule as ``dataset=store`` builds it for training."""
    dm = VideoFeatureDataModule(
        name="bench",
        path=str(path),
        expected_dim=DIM,
        expected_frames=FRAMES,
        clip_frames=CLIP,
        batch_size=BATCH,
        num_workers=workers,
        read_mode=read_mode,
        read_threads=read_threads,
        resident=resident,
        groups={"head_min": 500, "tail_max": 100},
    )
    dm.setup("fit")
    return dm


def per_sample_loader(path: Path, workers: int) -> Iterable[VideoBatch]:
    """The loader before batched reads (``bench/before.py``)."""
    return before_loader(FeatureStore(path), CLIP, BATCH, workers)


class Sink:
    """Reads every byte of a batch's features in this process, as a host-to-device copy
    would: a copy into a preallocated tensor."""

    def __init__(self) -> None:
        self.out = torch.empty((BATCH, CLIP, DIM), dtype=torch.float16)

    def __call__(self, features: torch.Tensor) -> int:
        assert features.shape[1:] == (CLIP, DIM) and features.dtype == torch.float16
        self.out[: len(features)].copy_(features)
        return len(features)


TICK = os.sysconf("SC_CLK_TCK")


def workers_cpu(loader: object) -> float:
    """CPU seconds used so far by a loader's (persistent) worker processes."""
    total = 0.0
    for w in getattr(getattr(loader, "_iterator", None), "_workers", []):
        fields = Path(f"/proc/{w.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return total


def loader_epoch(loader: Iterable[VideoBatch], sink: Sink, seed: int) -> tuple[float, int, float]:
    """One epoch: (seconds, videos, CPU seconds of this process and the loader's workers)."""
    torch.manual_seed(seed)  # shuffle order
    videos = 0
    c0, t0 = time.process_time() + workers_cpu(loader), time.perf_counter()
    for batch in loader:
        videos += sink(batch.features)
    secs = time.perf_counter() - t0
    return secs, videos, time.process_time() + workers_cpu(loader) - c0


def raw_epoch(mm: np.memmap, train: np.ndarray, sink: Sink, seed: int) -> tuple[float, int, float]:
    """One epoch of a single-process memmap gather."""
    rng = np.random.default_rng(seed)
    videos = 0
    c0, t0 = time.process_time(), time.perf_counter()
    order = rng.permutation(train)
    for start in range(0, len(order), BATCH):
        clips = [
            mm[int(i), np.sort(rng.integers(0, FRAMES, CLIP))] for i in order[start : start + BATCH]
        ]
        videos += sink(torch.from_numpy(np.stack(clips)))
    return time.perf_counter() - t0, videos, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp/vltr-bench", help="where the store is built/cached")
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--classes", type=int, default=1004)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--read-threads", type=int, default=4, help="dataset.read_threads")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per path (median)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(1)
    print(
        f"cpus: {os.cpu_count()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    path = ensure_store(Path(args.dir), args.videos, args.classes, args.seed)
    store = FeatureStore(path)
    train = store.split("train")
    with h5py.File(path, "r") as f:
        offset = int(f["features"].id.get_offset())
    mm = np.memmap(
        path, dtype=np.float16, mode="r", offset=offset, shape=(store.num_videos, FRAMES, DIM)
    )
    secs = warm_page_cache(path)
    print(
        f"warm-up: read {path.stat().st_size / 2**30:.2f} GiB sequentially in {secs:.1f}s "
        "(page cache now warm)"
    )

    w, rt = args.workers, args.read_threads
    paths: dict[str, Callable[[Sink, int], tuple[float, int, float]]] = {}
    paths["raw memmap gather"] = lambda sink, seed: raw_epoch(mm, train, sink, seed)
    loaders: dict[str, Iterable[VideoBatch]] = {
        "per-sample, 0 workers": per_sample_loader(path, 0),
        f"per-sample, {w} workers": per_sample_loader(path, w),
        "pread, 0 workers, 1 read thread": make_datamodule(
            path, 0, "pread", read_threads=1
        ).train_dataloader(),
    }
    for mode in ("mmap", "pread"):
        for workers in (0, w):
            dm = make_datamodule(path, workers, mode, read_threads=rt)
            loaders[f"{mode}, {workers} workers"] = dm.train_dataloader()
    t0 = time.perf_counter()
    loaders["resident cpu"] = make_datamodule(path, 0, resident="cpu").train_dataloader()
    print(
        f"resident cpu: loaded {store.features_bytes / 1e9:.2f} GB in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    for name, loader in loaders.items():
        paths[name] = lambda sink, seed, loader=loader: loader_epoch(loader, sink, seed)

    sink = Sink()
    for run in paths.values():  # untimed: imports, worker start-up, first touch of the maps
        run(sink, args.seed)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(args.repeats):  # interleaved: drift and other load hit every path alike
        for name, run in paths.items():
            s, n, c = run(sink, args.seed + 1 + r)
            rates[name].append(n / s)
            cpu[name].append(c / n * 1e6)
        print(
            f"  repeat {r} (load {os.getloadavg()[0]:.1f}): "
            + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()),
            flush=True,
        )
    med = {name: statistics.median(v) for name, v in rates.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    raw = med["raw memmap gather"]
    print(
        f"\nwarm cache, {args.videos:,} videos, batch {BATCH}, {CLIP} of {FRAMES} frames, "
        f"read_threads={rt}, median of {args.repeats} epochs, load average "
        f"{os.getloadavg()[0]:.2f}; CPU = this process and its workers, per video"
    )
    print("| path | videos/s | / raw memmap gather | / per-sample, 0 workers | CPU us/video |")
    print("|---|---:|---:|---:|---:|")
    base = med["per-sample, 0 workers"]
    for name, v in med.items():
        print(f"| {name} | {v:,.0f} | {v / raw:.2f} | {v / base:.2f} | {med_cpu[name]:,.0f} |")
    best = max(("mmap", "pread"), key=lambda m: med[f"{m}, 0 workers"])
    inproc, workers = med[f"{best}, 0 workers"], med[f"{best}, {w} workers"]
    print(
        f"stream: {w} workers / in-process = {workers / inproc:.2f} ({best}, read_threads={rt}; "
        f"per-sample loader {med[f'per-sample, {w} workers'] / base:.2f}); "
        f"resident cpu / memmap loader = {med['resident cpu'] / med['mmap, 0 workers']:.2f}, "
        f"/ per-sample memmap loader = {med['resident cpu'] / base:.2f}; "
        f"in-process loader / raw gather = {inproc / raw:.2f} (warm cache)"
    )


if __name__ == "__main__":
    main()
