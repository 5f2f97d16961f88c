"""Importers: public frame-feature releases -> one vltr feature store (``docs/importers.md``).

Every release is a folder of per-video arrays ``[T_i, D]`` (``{video_id}.npy``, or ``.pt`` for
the generic importer) plus list files with one video per line::

    video_id l1,l2,...          0-based class indices, comma-separated (multi-label)

Each video is resampled to ``T`` frames with ``np.linspace(0, T_i - 1, T).astype(np.int32)``,
VideoLT's published test-time rule (``T_i < T`` repeats frames, ``T_i > T`` skips frames,
``T_i == T`` is the identity), cast to the store's dtype and written in chunks through
:class:`~vltr.data.store.StoreWriter`, so:

* **memory is flat in the number of videos**: one chunk of output videos plus a bounded window
  of videos being read; only the lists (ids and labels) are held for the whole release;
* **the output is atomic**: a missing or malformed feature file raises a one-line
  :class:`~vltr.utils.errors.StoreError` naming the video and the path, and nothing is left at the
  output path;
* **reads run in parallel** on a thread pool (``workers``, default: all cores available to the
  process) with output order preserved. Threads, not processes: file reads and the frame
  gather release the GIL, and a process pool, which copies every video back through a pipe,
  was measured 2.5-4x slower (``docs/importers.md``). ``.npy`` files are memory-mapped, so only
  the pages of the sampled frames are read (1.4-4.8x faster than ``np.load`` on cold
  3,000-frame videos). The float32 -> float16 cast runs in the writing thread through torch
  (:func:`cast_into`).

Every missing feature file is reported before anything is read (one directory listing per
feature folder), so a bad release fails in seconds, not hours into an import.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
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

from vltr.data.store import StoreWriter, all_finite
from vltr.utils.errors import StoreError

log = logging.getLogger(__name__)

Warn = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")

SPLIT_NAMES = ("train", "val", "test")
_END: Any = object()
# np.load parses the .npy header with ast.literal_eval, and concurrent AST construction can
# raise "SystemError: AST constructor recursion depth mismatch" on CPython 3.11 (seen here,
# python/cpython#106905): header parsing is serialised, the (expensive) frame reads are not
_NPY_HEADER_LOCK = threading.Lock()


@dataclass(frozen=True)
class Video:
    """One video of a release: its id, labels and feature file."""

    vid: str
    labels: tuple[int, ...]
    path: str


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


def resample_indices(num_frames: int, frames: int) -> np.ndarray:
    """VideoLT's uniform rule: ``linspace(0, T_i - 1, T)`` truncated to int32."""
    return np.linspace(0, num_frames - 1, frames).astype(np.int32)


# ------------------------------------------------------------------------------------ list files
def _text_lines(path: Path) -> list[str]:
    """The lines of a text file; a file that is not UTF-8 text is a one-line error."""
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise StoreError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise StoreError(f"{path}: unreadable ({e.strerror})") from None


def read_label_list(path: str | os.PathLike[str]) -> list[tuple[str, list[int]]]:
    """``video_id l1,l2,...`` lines (blank lines skipped) as ``(id, labels)`` in file order.

    Repeated labels of a video are kept once (first occurrence); a line with only an id is a video
    without labels. A malformed line or a video listed twice is a :class:`StoreError` naming the
    file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such list file")
    rows: list[tuple[str, list[int]]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise StoreError(f"{path}:{lineno}: expected 'video_id l1,l2,...', got "
                             f"{line.strip()!r}")
        vid = parts[0]
        try:
            labels = [int(s) for s in parts[1].split(",")] if len(parts) == 2 else []
        except ValueError:
            raise StoreError(f"{path}:{lineno}: labels must be comma-separated integers, "
                             f"got {parts[1]!r}") from None
        if vid in seen:
            raise StoreError(f"{path}:{lineno}: video {vid} is listed twice "
                             f"(first on line {seen[vid]})")
        seen[vid] = lineno
        rows.append((vid, list(dict.fromkeys(labels))))
    return rows


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """One class name per line; the line number (from 0) is the class index."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such class-names file")
    names = [line.strip() for line in _text_lines(path)]
    while names and not names[-1]:
        names.pop()
    if not names or not all(names):
        raise StoreError(f"{path}: expected one non-empty class name per line")
    return names


def read_videolt_counts(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """VideoLT's ``count-labels-train.lst``: ``ClassName idx count`` lines (count like ``137.0``).

    Returns the class names by index and the counts; every index 0..C-1 must appear once.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such file (VideoLT's class list)")
    by_index: dict[int, tuple[str, int]] = {}
    for lineno, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3:
                raise ValueError
            name, idx, count = parts[0], int(parts[1]), int(float(parts[2]))
        except ValueError:
            raise StoreError(f"{path}:{lineno}: expected 'ClassName index count', got "
                             f"{line.strip()!r}") from None
        if idx in by_index:
            raise StoreError(f"{path}:{lineno}: class index {idx} appears twice")
        by_index[idx] = (name, count)
    c = len(by_index)
    if c == 0 or sorted(by_index) != list(range(c)):
        raise StoreError(f"{path}: class indices must be 0..{c - 1}, each once")
    return [by_index[i][0] for i in range(c)], np.array([by_index[i][1] for i in range(c)])


def _check_labels(rows: Sequence[tuple[str, list[int]]], num_classes: int, source: Path) -> None:
    for vid, labels in rows:
        bad = [c for c in labels if not 0 <= c < num_classes]
        if bad:
            raise StoreError(f"{source}: video {vid} has label {bad[0]} outside "
                             f"[0, {num_classes})")


def train_class_counts(rows: Sequence[tuple[str, list[int]]], num_classes: int) -> np.ndarray:
    """Videos per class (a multi-label video counts for each of its classes)."""
    flat = [c for _, labels in rows for c in labels]
    return np.bincount(np.asarray(flat, dtype=np.int64), minlength=num_classes)


# ---------------------------------------------------------------------------------- feature files
def locate_features(
    folder: str | os.PathLike[str],
    rows: Sequence[tuple[str, list[int]]],
    extensions: Sequence[str] = (".npy",),
) -> list[Video]:
    """The feature file of every listed video, found with one listing of ``folder``.

    The first extension present wins. A missing file is a one-line :class:`StoreError` naming
    the video and the path it was expected at (and how many others are missing).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreError(f"{folder}: no such feature folder")
    with os.scandir(folder) as it:
        present = {entry.name for entry in it}
    videos: list[Video] = []
    missing: list[str] = []
    for vid, labels in rows:
        name = next((vid + ext for ext in extensions if vid + ext in present), None)
        if name is None:
            missing.append(vid)
        else:
            videos.append(Video(vid, tuple(labels), str(folder / name)))
    if missing:
        more = f" ({len(missing)} listed videos have no feature file)" if len(missing) > 1 else ""
        alt = "".join(f" (or {ext})" for ext in extensions[1:])
        raise StoreError(f"video {missing[0]}: feature file "
                         f"{folder / (missing[0] + extensions[0])}{alt} not found{more}")
    return videos


def _open_array(video: Video) -> np.ndarray | Any:
    """The video's array: a read-only memmap for ``.npy``, a tensor's numpy view for ``.pt``."""
    try:
        if video.path.endswith(".pt"):
            import torch

            x = torch.load(video.path, map_location="cpu", weights_only=True)
            if not isinstance(x, torch.Tensor):
                raise StoreError(f"video {video.vid}: {video.path}: holds a "
                                 f"{type(x).__name__}, expected a [T, D] tensor")
            return x.detach().float().numpy() if x.dtype == torch.bfloat16 else x.numpy()
        with _NPY_HEADER_LOCK:  # header + mmap only; the frames are read outside the lock
            return np.load(video.path, mmap_mode="r", allow_pickle=False)
    except StoreError:
        raise
    except Exception as e:  # unreadable, truncated, not an array: all the user's file
        text = str(e).strip().splitlines()
        reason = text[0] if text else type(e).__name__
        raise StoreError(f"video {video.vid}: {video.path}: unreadable ({reason})") from None


def feature_dim(video: Video) -> int:
    """D of a video's ``[T, D]`` array (reads only the ``.npy`` header)."""
    return int(_checked_shape(video, _open_array(video), None)[1])


def _checked_shape(video: Video, x: Any, dim: int | None) -> tuple[int, int]:
    shape = tuple(x.shape)
    wanted = f"[T, {dim}]" if dim is not None else "[T, D]"
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1 or (dim is not None
                                                            and shape[1] != dim):
        raise StoreError(f"video {video.vid}: {video.path}: array of shape {list(shape)}, "
                         f"expected {wanted} with T >= 1 and D >= 1")
    if not np.issubdtype(x.dtype, np.floating):
        raise StoreError(f"video {video.vid}: {video.path}: dtype {x.dtype}, expected floats")
    return shape[0], shape[1]


def load_video(video: Video, frames: int, dim: int) -> np.ndarray:
    """``[frames, dim]`` in the file's float dtype: the video resampled by
    :func:`resample_indices`; NaN/Inf is an error naming the video."""
    x = _open_array(video)
    t, _ = _checked_shape(video, x, dim)
    try:
        # on a memmap the gather reads only the sampled frames' pages
        picked = np.asarray(x[resample_indices(t, frames)])
    except (OSError, ValueError) as e:  # e.g. a .npy shorter than its header says
        raise StoreError(f"video {video.vid}: {video.path}: unreadable ({e})") from None
    if not all_finite(picked):
        raise StoreError(f"video {video.vid}: {video.path}: NaN/Inf features")
    return picked


def cast_into(dst: np.ndarray, x: np.ndarray, video: Video) -> None:
    """Write ``x`` into ``dst`` (the store's dtype); float16 overflow is an error naming the
    video. float32 -> float16 goes through torch: numpy's cast has no F16C/AVX path and was
    measured ~20x slower (2 ms against 0.09 ms per 150 x 2048 video on one core, the largest CPU
    cost of an import); the two round identically (bitwise-equal on 4M values including
    subnormals and overflow). :func:`write_videos` runs it with one intra-op thread."""
    if dst.dtype == np.float16 and x.dtype == np.float32:
        import torch  # lazily: vltr-data's other commands start without it

        torch.from_numpy(dst).copy_(torch.from_numpy(x))
    else:
        with np.errstate(over="ignore"):
            np.copyto(dst, x, casting="unsafe")
    if not all_finite(dst):  # x is finite (load_video): the cast overflowed
        hint = "; use --dtype float32" if dst.dtype == np.float16 else ""
        raise StoreError(f"video {video.vid}: {video.path}: values beyond the {dst.dtype} range "
                         f"(max |x| = {float(np.abs(x).max()):.3g}{hint})")


# -------------------------------------------------------------------------------------- writing
def _ordered_map(
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
                rp.TextColumn("[bold]{task.description}"), rp.BarColumn(),
                rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[rate]}"),
                rp.TimeElapsedColumn(), rp.TimeRemainingColumn(),
                console=Console(stderr=True), transient=False)
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
        with StoreWriter(out, num_videos=len(videos), frames=frames, dim=dim,
                         class_names=class_names, dtype=dtype, backbone=backbone,
                         source=source, attrs=attrs) as writer, \
                _Progress(progress, description, len(videos)) as bar:
            buf = np.empty((min(chunk_videos, len(videos)), frames, dim), dtype=dtype)
            filled = written = 0

            def read(video: Video) -> np.ndarray:
                return load_video(video, frames, dim)

            results = _ordered_map(pool, read, videos, window=chunk_videos + 2 * workers)
            for video, x in zip(videos, results, strict=True):
                cast_into(buf[filled], x, video)  # in this thread: one cast at a time
                filled += 1
                if filled == len(buf) or written + filled == len(videos):
                    # every video was checked for NaN/Inf after the cast (cast_into)
                    writer.write_features(written, buf[:filled], finite=True)
                    written += filled
                    bar.advance(filled, written)
                    filled = 0
            writer.finish(labels=[v.labels for v in videos], video_ids=[v.vid for v in videos],
                          splits=splits)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(torch_threads)
    return ImportResult(path=Path(out), num_videos=len(videos), num_classes=len(class_names),
                        frames=frames, dim=dim,
                        split_sizes={k: len(v) for k, v in splits.items()},
                        seconds=time.perf_counter() - start)


def _concat_splits(
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
                where = (f" ({sources[seen[v.vid]]}, {sources[name]})"
                         if seen[v.vid] in sources and name in sources else "")
                raise StoreError(f"video {v.vid} is in both the {seen[v.vid]} and the {name} "
                                 f"lists{where}")
            seen[v.vid] = name
        splits[name] = np.arange(len(videos), len(videos) + len(part))
        videos.extend(part)
    return videos, splits


def _class_names(
    class_names_file: str | os.PathLike[str] | None,
    num_classes: int | None,
    rows: Iterable[tuple[str, list[int]]],
) -> list[str]:
    """Names from a file, else ``class{i:03d}`` for ``num_classes`` (or max label + 1)."""
    if class_names_file is not None:
        names = read_class_names(class_names_file)
        if num_classes is not None and len(names) != num_classes:
            raise StoreError(f"{class_names_file}: {len(names)} class names for "
                             f"{num_classes} classes")
        return names
    if num_classes is None:
        num_classes = 1 + max((c for _, labels in rows for c in labels), default=-1)
    return [f"class{i:03d}" for i in range(num_classes)]


def check_out(out: str | os.PathLike[str], overwrite: bool) -> None:
    """The output path of a command that writes a store: not a folder (``--force`` replaces a
    file, never a folder), not an existing file unless ``overwrite``."""
    if Path(out).is_dir():
        raise StoreError(f"{out}: is a directory; --out takes the store's file name (e.g. "
                         f"{Path(out) / 'features.h5'})")
    if Path(out).exists() and not overwrite:
        raise StoreError(f"{out}: already exists (pass --force to replace it)")


# ------------------------------------------------------------------------------------ releases
def import_videolt(
    features: str | os.PathLike[str],
    lists: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    frames: int = 150,
    overwrite: bool = False,
    warn: Warn = log.warning,
    **write_kw: Any,
) -> ImportResult:
    """The VideoLT release: ``features/{vid}.npy`` float32 ``[T_i, 2048]``; ``lists/`` holds
    ``train.lst``, ``validate.lst``, ``test.lst`` and ``count-labels-train.lst`` (class names).

    Splits: train / val = ``validate.lst`` / test. The counts in ``count-labels-train.lst`` are
    checked against ``train.lst`` (``warn`` on a mismatch).
    """
    check_out(out, overwrite)
    lists = Path(lists)
    names, counts = read_videolt_counts(lists / "count-labels-train.lst")
    parts = []
    for split, file in zip(SPLIT_NAMES, ("train.lst", "validate.lst", "test.lst"), strict=True):
        rows = read_label_list(lists / file)
        _check_labels(rows, len(names), lists / file)
        if split == "train":
            _warn_count_mismatch(counts, train_class_counts(rows, len(names)), names, lists, warn)
        parts.append((split, locate_features(features, rows)))
    videos, splits = _concat_splits(parts, {
        split: lists / file for split, file in zip(SPLIT_NAMES, ("train.lst", "validate.lst",
                                                                  "test.lst"), strict=True)})
    write_kw.setdefault("source", "videolt-release")
    return write_videos(out, videos, splits, names, frames=frames, description="VideoLT",
                        **write_kw)


def _warn_count_mismatch(
    stated: np.ndarray, actual: np.ndarray, names: list[str], lists: Path, warn: Warn
) -> None:
    bad = np.flatnonzero(stated != actual)
    if len(bad):
        c = int(bad[0])
        warn(f"{lists / 'count-labels-train.lst'}: {len(bad)} class count(s) differ from "
             f"train.lst, first {names[c]} (index {c}): file says {int(stated[c])}, train.lst "
             f"has {int(actual[c])}")


def import_minikinetics200(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    val_per_class: int = 10,
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int = 200,
    frames: int = 150,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """Imbalanced-MiniKinetics200 (MOVE): ALL train clips, the balanced val list as test.

    ``features`` holds ``train/`` and ``val/`` (the release's layout) or is one flat folder.
    Validation: the LAST ``val_per_class`` clips of each class in ``train_list`` order are held
    out, so the FIRST clips, which the imbalance recipe keeps, stay in train. The imbalance
    ratio is applied at load time (``dataset.imbalance_ratio``); the store records
    ``imbalance_n_max``, the largest class count of the full train list (MOVE's n_max), so the
    recipe's per-rank counts match MOVE's although the hold-out shortened every class.
    """
    check_out(out, overwrite)
    if val_per_class < 1:
        raise StoreError(f"{out}: --val-per-class must be >= 1, got {val_per_class}")
    train_rows = read_label_list(train_list)
    test_rows = read_label_list(test_list)
    names = _class_names(class_names, num_classes, train_rows)
    for rows, path in ((train_rows, train_list), (test_rows, test_list)):
        _check_labels(rows, len(names), Path(path))
        multi = next((vid for vid, labels in rows if len(labels) != 1), None)
        if multi is not None:
            raise StoreError(f"{path}: video {multi} must have exactly one label "
                             "(MiniKinetics is single-label)")
    primary = np.array([labels[0] for _, labels in train_rows], dtype=np.int64)
    counts = np.bincount(primary, minlength=len(names))
    short = np.flatnonzero((counts > 0) & (counts <= val_per_class))
    if len(short):
        c = int(short[0])
        raise StoreError(f"{train_list}: class {names[c]} (index {c}) has {int(counts[c])} "
                         f"clips; --val-per-class {val_per_class} needs more than that")
    # position of each clip among its class's clips, counted from the end of the list
    from_end = np.empty(len(primary), dtype=np.int64)
    seen = np.zeros(len(names), dtype=np.int64)
    for i in range(len(primary) - 1, -1, -1):
        from_end[i] = seen[primary[i]]
        seen[primary[i]] += 1
    held = from_end < val_per_class
    root = Path(features)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "val" if (root / "val").is_dir() else root
    videos, splits = _concat_splits([("train", locate_features(train_dir, train_rows)),
                                     ("test", locate_features(test_dir, test_rows))],
                                    {"train": train_list, "test": test_list})
    splits = {"train": np.flatnonzero(~held), "val": np.flatnonzero(held),
              "test": splits["test"]}
    write_kw.setdefault("source", "minikinetics200-release")
    attrs = {"imbalance_n_max": int(counts.max()), "val_per_class": int(val_per_class)}
    return write_videos(out, videos, splits, names, frames=frames, attrs=attrs,
                        description="MiniKinetics200", **write_kw)


CHARADES_VARIANTS = ("charadeslt", "charadesegolt")


def import_charades(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    val_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    dataset: str = "charadeslt",
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int = 157,
    frames: int = 200,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """CharadesLT / CharadesEgoLT (MEID): multi-label lists, variable-length videos -> 200."""
    if dataset not in CHARADES_VARIANTS:
        raise StoreError(f"{out}: dataset must be one of {', '.join(CHARADES_VARIANTS)}")
    write_kw.setdefault("source", f"{dataset}-release")
    return _import_lists(features, out, (train_list, val_list, test_list), class_names,
                         num_classes, frames, overwrite, (".npy",), dataset, **write_kw)


def import_generic(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_list: str | os.PathLike[str],
    val_list: str | os.PathLike[str],
    test_list: str | os.PathLike[str],
    class_names: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    frames: int = 150,
    overwrite: bool = False,
    **write_kw: Any,
) -> ImportResult:
    """Any folder of ``{vid}.npy`` / ``{vid}.pt`` arrays ``[T_i, D]`` and three list files.

    Class names come from ``class_names`` (one per line), else ``class000``... for
    ``num_classes`` classes, else for max label + 1.
    """
    write_kw.setdefault("source", "generic-import")
    return _import_lists(features, out, (train_list, val_list, test_list), class_names,
                         num_classes, frames, overwrite, (".npy", ".pt"), "import", **write_kw)


def _import_lists(
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    lists: Sequence[str | os.PathLike[str]],
    class_names: str | os.PathLike[str] | None,
    num_classes: int | None,
    frames: int,
    overwrite: bool,
    extensions: Sequence[str],
    description: str,
    **write_kw: Any,
) -> ImportResult:
    check_out(out, overwrite)
    all_rows = [read_label_list(path) for path in lists]
    names = _class_names(class_names, num_classes, itertools.chain.from_iterable(all_rows))
    parts = []
    for split, rows, path in zip(SPLIT_NAMES, all_rows, lists, strict=True):
        _check_labels(rows, len(names), Path(path))
        parts.append((split, locate_features(features, rows, extensions)))
    videos, splits = _concat_splits(parts, dict(zip(SPLIT_NAMES, lists, strict=True)))
    return write_videos(out, videos, splits, names, frames=frames, description=description,
                        **write_kw)
