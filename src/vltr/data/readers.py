"""Frame readers: how a store's features get from the file into a batch.

``dataset.read_mode`` chooses one for a contiguous, uncompressed store:

* ``mmap``: a numpy memmap of ``/features`` and a gather of the sampled frames. Fastest when
  the file is in the page cache; on a cold cache every page fault also reads ahead up to the
  device's ``read_ahead_kb`` (8 MiB here), i.e. many times the bytes a clip needs, and every
  page a process touches stays mapped in it (its RSS grows with the videos it has read).
* ``pread``: one positional read per video of the span that covers the sampled frames (the
  whole video for evaluation) into a buffer the reader reuses, then the gather; read-ahead is
  switched off on the file (``POSIX_FADV_RANDOM``), nothing is mapped, so RSS stays flat.
  Reads the disk once per video on a cold cache.
* ``auto``: ``mmap`` when the features fit in the memory that is available for the page cache,
  else ``pread`` (:func:`choose_read_mode`; ``docs/scale.md`` has the measurements behind it).

Chunked or compressed stores are read through h5py whatever the mode: one whole-video read,
then a numpy gather (h5py fancy indexing is ~75x slower and is never used).

Readers are picklable and open the file lazily in the process that reads (a DataLoader worker
reopens it after a fork or spawn). :meth:`FrameReader.read_batch` fills a caller's
``[B, t, D]`` array in place, so a batch is written once, straight where it is sent from. The
``pread`` reader splits a batch over ``threads`` threads: the reads release the GIL, so several
disk requests are in flight instead of one on a cold cache (measured: 1 -> 8 threads, 2.7x the
videos/s). A warm memmap gather is bound by the CPU, where threads measured only overhead, so
the memmap reader reads on the calling thread. Threads live for one batch (none is alive when
a DataLoader forks).

Longer than most modules: the three frame readers (memmap gather, positional reads, h5py) and
the rule that picks one share one interface and one set of checks; the bench compares them as a
unit.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vltr.utils.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

READ_MODES = ("auto", "mmap", "pread")
# the page cache must hold the features with room to spare for everything else the node runs
PAGE_CACHE_SHARE = 0.5


class FrameReader:
    """Reads frames of videos ``[N, T, D]`` from one store file."""

    mode = "abstract"

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.threads = max(1, int(threads))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update({k: None for k in self._handles})
        return state

    _handles: tuple[str, ...] = ()

    def read(self, i: int, frame_idx: np.ndarray | None = None) -> np.ndarray:
        """Frames of video ``i`` (all, or those at ``frame_idx``, in that order)."""
        i = self._check_video(i)
        frames, dim = self.shape[1:]
        if frame_idx is not None:
            frame_idx = np.asarray(frame_idx)
            if frame_idx.ndim != 1:
                raise IndexError(f"frame indices must be 1-d, got shape {frame_idx.shape}")
            if len(frame_idx) and (frame_idx.min() < -frames or frame_idx.max() >= frames):
                raise IndexError(f"frame index out of range for {frames} frames")
            frame_idx = np.where(frame_idx < 0, frame_idx + frames, frame_idx)
        n = frames if frame_idx is None else len(frame_idx)
        out = np.empty((n, dim), dtype=self.dtype)
        self.read_into(out, i, frame_idx)
        return out

    def read_batch(
        self, out: np.ndarray, videos: np.ndarray, frame_idx: np.ndarray | None = None
    ) -> None:
        """Fill ``out[b]`` with video ``videos[b]``: all frames (``frame_idx`` None,
        ``out`` is ``[B, T, D]``) or the frames ``frame_idx[b]`` (``[B, t]``, in range)."""
        videos = np.asarray(videos, dtype=np.int64)
        if len(videos) and (videos.min() < 0 or videos.max() >= self.shape[0]):
            raise IndexError(f"video index out of range for {self.shape[0]} videos")
        if (
            frame_idx is not None
            and frame_idx.size
            and (frame_idx.min() < 0 or frame_idx.max() >= self.shape[1])
        ):
            raise IndexError(f"frame index out of range for {self.shape[1]} frames")
        # in file order: neighbouring reads help the disk; the result does not depend on it
        order = np.argsort(videos, kind="stable")
        threads = min(self.threads, len(order) // 8)  # a few videos per thread at least
        if threads <= 1:
            self._read_rows(out, videos, frame_idx, order)
            return
        self._open()  # before the threads: they share the handle
        errors: list[BaseException] = []

        def work(rows: np.ndarray) -> None:
            try:
                self._read_rows(out, videos, frame_idx, rows)
            except BaseException as e:  # re-raised in the calling thread
                errors.append(e)

        parts = np.array_split(order, threads)
        pool = [threading.Thread(target=work, args=(rows,), daemon=True) for rows in parts[1:]]
        for t in pool:
            t.start()
        work(parts[0])
        for t in pool:
            t.join()
        if errors:
            raise errors[0]

    def _read_rows(
        self, out: np.ndarray, videos: np.ndarray, frame_idx: np.ndarray | None, rows: np.ndarray
    ) -> None:
        for b in rows:
            self.read_into(out[b], int(videos[b]), None if frame_idx is None else frame_idx[b])

    def _open(self) -> None:
        """Open the file in this process (readers open lazily on first read)."""

    def read_into(self, out: np.ndarray, i: int, frame_idx: np.ndarray | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for key in self._handles:
            setattr(self, key, None)

    def _check_video(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.shape[0]
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"video index {i} out of range for {self.shape[0]} videos")
        return i


class MmapReader(FrameReader):
    """``np.memmap`` of the contiguous ``/features`` block at ``offset``; gathers frames."""

    mode = "mmap"
    _handles = ("_mm",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        offset: int,
        threads: int = 1,
    ) -> None:
        # CPU-bound when warm: threads measured only overhead (module docstring)
        super().__init__(path, shape, dtype, threads=1)
        self.offset = int(offset)
        self._mm: np.memmap | None = None

    def _open(self) -> None:
        if self._mm is None:
            self._mm = np.memmap(
                self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape
            )

    def read_into(self, out: np.ndarray, i: int, frame_idx: np.ndarray | None) -> None:
        if self._mm is None:
            self._open()
        video = self._mm[i]  # type: ignore[index]
        if frame_idx is None:
            out[...] = video
        else:  # indices are in range (checked by the callers): no bounds-checking buffer
            np.take(video, frame_idx, axis=0, out=out, mode="clip")


class PreadReader(FrameReader):
    """One ``preadv`` per video of the span covering the sampled frames, read-ahead off.

    The span lands in a buffer the reader keeps (one per thread), the gather copies the frames
    out of it; a whole-video read goes straight into the destination. The file descriptor is
    opened per process (a forked worker opens its own) with ``POSIX_FADV_RANDOM``, so the
    kernel reads what is asked and no more; nothing is mapped into the process.
    """

    mode = "pread"
    _handles = ("_fd", "_pid", "_local")

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        offset: int,
        threads: int = 1,
    ) -> None:
        super().__init__(path, shape, dtype, threads)
        self.offset = int(offset)
        frames, dim = self.shape[1:]
        self.frame_bytes = dim * self.dtype.itemsize
        self.video_bytes = frames * self.frame_bytes
        self._fd: int | None = None
        self._pid: int | None = None
        self._local: threading.local | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _open(self) -> None:
        self._file()

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    if hasattr(os, "posix_fadvise"):
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                    # a forked child inherits the parent's descriptor; it is left open for the
                    # parent, and this process reads through its own
                    self._fd, self._pid, self._local = fd, os.getpid(), threading.local()
        return self._fd  # type: ignore[return-value]

    def _buffer(self) -> np.ndarray:
        local = self._local
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = np.empty(self.shape[1:], dtype=self.dtype)
            local.buf = buf  # type: ignore[union-attr]
        return buf

    def _pread_into(self, fd: int, dest: np.ndarray, position: int) -> None:
        view = memoryview(dest.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], position + done)
            if n <= 0:
                raise StoreError(
                    f"{self.path}: unexpected end of file at byte {position + done} "
                    "(truncated store?)"
                )
            done += n

    def read_into(self, out: np.ndarray, i: int, frame_idx: np.ndarray | None) -> None:
        fd = self._file()
        start = self.offset + i * self.video_bytes
        if frame_idx is None:
            if out.flags.c_contiguous:
                self._pread_into(fd, out, start)
                return
            buf = self._buffer()
            self._pread_into(fd, buf, start)
            out[...] = buf
            return
        if len(frame_idx) == 0:
            return
        lo, hi = int(frame_idx.min()), int(frame_idx.max())
        span = self._buffer()[: hi - lo + 1]
        self._pread_into(fd, span, start + lo * self.frame_bytes)
        np.take(span, frame_idx - lo, axis=0, out=out, mode="clip")

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        super().close()


class H5Reader(FrameReader):
    """Chunked or compressed stores: one whole-video h5py read, then a numpy gather."""

    mode = "h5"
    _handles = ("_h5",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        threads: int = 1,
    ) -> None:
        super().__init__(path, shape, dtype, threads=1)  # h5py serialises calls: no threads
        self._h5: h5py.File | None = None

    def read_into(self, out: np.ndarray, i: int, frame_idx: np.ndarray | None) -> None:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        video = self._h5["features"][i]  # never h5py fancy indexing
        if frame_idx is None:
            out[...] = video
        else:
            np.take(video, frame_idx, axis=0, out=out, mode="clip")

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        super().close()


# ------------------------------------------------------------------------------ choosing a mode
def available_memory() -> int:
    """Bytes this process could use for data without swapping: ``MemAvailable`` (free memory
    plus reclaimable page cache), capped by the cgroup's memory limit when there is one."""
    avail = _meminfo("MemAvailable")
    limit = _cgroup_memory_left()
    return min(avail, limit) if limit is not None else avail


def _meminfo(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _cgroup_memory_left() -> int | None:
    # cgroup v2: memory.max minus what the group uses besides reclaimable file pages
    base = Path("/sys/fs/cgroup")
    try:
        raw = (base / "memory.max").read_text().strip()
        if raw == "max":
            return None
        stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
        used = int((base / "memory.current").read_text()) - int(stat.get("file", 0))
        return max(int(raw) - used, 0)
    except (OSError, ValueError):
        return None


def choose_read_mode(features_bytes: int, available_bytes: int) -> str:
    """``mmap`` when the features fit in :data:`PAGE_CACHE_SHARE` of the available memory
    (after the first epoch reads come from the page cache, where a memmap gather is fastest),
    else ``pread`` (reads come from the disk: one read per video, no read-around)."""
    return "mmap" if features_bytes <= PAGE_CACHE_SHARE * available_bytes else "pread"


def check_read_mode(mode: str) -> str:
    if mode not in READ_MODES:
        raise ConfigError(f"dataset.read_mode must be one of {', '.join(READ_MODES)}, got {mode!r}")
    return mode


def resolve_read_mode(
    mode: str, features_bytes: int, *, contiguous: bool, source: str = "store"
) -> str:
    """The read mode a store is read with (``h5`` for chunked/compressed stores)."""
    check_read_mode(mode)
    if not contiguous:
        return "h5"
    if mode != "auto":
        return mode
    avail = available_memory()
    chosen = choose_read_mode(features_bytes, avail)
    log.info(
        "%s: read_mode=auto chose %s (features %.1f GB, available memory %.1f GB)",
        source,
        chosen,
        features_bytes / 1e9,
        avail / 1e9,
    )
    return chosen


def make_reader(
    mode: str,
    path: str | os.PathLike[str],
    shape: tuple[int, int, int],
    dtype: np.dtype,
    offset: int | None,
    threads: int = 1,
) -> FrameReader:
    """A reader for a resolved mode (``mmap``, ``pread`` or ``h5``)."""
    if mode == "h5" or offset is None:
        return H5Reader(path, shape, dtype)
    if mode == "mmap":
        return MmapReader(path, shape, dtype, offset, threads)
    if mode == "pread":
        return PreadReader(path, shape, dtype, offset, threads)
    raise ConfigError(f"unknown read mode {mode!r}")
