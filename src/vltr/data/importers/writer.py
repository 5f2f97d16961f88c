"""Writing a release's videos as one store: the threaded ordered read-ahead, the progress
display, the chunked atomic write, and what every release shares (the splits in store order,
class names, the output path's checks)."""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich import progress as rp
from rich.console import Console

from vltr.data.importers.features import Video, cast_into, feature_dim, load_video
from vltr.data.importers.lists import read_class_names
from vltr.data.store import StoreWriter
from vltr.utils.errors import StoreError

T = TypeVar("T")
R = TypeVar("R")

SPLIT_NAMES = ("train", "val", "test")
_END: Any = object()


@dataclass(frozen=True)
class ImportResult:
    path: Path
    num_videos: int
    num_classes: int
    frames: int
    dim: int
    split_sizes: dict[str, int]
    seconds: float

    @property
    def videos_per_second(self) -> float:
        return self.num_videos / max(self.seconds, 1e-9)


def default_workers() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``map`` in input order with at most ``window`` items in flight (``Executor.map`` submits
    everything at once, which holds every finished video in memory when writing is slower)."""
    it = iter(items)
    pending: deque[Future[R]] = deque(pool.submit(fn, x) for x in itertools.islice(it, window))
    while pending:
        result = pending.popleft().result()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))  # keep the window full while we write
        yield result


class _Progress:
    """Import progress on stderr: a rich bar (videos, videos/s, ETA) on a terminal, else a
    line every 5 % (a log file gets them as they happen); a no-op when disabled."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        from vltr.utils.progress import PercentLines, is_interactive

        self._bar = None
        self._lines = None
        if enabled and is_interactive(stderr=True):
            self._bar = rp.Progress(
                rp.TextColumn("[bold]{task.description}"),
                rp.BarColumn(),
                rp.MofNCompleteColumn(),
                rp.TextColumn("{task.fields[rate]}"),
                rp.TimeElapsedColumn(),
                rp.TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=total, rate="")
            self._start = time.perf_counter()
        elif enabled:
            self._lines = PercentLines(description, total, unit="videos", every=5.0)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int, done: int) -> None:
        if self._bar is not None:
            rate = done / max(time.perf_counter() - self._start, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f} videos/s")
        elif self._lines is not None:
            self._lines.update(done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def write_videos(
    out: str | os.PathLike[str],
    videos: Sequence[Video],
    splits: dict[str, np.ndarray],
    class_names: Sequence[str],
    *,
    frames: int,
    dtype: str = "float16",
    backbone: str = "unknown",
    source: str = "unknown",
    attrs: dict[str, Any] | None = None,
    workers: int | None = None,
    chunk_videos: int = 64,
    progress: bool = False,
    description: str = "importing",
) -> ImportResult:
    """Resample and write ``videos`` (store order) as a store at ``out``, atomically.

    ``splits`` are indices into ``videos``. Memory: one ``[chunk_videos, frames, D]`` buffer plus
    ``chunk_videos + 2 * workers`` videos read ahead (so the readers keep going while a chunk
    is written).
    """
    if frames < 1:
        raise StoreError(f"{out}: --frames must be >= 1, got {frames}")
    if not videos:
        raise StoreError(f"{out}: the lists name no videos")
    workers = max(1, int(workers or default_workers()))
    chunk_videos = max(1, int(chunk_videos))
    import torch  # for the float16 cast (cast_into); imported here, outside the timing

    dim = feature_dim(videos[0])
    start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vltr-import")
    # the per-video cast is too small for torch's intra-op pool, whose threads would only
    # compete with the reader threads (measured 0.5-1 ms per video with 2 threads, 0.09 with 1)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with (
            StoreWriter(
                out,
                num_videos=len(videos),
                frames=frames,
                dim=dim,
                class_names=class_names,
                dtype=dtype,
                backbone=backbone,
                source=source,
                attrs=attrs,
            ) as writer,
            _Progress(progress, description, len(videos)) as bar,
        ):
            buf = np.empty((min(chunk_videos, len(videos)), frames, dim), dtype=dtype)
            filled = written = 0

            def read(video: Video) -> np.ndarray:
                return load_video(video, frames, dim)

            results = ordered_map(pool, read, videos, window=chunk_videos + 2 * workers)
            for video, x in zip(videos, results, strict=True):
                cast_into(buf[filled], x, video)  # in this thread: one cast at a time
                filled += 1
                if filled == len(buf) or written + filled == len(videos):
                    # every video was checked for NaN/Inf after the cast (cast_into)
                    writer.write_features(written, buf[:filled], finite=True)
                    written += filled
                    bar.advance(filled, written)
                    filled = 0
            writer.finish(
                labels=[v.labels for v in videos],
                video_ids=[v.vid for v in videos],
                splits=splits,
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(torch_threads)
    return ImportResult(
        path=Path(out),
        num_videos=len(videos),
        num_classes=len(class_names),
        frames=frames,
        dim=dim,
        split_sizes={k: len(v) for k, v in splits.items()},
        seconds=time.perf_counter() - start,
    )


def concat_splits(
    parts: Sequence[tuple[str, list[Video]]],
    sources: dict[str, str | os.PathLike[str]] | None = None,
) -> tuple[list[Video], dict[str, np.ndarray]]:
    """The videos of all splits in store order and each split's indices; ``sources`` (list file
    by split) are named when a video is in two lists."""
    videos: list[Video] = []
    splits: dict[str, np.ndarray] = {}
    seen: dict[str, str] = {}
    sources = sources or {}
    for name, part in parts:
        for v in part:
            if v.vid in seen:
                where = (
                    f" ({sources[seen[v.vid]]}, {sources[name]})"
                    if seen[v.vid] in sources and name in sources
                    else ""
                )
                raise StoreError(
                    f"video {v.vid} is in both the {seen[v.vid]} and the {name} lists{where}"
                )
            seen[v.vid] = name
        splits[name] = np.arange(len(videos), len(videos) + len(part))
        videos.extend(part)
    return videos, splits


def resolve_class_names(
    class_names_file: str | os.PathLike[str] | None,
    num_classes: int | None,
    rows: Iterable[tuple[str, list[int]]],
) -> list[str]:
    """Names from a file, else ``class{i:03d}`` for ``num_classes`` (or max label + 1)."""
    if class_names_file is not None:
        names = read_class_names(class_names_file)
        if num_classes is not None and len(names) != num_classes:
            raise StoreError(
                f"{class_names_file}: {len(names)} class names for {num_classes} classes"
            )
        return names
    if num_classes is None:
        num_classes = 1 + max((c for _, labels in rows for c in labels), default=-1)
    return [f"class{i:03d}" for i in range(num_classes)]


def check_out(out: str | os.PathLike[str], overwrite: bool) -> None:
    """The output path of a command that writes a store: not a folder (``--force`` replaces a
    file, never a folder), not an existing file unless ``overwrite``."""
    if Path(out).is_dir():
        raise StoreError(
            f"{out}: is a directory; --out takes the store's file name (e.g. "
            f"{Path(out) / 'features.h5'})"
        )
    if Path(out).exists() and not overwrite:
        raise StoreError(f"{out}: already exists (pass --force to replace it)")
