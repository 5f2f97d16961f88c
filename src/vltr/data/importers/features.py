"""A release's feature files: finding each listed video's file, reading one video resampled to
the store's frames (VideoLT's linspace rule), and casting it to the store's dtype."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vltr.data.importers.lists import Rows
from vltr.data.store import all_finite
from vltr.utils.errors import StoreError

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


def resample_indices(num_frames: int, frames: int) -> np.ndarray:
    """VideoLT's uniform rule: ``linspace(0, T_i - 1, T)`` truncated to int32."""
    return np.linspace(0, num_frames - 1, frames).astype(np.int32)


def locate_features(
    folder: str | os.PathLike[str],
    rows: Rows,
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
        raise StoreError(
            f"video {missing[0]}: feature file "
            f"{folder / (missing[0] + extensions[0])}{alt} not found{more}"
        )
    return videos


def _open_array(video: Video) -> np.ndarray | Any:
    """The video's array: a read-only memmap for ``.npy``, a tensor's numpy view for ``.pt``."""
    try:
        if video.path.endswith(".pt"):
            import torch

            x = torch.load(video.path, map_location="cpu", weights_only=True)
            if not isinstance(x, torch.Tensor):
                raise StoreError(
                    f"video {video.vid}: {video.path}: holds a "
                    f"{type(x).__name__}, expected a [T, D] tensor"
                )
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
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1 or (dim is not None and shape[1] != dim):
        raise StoreError(
            f"video {video.vid}: {video.path}: array of shape {list(shape)}, "
            f"expected {wanted} with T >= 1 and D >= 1"
        )
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
    subnormals and overflow). :func:`~vltr.data.importers.writer.write_videos` runs it with one
    intra-op thread."""
    if dst.dtype == np.float16 and x.dtype == np.float32:
        import torch  # lazily: vltr-data's other commands start without it

        torch.from_numpy(dst).copy_(torch.from_numpy(x))
    else:
        with np.errstate(over="ignore"):
            np.copyto(dst, x, casting="unsafe")
    if not all_finite(dst):  # x is finite (load_video): the cast overflowed
        hint = "; use --dtype float32" if dst.dtype == np.float16 else ""
        raise StoreError(
            f"video {video.vid}: {video.path}: values beyond the {dst.dtype} range "
            f"(max |x| = {float(np.abs(x).max()):.3g}{hint})"
        )
