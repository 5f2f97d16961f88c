"""Scale: peak memory and cold-cache throughput of the train loader as the store grows.

For each N (default 2,000 and 20,000 VideoLT-shaped videos: 150 frames x 2048 dims, float16,
600 KiB/video, 12.3 GB at 20,000), in ``--workdir``:

1. write the store with :class:`~vltr.data.store.StoreWriter` (timed; fsync'ed so that the
   page cache can be evicted afterwards);
2. memory: a fresh subprocess builds the real ``VideoFeatureDataModule`` train loader
   (batch 128, 60 of 150 frames, ``--workers`` workers as in training) and iterates
   ``--videos`` videos' worth of batches (default 3,000 -> 24 batches; more than one epoch at
   N=2,000). It reports its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``: nothing from
   building the store counts) and, from ``/proc/<pid>/status`` just before the loader shuts
   down, RssAnon / RssFile / RssShmem of the main process and of each worker (VmHWM is a
   worker's peak);
3. cold-cache throughput: the file is evicted from the page cache (fsync +
   ``posix_fadvise(POSIX_FADV_DONTNEED)``, checked with ``mincore``) before each measurement;
   then videos/s of the same loader over ``--videos`` videos, and of a single-process raw
   ``np.memmap`` gather of the same videos in the same order (the baseline, measured in the
   same run; ratio = loader / raw). Also: bytes the disk delivered per measurement
   (``/sys/dev/block/<dev>/stat``, whole device) against the bytes the clips need; and, for
   context, the raw gather once more with ``madvise(MADV_RANDOM)`` on the map (no read-around)
   and a reader that fetches each whole video with one ``pread`` (not what vltr does).

The store is deleted after its N is measured unless ``--keep``. The last lines are a table.

    .venv/bin/python bench/scale.py [--sizes 2000,20000] [--videos 3000] [--workers 2]
        [--workdir /tmp/vltr-bench-scale] [--keep]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from vltr.data.datamodule import VideoFeatureDataModule
from vltr.data.store import FeatureStore, StoreWriter

FRAMES, DIM, CLIP, BATCH, CLASSES = 150, 2048, 60, 128, 1004
CHUNK = 64
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------ the store
def build_store(path: Path, videos: int, seed: int = 0) -> float:
    """Write an N-video store; returns seconds. Features: one random 64-video block, re-used
    with the video index written into frame 0 (content does not matter for I/O or memory, and
    drawing 6e9 normals would dominate the bench); long-tailed 1-2 labels per video."""
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((CHUNK, FRAMES, DIM), dtype=np.float32).astype(np.float16)
    weights = np.exp(-np.arange(CLASSES) / (CLASSES / 6.0))
    weights /= weights.sum()
    first = rng.choice(CLASSES, size=videos, p=weights)
    second = rng.choice(CLASSES, size=videos, p=weights)
    labels = [[int(a)] if rng.random() >= 0.3 or a == b else sorted([int(a), int(b)])
              for a, b in zip(first, second, strict=True)]
    t0 = time.perf_counter()
    with StoreWriter(path, num_videos=videos, frames=FRAMES, dim=DIM,
                     class_names=[f"class{c:04d}" for c in range(CLASSES)], dtype="float16",
                     backbone="bench", source="bench/scale.py") as w:
        for start in range(0, videos, CHUNK):
            n = min(CHUNK, videos - start)
            block[:n, 0, 0] = np.arange(start, start + n) % 2048
            w.write_features(start, block[:n])
        small = np.arange(max(1, videos // 50))
        w.finish(labels=labels, video_ids=[f"v{i:07d}" for i in range(videos)],
                 splits={"train": np.arange(videos), "val": small, "test": small})
    with open(path, "rb") as f:
        os.fsync(f.fileno())  # dirty pages cannot be evicted
    return time.perf_counter() - t0


def evict(path: Path) -> float:
    """Drop the file from the page cache; returns the fraction still cached (should be 0)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return cached_fraction(path)


def cached_fraction(path: Path) -> float:
    """Fraction of the file's pages in the page cache (mincore on a fresh read-only map)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return float("nan")
        pages = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * pages)()
        ok = libc.mincore(addr, size, vec) == 0
        libc.munmap(addr, size)
    finally:
        os.close(fd)
    if not ok:
        return float("nan")
    return float(np.frombuffer(vec, dtype=np.uint8).astype(bool).mean())


def disk_read_bytes(path: Path) -> int:
    """Bytes read so far by the block device holding ``path`` (all processes)."""
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists():  # a partition's stat lives in the same place; else give up
        return 0
    return int(stat.read_text().split()[2]) * 512


# ------------------------------------------------------------------------------------ the loader
def make_datamodule(path: Path, workers: int) -> VideoFeatureDataModule:
    """The DataModule exactly as ``dataset=store`` builds it for training."""
    dm = VideoFeatureDataModule(name="bench", path=str(path), expected_dim=DIM,
                                expected_frames=FRAMES, clip_frames=CLIP, batch_size=BATCH,
                                num_workers=workers, groups={"head_min": 500, "tail_max": 100})
    dm.setup("fit")
    return dm


def batches_for(videos: int) -> int:
    return -(-videos // BATCH)


def iterate(loader: Any, batches: int) -> tuple[list[np.ndarray], Any, float]:
    """``batches`` batches from the loader (next epoch when one ends): the video indices of
    each batch, the live iterator (its workers are still up) and when the first batch came
    (``perf_counter``): throughput is counted from there, without the workers' start-up."""
    order: list[np.ndarray] = []
    it = iter(loader)
    first = 0.0
    while len(order) < batches:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        assert batch.features.shape[1:] == (CLIP, DIM)
        order.append(batch.index.numpy())
        if len(order) == 1:
            first = time.perf_counter()
    return order, it, first


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """KiB: VmHWM (peak RSS of this address space), VmRSS = RssAnon + RssFile + RssShmem, and
    the proportional set sizes (a page shared by k processes counts 1/k in each)."""
    out: dict[str, int] = {}
    for name, keys in (("status", ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")),
                       ("smaps_rollup", ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"))):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0])
    return out


def rss_child(path: Path, videos: int, workers: int) -> dict[str, Any]:
    """Runs in a fresh process: memory of the main process and workers while iterating."""
    torch.set_num_threads(1)
    dm = make_datamodule(path, workers)
    loader = dm.train_dataloader()
    before = proc_status()
    order, it, _ = iterate(loader, batches_for(videos))
    main = proc_status()
    worker_pids = [w.pid for w in getattr(it, "_workers", [])]
    workers_status = [proc_status(pid) for pid in worker_pids]
    del it, loader
    return {
        "batches": len(order), "videos": int(sum(len(o) for o in order)),
        "distinct_videos": int(len(np.unique(np.concatenate(order)))),
        "main_before": before, "main": main,
        # clean: this process was forked by a small sh, not by the bench (see measure())
        "main_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers": workers_status,
    }


def raw_gather(path: Path, order: list[np.ndarray], seed: int, random_advice: bool) -> float:
    """The baseline: the same videos in the same batches, ``mm[i, sorted frames]`` from an
    ``np.memmap`` in one process, stacked into a float16 tensor; returns the seconds after the
    first batch (as for the loader)."""
    store = FeatureStore(path)
    with h5py.File(path, "r") as f:
        offset = int(f["features"].id.get_offset())
    mm = np.memmap(path, dtype=np.float16, mode="r", offset=offset,
                   shape=(store.num_videos, FRAMES, DIM))
    if random_advice:
        mm._mmap.madvise(mmap.MADV_RANDOM)  # numpy keeps the mmap object here
    rng = np.random.default_rng(seed)
    t0 = 0.0
    for k, idx in enumerate(order):
        clips = [mm[int(i), np.sort(rng.integers(0, FRAMES, CLIP))] for i in idx]
        features = torch.from_numpy(np.stack(clips))
        assert features.shape == (len(idx), CLIP, DIM)
        if k == 0:
            t0 = time.perf_counter()
    return time.perf_counter() - t0


def pread_gather(path: Path, order: list[np.ndarray], seed: int) -> float:
    """What a reader that fetches each video in one piece would get: ``os.pread`` of the whole
    600 KiB video (``POSIX_FADV_RANDOM``: no readahead beyond it), then the frame gather; the
    same videos and timing rule as :func:`raw_gather`. Not what vltr does (it maps the file)."""
    store = FeatureStore(path)
    with h5py.File(path, "r") as f:
        offset = int(f["features"].id.get_offset())
    nbytes = FRAMES * DIM * 2
    rng = np.random.default_rng(seed)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        t0 = 0.0
        for k, idx in enumerate(order):
            clips = []
            for i in idx:
                raw = os.pread(fd, nbytes, offset + int(i) * nbytes)
                video = np.frombuffer(raw, dtype=np.float16).reshape(FRAMES, DIM)
                clips.append(video[np.sort(rng.integers(0, FRAMES, CLIP))])
            features = torch.from_numpy(np.stack(clips))
            assert features.shape == (len(idx), CLIP, DIM) and store.num_videos > 0
            if k == 0:
                t0 = time.perf_counter()
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def measure(path: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"videos": n, "file_gb": path.stat().st_size / 1e9}
    # memory, in a fresh process. Not spawned directly: Linux folds the address space that
    # exec replaces into the new program's ru_maxrss, and a child spawned from here (vfork or
    # fork) would start with this process's peak or current RSS. sh forks it (the `; exit`
    # keeps sh from exec'ing it in place), so its ru_maxrss starts from sh's ~1 MiB.
    evict(path)
    cmd = [sys.executable, __file__, "--rss-child", str(path), "--videos", str(args.videos),
           "--workers", str(args.workers)]
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd],
                          capture_output=True, text=True, check=True)
    row["rss"] = json.loads(proc.stdout.strip().splitlines()[-1])

    needed = lambda order: sum(len(o) for o in order) * CLIP * DIM * 2  # noqa: E731
    # cold: the loader
    row["cached_before_loader"] = evict(path)
    dm = make_datamodule(path, args.workers)
    loader = dm.train_dataloader()
    torch.manual_seed(args.seed)
    d0, t0 = disk_read_bytes(path), time.perf_counter()
    order, it, first = iterate(loader, batches_for(args.videos))
    row["loader_s"] = time.perf_counter() - first
    row["loader_first_batch_s"] = first - t0  # workers' start-up + the first cold batch
    row["loader_disk_gb"] = (disk_read_bytes(path) - d0) / 1e9
    del it, loader, dm
    count = sum(len(o) for o in order[1:])  # videos timed (after the first batch)
    row["measured_videos"] = count
    row["needed_gb"] = needed(order) / 1e9
    # cold: the raw gather of the same videos (default advice, MADV_RANDOM), and whole-video
    # preads for comparison
    runs = {"raw": lambda: raw_gather(path, order, args.seed, False),
            "raw_random": lambda: raw_gather(path, order, args.seed, True),
            "pread": lambda: pread_gather(path, order, args.seed)}
    for key, run in runs.items():
        row[f"cached_before_{key}"] = evict(path)
        d0 = disk_read_bytes(path)
        row[f"{key}_s"] = run()
        row[f"{key}_disk_gb"] = (disk_read_bytes(path) - d0) / 1e9
    for key in ("loader", *runs):
        row[f"{key}_vps"] = count / row[f"{key}_s"]
    return row


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nmemory (MiB): the train loader, batch {BATCH}, {CLIP} of {FRAMES} frames, "
          f"{args.workers} workers, {batches_for(args.videos)} batches; main = the training "
          "process, measured in a fresh process per N; RSS values at the end of the iteration, "
          "peaks marked; worker = the larger of the workers; PSS shares shared pages out")
    print("| N videos | file GB | distinct videos read | main peak RSS (ru_maxrss) | "
          "main RssAnon before -> after | main RssFile | worker peak RSS | worker RssAnon | "
          "worker RssFile | worker PSS anon | worker PSS file | PSS all processes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m, before, w = r["rss"]["main"], r["rss"]["main_before"], r["rss"]["workers"]
        wmax = {k: max((s.get(k, 0) for s in w), default=0)
                for k in ("VmHWM", "RssAnon", "RssFile", "Pss_Anon", "Pss_File")}
        pss = m["Pss"] + sum(s["Pss"] for s in w)
        print(f"| {r['videos']:,} | {r['file_gb']:.2f} | {r['rss']['distinct_videos']:,} | "
              f"{mib(r['rss']['main_maxrss_kib'])} | {mib(before['RssAnon'])} -> "
              f"{mib(m['RssAnon'])} | {mib(m['RssFile'])} | {mib(wmax['VmHWM'])} | "
              f"{mib(wmax['RssAnon'])} | {mib(wmax['RssFile'])} | {mib(wmax['Pss_Anon'])} | "
              f"{mib(wmax['Pss_File'])} | {mib(pss)} |")
    print(f"\ncold-cache throughput: {batches_for(args.videos)} batches, videos/s counted after "
          "the first batch (workers' start-up excluded); the page cache is evicted before "
          "each column; disk GB = read by the device meanwhile (all processes)")
    print("| N videos | loader videos/s | raw gather videos/s | loader / raw | "
          "raw + MADV_RANDOM videos/s | whole-video pread videos/s | clips need GB | "
          "disk GB: loader / raw / raw+RANDOM / pread | loader first batch s | "
          "cached before (max) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cached = max(r[f"cached_before_{k}"] for k in ("loader", "raw", "raw_random", "pread"))
        disk = " / ".join(f"{r[f'{k}_disk_gb']:.2f}"
                          for k in ("loader", "raw", "raw_random", "pread"))
        print(f"| {r['videos']:,} | {r['loader_vps']:,.0f} | {r['raw_vps']:,.0f} | "
              f"{r['loader_vps'] / r['raw_vps']:.2f} | {r['raw_random_vps']:,.0f} | "
              f"{r['pread_vps']:,.0f} | {r['needed_gb']:.2f} | {disk} | "
              f"{r['loader_first_batch_s']:.1f} | {cached:.1%} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,20000", help="comma-separated numbers of videos")
    p.add_argument("--videos", type=int, default=3000, help="videos iterated per measurement")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/vltr-bench-scale")
    p.add_argument("--keep", action="store_true", help="keep the stores (else deleted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        print(json.dumps(rss_child(Path(args.rss_child), args.videos, args.workers)))
        return

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"cpus: {os.cpu_count()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"workdir {workdir}")
    rows = []
    t_start = time.perf_counter()
    for n in (int(s) for s in args.sizes.split(",")):
        path = workdir / f"scale-n{n}-t{FRAMES}-d{DIM}-f16.h5"
        try:
            if path.exists() and FeatureStore(path).num_videos == n:
                print(f"N={n}: reusing {path}")
            else:
                secs = build_store(path, n, args.seed)
                size = path.stat().st_size
                print(f"N={n}: wrote {size / 1e9:.2f} GB in {secs:.1f}s "
                      f"({size / 1e9 / secs:.2f} GB/s, StoreWriter + fsync)")
            row = measure(path, n, args)
            rows.append(row)
            print(f"N={n}: {json.dumps(row)}", flush=True)
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    report(rows, args)
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
