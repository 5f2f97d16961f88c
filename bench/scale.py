"""Scale: cold-cache throughput, bytes read from disk and memory of the train loader in every
read mode, and the resident mode, as the store grows past the page cache.

For each N (default 2,000, 20,000 and 50,000 VideoLT-shaped videos: 150 frames x 2048 dims,
float16, 600 KiB/video; 30.7 GB at 50,000, more than this machine's RAM), in ``--workdir``:

1. write the store with :class:`~vltr.data.store.StoreWriter` (real bytes, never a sparse
   file, which would read without disk I/O and fake a cold cache; fsync'ed so the page cache
   can be evicted). A size that does not fit on the free disk (with 10 % to spare) is skipped.
2. for each loader, in a fresh process, with the file evicted from the page cache just before
   (``POSIX_FADV_DONTNEED``, checked with ``mincore``): ``--videos`` videos' worth of batches
   (batch 128, 60 of 150 frames, ``--workers`` workers, the same seed, hence the same videos
   and frames in every mode), each batch copied into a preallocated tensor (what a
   host-to-device copy reads). Loaders:

   * ``per-sample mmap``: the loader before batched reads (``bench/before.py``: one
     ``__getitem__`` per video through the memmap, ``np.stack`` in the collate function; the
     baseline, "today");
   * ``mmap`` / ``pread``: ``VideoFeatureDataModule(read_mode=...)``, batched reads into
     reused buffers (``pread``: 4 reads in flight per process, the default ``read_threads``,
     and for comparison 1);
   * ``resident cpu``: ``resident=cpu``: the train split loaded once (timed, cold), then
     batches gathered from memory; refused in one line when it does not fit.

   Each reports videos/s counted after the first batch (workers' start-up excluded), the
   bytes its own processes made the disk read (``/proc/<pid>/io`` ``read_bytes`` of the main
   process and every worker: other processes on the machine do not count) and the whole
   device's read bytes meanwhile, and memory at the end of the iteration: peak RSS of the
   training process (``ru_maxrss``; it is started through ``sh`` so that nothing of this
   process is inherited), RssAnon/RssFile/RssShmem of it and of the largest worker.
3. for context, a single-process raw ``np.memmap`` gather of the same videos, cold.

The store is deleted after its N is measured unless ``--keep``. The last line is the headline:
pread / per-sample videos/s and disk bytes / clip bytes at the largest N, memory per mode.

    .venv/bin/python bench/scale.py [--sizes 2000,20000,50000] [--videos 3000] [--workers 2]
        [--workdir /tmp/vltr-bench-scale] [--keep]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from before import before_loader

from vltr.data.datamodule import VideoFeatureDataModule
from vltr.data.store import FeatureStore, StoreWriter
from vltr.utils.errors import ConfigError

FRAMES, DIM, CLIP, BATCH, CLASSES = 150, 2048, 60, 128, 1004
CHUNK = 64
PAGE = os.sysconf("SC_PAGE_SIZE")
VIDEO_BYTES = FRAMES * DIM * 2
LOADERS = ("per-sample mmap", "mmap", "pread", "pread 1 read thread", "resident cpu")


# ------------------------------------------------------------------------------------ the store
def build_store(path: Path, videos: int, seed: int = 0) -> float:
    """Write an N-video store; returns seconds. Features: one random 64-video block, re-used
    with the video index written into frame 0 (content does not matter for I/O or memory, and
    drawing 1.5e10 normals would dominate the bench; every byte is written, nothing is
    sparse); long-tailed 1-2 labels per video."""
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((CHUNK, FRAMES, DIM), dtype=np.float32).astype(np.float16)
    weights = np.exp(-np.arange(CLASSES) / (CLASSES / 6.0))
    weights /= weights.sum()
    first = rng.choice(CLASSES, size=videos, p=weights)
    second = rng.choice(CLASSES, size=videos, p=weights)
    labels = [
        [int(a)] if rng.random() >= 0.3 or a == b else sorted([int(a), int(b)])
        for a, b in zip(first, second, strict=True)
    ]
    t0 = time.perf_counter()
    with StoreWriter(
        path,
        num_videos=videos,
        frames=FRAMES,
        dim=DIM,
        class_names=[f"class{c:04d}" for c in range(CLASSES)],
        dtype="float16",
        backbone="bench",
        source="bench/scale.py",
    ) as w:
        for start in range(0, videos, CHUNK):
            n = min(CHUNK, videos - start)
            block[:n, 0, 0] = np.arange(start, start + n) % 2048
            w.write_features(start, block[:n])
        small = np.arange(max(1, videos // 50))
        w.finish(
            labels=labels,
            video_ids=[f"v{i:07d}" for i in range(videos)],
            splits={"train": np.arange(videos), "val": small, "test": small},
        )
    with open(path, "rb") as f:
        os.fsync(f.fileno())  # dirty pages cannot be evicted
    return time.perf_counter() - t0


def allocated_fraction(path: Path) -> float:
    """Blocks on disk / file size: 1.0 for a file written in full, < 1 for a sparse one."""
    st = path.stat()
    return st.st_blocks * 512 / st.st_size


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
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
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
    if not stat.exists():
        return 0
    return int(stat.read_text().split()[2]) * 512


def proc_read_bytes(pid: int | str = "self") -> int:
    """Bytes this process made the storage layer fetch (page faults and reads alike)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """KiB: VmHWM (peak RSS of this address space), RssAnon / RssFile / RssShmem."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out


# ------------------------------------------------------------------------------------ the loader
def make_loader(path: Path, workers: int, loader: str) -> tuple[Any, FeatureStore]:
    """The train loader as ``dataset=store`` builds it, in ``loader``'s mode; the store."""
    if loader == "per-sample mmap":
        store = FeatureStore(path)
        return (lambda: before_loader(store, CLIP, BATCH, workers)), store
    dm = VideoFeatureDataModule(
        name="bench",
        path=str(path),
        expected_dim=DIM,
        expected_frames=FRAMES,
        clip_frames=CLIP,
        batch_size=BATCH,
        num_workers=workers,
        read_mode="pread" if loader.startswith("pread") else "mmap",
        read_threads=1 if loader == "pread 1 read thread" else 4,
        resident="cpu" if loader == "resident cpu" else None,
        groups={"head_min": 500, "tail_max": 100},
    )
    dm.setup("fit")
    return dm.train_dataloader, dm.store


def batches_for(videos: int) -> int:
    return -(-videos // BATCH)


def loader_child(path: Path, loader: str, videos: int, workers: int, seed: int) -> dict[str, Any]:
    """Runs in a fresh process: one loader, cold, its throughput, disk bytes and memory."""
    torch.set_num_threads(1)
    L.seed_everything(seed, workers=True)
    row: dict[str, Any] = {"loader": loader}
    build, store = make_loader(path, workers, loader)
    io0, dev0, t0 = proc_read_bytes(), disk_read_bytes(path), time.perf_counter()
    try:
        train = build()  # resident: loads the split here
    except ConfigError as e:
        row["refused"] = str(e)
        return row
    if loader == "resident cpu":
        row["load_s"] = time.perf_counter() - t0
        row["load_gb"] = store.features_bytes / 1e9
        row["load_disk_gb"] = (proc_read_bytes() - io0) / 1e9
        io0, dev0 = proc_read_bytes(), disk_read_bytes(path)
    sink = torch.empty((BATCH, CLIP, DIM), dtype=torch.float16)
    before = proc_status()
    it, seen, first, videos_timed = iter(train), 0, 0.0, 0
    t_start = time.perf_counter()
    while seen < batches_for(videos):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(train)
            continue
        sink[: len(batch)].copy_(batch.features)
        seen += 1
        if seen == 1:
            first = time.perf_counter()
        else:
            videos_timed += len(batch)
    secs = time.perf_counter() - first
    workers_pids = [w.pid for w in getattr(it, "_workers", [])]
    worker_io = sum(proc_read_bytes(p) for p in workers_pids)
    row.update(
        videos_timed=videos_timed,
        vps=videos_timed / secs,
        first_batch_s=first - t_start,
        own_disk_gb=(proc_read_bytes() - io0 + worker_io) / 1e9,
        device_disk_gb=(disk_read_bytes(path) - dev0) / 1e9,
        main_before=before,
        main=proc_status(),
        workers=[proc_status(p) for p in workers_pids],
        # clean: this process was forked by a small sh, not by the bench (see run_child)
        main_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    del it, train
    return row


def run_child(path: Path, loader: str, args: argparse.Namespace) -> dict[str, Any]:
    # Not spawned directly: Linux folds the address space that exec replaces into the new
    # program's ru_maxrss, so a child spawned from here would start with this process's peak.
    # sh forks it (the `; exit` keeps sh from exec'ing it in place): ru_maxrss starts at ~1 MiB.
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        "--loader",
        loader,
        "--videos",
        str(args.videos),
        "--workers",
        str(args.workers),
        "--seed",
        str(args.seed),
    ]
    proc = subprocess.run(
        ["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{loader} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def raw_gather(path: Path, videos: int, seed: int) -> tuple[float, float]:
    """Context: one process gathering ``mm[i, sorted frames]`` for a shuffled order, cold;
    returns (videos/s after the first batch, own disk GB)."""
    store = FeatureStore(path)
    with h5py.File(path, "r") as f:
        offset = int(f["features"].id.get_offset())
    mm = np.memmap(
        path, dtype=np.float16, mode="r", offset=offset, shape=(store.num_videos, FRAMES, DIM)
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(store.num_videos)[:videos]
    io0, t0, timed = proc_read_bytes(), 0.0, 0
    for k, start in enumerate(range(0, len(order), BATCH)):
        idx = order[start : start + BATCH]
        clips = [mm[int(i), np.sort(rng.integers(0, FRAMES, CLIP))] for i in idx]
        torch.from_numpy(np.stack(clips))
        if k == 0:
            t0 = time.perf_counter()
        else:
            timed += len(idx)
    return timed / (time.perf_counter() - t0), (proc_read_bytes() - io0) / 1e9


def measure(path: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {
        "videos": n,
        "file_gb": path.stat().st_size / 1e9,
        "allocated": allocated_fraction(path),
        "loaders": {},
    }
    for loader in args.loaders.split(","):
        cached = evict(path)
        result = run_child(path, loader, args)
        result["cached_before"] = cached
        row["loaders"][loader] = result
        print(
            f"  N={n} {loader}: "
            + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.items()
                if k
                in ("vps", "own_disk_gb", "device_disk_gb", "load_s", "refused", "cached_before")
            ),
            flush=True,
        )
    row["cached_before_raw"] = evict(path)
    row["raw_vps"], row["raw_disk_gb"] = raw_gather(path, args.videos, args.seed)
    row["needed_gb"] = args.videos * CLIP * DIM * 2 / 1e9
    return row


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    loaders = args.loaders.split(",")
    print(
        f"\ncold cache: {batches_for(args.videos)} batches of {BATCH} ({CLIP} of {FRAMES} "
        f"frames), {args.workers} workers (resident: in-process), videos/s after the first "
        "batch; disk GB = read by the loader's own processes (/proc/<pid>/io), device-wide "
        "in brackets; clips need = the sampled frames' bytes"
    )
    print(
        "| N videos | file GB | loader | videos/s | x per-sample | disk GB (device) | "
        "disk / clip bytes | first batch s | cached before |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = r["loaders"].get("per-sample mmap", {}).get("vps")
        for name in loaders:
            x = r["loaders"][name]
            if "refused" in x:
                print(
                    f"| {r['videos']:,} | {r['file_gb']:.1f} | {name} | refused: "
                    f"{x['refused']} | | | | | |"
                )
                continue
            rel = f"{x['vps'] / base:.2f}" if base else ""
            print(
                f"| {r['videos']:,} | {r['file_gb']:.1f} | {name} | {x['vps']:,.0f} | {rel} "
                f"| {x['own_disk_gb']:.2f} ({x['device_disk_gb']:.2f}) | "
                f"{x['own_disk_gb'] / r['needed_gb']:.1f} | {x['first_batch_s']:.1f} | "
                f"{x['cached_before']:.1%} |"
            )
        print(
            f"| {r['videos']:,} | {r['file_gb']:.1f} | raw memmap gather, 1 process "
            f"(context) | {r['raw_vps']:,.0f} | "
            f"{r['raw_vps'] / base if base else float('nan'):.2f} | {r['raw_disk_gb']:.2f} | "
            f"{r['raw_disk_gb'] / r['needed_gb']:.1f} | | {r['cached_before_raw']:.1%} |"
        )
    resident = [(r, r["loaders"].get("resident cpu")) for r in rows]
    resident = [(r, x) for r, x in resident if x and "refused" not in x]
    if resident:
        print("\nresident cpu: loading the train split (cold)")
        print("| N videos | GB | load s | GB/s | disk GB |")
        print("|---:|---:|---:|---:|---:|")
        for r, x in resident:
            print(
                f"| {r['videos']:,} | {x['load_gb']:.2f} | {x['load_s']:.1f} | "
                f"{x['load_gb'] / x['load_s']:.2f} | {x['load_disk_gb']:.2f} |"
            )
    print(
        "\nmemory (MiB) at the end of the iteration: the training process (peak = ru_maxrss) "
        "and the largest worker"
    )
    print(
        "| N videos | loader | main peak RSS | main RssAnon before -> after | main RssFile | "
        "main RssShmem | worker peak RSS | worker RssAnon | worker RssFile | "
        "worker RssShmem |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in loaders:
        for r in rows:
            x = r["loaders"][name]
            if "refused" in x:
                continue
            m, b, w = x["main"], x["main_before"], x["workers"]
            wm = {
                k: max((s.get(k, 0) for s in w), default=0)
                for k in ("VmHWM", "RssAnon", "RssFile", "RssShmem")
            }
            print(
                f"| {r['videos']:,} | {name} | {mib(x['main_maxrss_kib'])} | "
                f"{mib(b['RssAnon'])} -> {mib(m['RssAnon'])} | {mib(m['RssFile'])} | "
                f"{mib(m['RssShmem'])} | {mib(wm['VmHWM'])} | {mib(wm['RssAnon'])} | "
                f"{mib(wm['RssFile'])} | {mib(wm['RssShmem'])} |"
            )
    cold = [
        f"N={r['videos']:,}: pread {r['loaders']['pread']['vps']:,.0f} videos/s = "
        f"{r['loaders']['pread']['vps'] / r['loaders']['per-sample mmap']['vps']:.2f}x, disk / "
        f"clip bytes {r['loaders']['pread']['own_disk_gb'] / r['needed_gb']:.1f} (per-sample "
        f"{r['loaders']['per-sample mmap']['own_disk_gb'] / r['needed_gb']:.1f})"
        for r in rows
        if {"pread", "per-sample mmap"} <= set(r["loaders"]) and r["file_gb"] > 5
    ]
    peaks = {
        name: [r["loaders"][name]["main_maxrss_kib"] / 1024 for r in rows]
        for name in loaders
        if all("refused" not in r["loaders"][name] for r in rows)
    }
    flat = ", ".join(
        f"{k} {min(v):,.0f}-{max(v):,.0f}" for k, v in peaks.items() if k != "resident cpu"
    )
    print(
        "scale: cold cache vs the per-sample memmap loader: "
        + "; ".join(cold)
        + f"; training process peak RSS over N (MiB): {flat}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,20000,50000", help="comma-separated video counts")
    p.add_argument("--videos", type=int, default=3000, help="videos iterated per measurement")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loaders", default=",".join(LOADERS))
    p.add_argument("--workdir", default="/tmp/vltr-bench-scale")
    p.add_argument("--keep", action="store_true", help="keep the stores (else deleted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--loader", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(
            json.dumps(
                loader_child(Path(args.child), args.loader, args.videos, args.workers, args.seed)
            )
        )
        return

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"cpus: {os.cpu_count()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"workdir {workdir}, load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    t_start = time.perf_counter()
    for n in (int(s) for s in args.sizes.split(",")):
        path = workdir / f"scale-n{n}-t{FRAMES}-d{DIM}-f16.h5"
        try:
            if path.exists() and FeatureStore(path).num_videos == n:
                print(f"N={n}: reusing {path}")
            else:
                need = n * VIDEO_BYTES * 1.1
                free = shutil.disk_usage(workdir).free
                if need > free:
                    print(f"N={n}: skipped, needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free")
                    continue
                secs = build_store(path, n, args.seed)
                size = path.stat().st_size
                print(
                    f"N={n}: wrote {size / 1e9:.2f} GB in {secs:.1f}s "
                    f"({size / 1e9 / secs:.2f} GB/s, StoreWriter + fsync), "
                    f"{allocated_fraction(path):.0%} of it allocated on disk (not sparse)",
                    flush=True,
                )
            row = measure(path, n, args)
            rows.append(row)
            print(f"N={n}: {json.dumps(row)}", flush=True)
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s, load average {os.getloadavg()[0]:.2f}")
    report(rows, args)  # ends with the headline ratios: the last line


if __name__ == "__main__":
    main()
