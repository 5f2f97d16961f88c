"""Resident mode: a split's features loaded once into memory (``cpu``) or onto the GPU
(``cuda``), and clips gathered from there by one batched index.

A ``[n, T, D]`` tensor holds the split's videos in split order. A batch of ``B`` clips of ``t``
frames is one ``index_select`` of ``B * t`` rows of the ``[n * T, D]`` view, on the tensor's
device; nothing goes through DataLoader workers, the page cache or a host-to-device copy.

Loading reads runs of consecutive videos with large positional reads (whole-video reads
through the store's reader for chunked stores), checks every value is finite once (so batches
need no per-batch check), shows a progress bar, and drops the pages it read from the page
cache (the data lives in the tensor now). A split that does not fit is refused in one line that
says how many bytes it needs. Under DDP each rank loads the whole split (samplers draw any
video on any rank); ``docs/scale.md`` has the memory arithmetic.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vltr.data.readers import available_memory
from vltr.utils.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from vltr.data.store import FeatureStore

log = logging.getLogger(__name__)

RESIDENT_DEVICES = ("cpu", "cuda")
# keep room for the model, the optimiser and the rest of the process
FIT_SHARE = 0.9
LOAD_CHUNK_BYTES = 256 << 20


def check_resident(value: str | None) -> str | None:
    if value in (None, "none", "null", False):
        return None
    if value not in RESIDENT_DEVICES:
        raise ConfigError(f"dataset.resident must be cpu, cuda or null, got {value!r}")
    return str(value)


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def ensure_fits(needed: int, device: torch.device, *, what: str, copies: int = 1) -> None:
    """Raise a one-line :class:`ConfigError` when ``copies`` x ``needed`` bytes do not fit in
    the device's free memory (host memory for ``cpu``)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "dataset.resident=cuda needs a CUDA device (none is available "
                "here); use dataset.resident=cpu or null"
            )
        free, _ = torch.cuda.mem_get_info(device)
        where = f"free on {device}"
    else:
        free = available_memory()
        where = "available in host memory"
    total = needed * copies
    if total > FIT_SHARE * free:
        per = f" ({copies} processes x {gb(needed)})" if copies > 1 else ""
        raise ConfigError(
            f"dataset.resident={device.type}: {what} needs {gb(total)}{per} "
            f"({total:,} bytes), {gb(free)} {where}; use dataset.resident=null to stream it"
        )


class ResidentFeatures:
    """The features of ``indices`` (a split, in its order) held in one tensor on ``device``."""

    def __init__(
        self,
        store: FeatureStore,
        indices: np.ndarray,
        device: torch.device | str,
        *,
        name: str = "train",
        copies: int = 1,
        progress: bool = True,
    ) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.device = torch.device(device)
        self.name = name
        self.copies = copies
        self.progress = progress
        self.features: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["features"] = None  # never pickle the split; a new process loads its own
        return state

    @property
    def nbytes(self) -> int:
        s = self.store
        return len(self.indices) * s.frames * s.dim * s.dtype.itemsize

    @property
    def loaded(self) -> bool:
        return self.features is not None

    def load(self) -> ResidentFeatures:
        if self.features is not None:
            return self
        store = self.store
        ensure_fits(
            self.nbytes,
            self.device,
            what=f"the {self.name} split "
            f"({len(self.indices):,} videos x {store.frames} x {store.dim} {store.dtype})",
            copies=self.copies,
        )
        t0 = time.perf_counter()
        shape = (len(self.indices), store.frames, store.dim)
        dtype = torch.float16 if store.dtype == np.float16 else torch.float32
        on_gpu = self.device.type == "cuda"
        features = torch.empty(shape, dtype=dtype, device=self.device)
        per_chunk = max(1, LOAD_CHUNK_BYTES // (store.frames * store.dim * store.dtype.itemsize))
        staging = (
            [torch.empty((per_chunk, *shape[1:]), dtype=dtype, pin_memory=True) for _ in range(2)]
            if on_gpu
            else []
        )
        events: list[Any] = [None, None]
        bar = _Progress(self.nbytes, f"resident {self.name} -> {self.device}", self.progress)
        fd = _open_sequential(store)
        try:
            for k, start in enumerate(range(0, len(self.indices), per_chunk)):
                rows = self.indices[start : start + per_chunk]
                if on_gpu:
                    slot = k % 2
                    if events[slot] is not None:
                        events[slot].synchronize()  # its previous copy has left the buffer
                    host = staging[slot][: len(rows)]
                else:
                    host = features[start : start + len(rows)]
                _read_videos(store, fd, rows, host.numpy())
                _check_finite(store, host.numpy(), rows)
                if on_gpu:
                    features[start : start + len(rows)].copy_(host, non_blocking=True)
                    events[slot] = torch.cuda.Event()
                    events[slot].record()
                bar.update(host.numel() * host.element_size())
            if on_gpu:
                torch.cuda.synchronize(self.device)
        finally:
            bar.close()
            if fd is not None:
                os.close(fd)
        self.features = features
        secs = time.perf_counter() - t0
        log.info(
            "resident: %s split, %d videos, %s on %s, loaded in %.1fs (%.2f GB/s)",
            self.name,
            len(self.indices),
            gb(self.nbytes),
            self.device,
            secs,
            self.nbytes / 1e9 / max(secs, 1e-9),
        )
        return self

    def gather(
        self, positions: np.ndarray, frame_idx: np.ndarray | None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, t, D]`` clips of the videos at split ``positions``: frames ``frame_idx``
        (``[B, t]``) or all frames; one ``index_select`` on the tensor's device, into ``out``
        (contiguous, on that device) when given -- a reused buffer takes no page faults."""
        features = self.load().features
        assert features is not None
        n, frames, dim = features.shape
        pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        if frame_idx is None:
            rows = pos
            source = features.view(n, frames * dim)
            shape = (len(pos), frames, dim)
        else:
            rows = pos[:, None] * frames + torch.as_tensor(frame_idx, dtype=torch.int64)
            source = features.view(n * frames, dim)
            shape = (len(pos), frame_idx.shape[1], dim)
        rows = rows.reshape(-1).to(self.device, non_blocking=True)
        if out is None:
            return source.index_select(0, rows).view(shape)
        torch.index_select(source, 0, rows, out=out.view(len(rows), source.shape[1]))
        return out


class _Progress:
    """A byte progress bar on stderr (rich), or nothing when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
            )
            self._task = self._bar.add_task(desc, total=total)
            self._bar.start()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _open_sequential(store: FeatureStore) -> int | None:
    if not store.contiguous:
        return None
    fd = os.open(store.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return fd


def _read_videos(store: FeatureStore, fd: int | None, rows: np.ndarray, out: np.ndarray) -> None:
    """Videos ``rows`` into ``out`` (``[len(rows), T, D]``): one read per run of consecutive
    videos on a contiguous store, the store's reader otherwise."""
    if fd is None:
        store.reader.read_batch(out, rows)
        return
    video_bytes = store.frames * store.dim * store.dtype.itemsize
    offset = store._offset
    assert offset is not None
    flat = out.reshape(len(rows), -1).view(np.uint8)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for run in np.split(np.arange(len(rows)), breaks):
        first, count = int(run[0]), len(run)
        view = memoryview(flat[first : first + count].reshape(-1))
        position = offset + int(rows[first]) * video_bytes
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], position + done)
            if got <= 0:
                raise StoreError(
                    f"{store.path}: unexpected end of file at byte "
                    f"{position + done} (truncated store?)"
                )
            done += got
        if hasattr(os, "posix_fadvise"):  # the tensor holds the data now
            os.posix_fadvise(fd, position, len(view), os.POSIX_FADV_DONTNEED)


def _check_finite(store: FeatureStore, block: np.ndarray, rows: np.ndarray) -> None:
    from vltr.data.store import all_finite

    # a few videos at a time: the check's temporaries stay small next to the split
    step = max(1, (16 << 20) // max(block[0].nbytes, 1))
    if all(all_finite(block[k : k + step]) for k in range(0, len(block), step)):
        return
    finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
    bad = rows[~finite]
    raise StoreError(
        f"{store.path}: video index {int(bad[0])} has NaN/Inf features "
        f"({len(bad)} in this part of the split; run `vltr-data validate` on the "
        "store)"
    )
