"""The list files of a release: ``video_id l1,l2,...`` label lists, class-name files, VideoLT's
class-count file, the checks on their labels, and where a release's lists are found
(``--lists DIR`` or ``--X-list FILE``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vltr.utils.errors import StoreError, VltrError

Rows = Sequence[tuple[str, list[int]]]


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
            raise StoreError(
                f"{path}:{lineno}: expected 'video_id l1,l2,...', got {line.strip()!r}"
            )
        vid = parts[0]
        try:
            labels = [int(s) for s in parts[1].split(",")] if len(parts) == 2 else []
        except ValueError:
            raise StoreError(
                f"{path}:{lineno}: labels must be comma-separated integers, got {parts[1]!r}"
            ) from None
        if vid in seen:
            raise StoreError(
                f"{path}:{lineno}: video {vid} is listed twice (first on line {seen[vid]})"
            )
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
            raise StoreError(
                f"{path}:{lineno}: expected 'ClassName index count', got {line.strip()!r}"
            ) from None
        if idx in by_index:
            raise StoreError(f"{path}:{lineno}: class index {idx} appears twice")
        by_index[idx] = (name, count)
    c = len(by_index)
    if c == 0 or sorted(by_index) != list(range(c)):
        raise StoreError(f"{path}: class indices must be 0..{c - 1}, each once")
    return [by_index[i][0] for i in range(c)], np.array([by_index[i][1] for i in range(c)])


def check_labels(rows: Rows, num_classes: int, source: Path) -> None:
    """Every label of ``rows`` (read from ``source``) is a class index in ``[0, num_classes)``."""
    for vid, labels in rows:
        bad = [c for c in labels if not 0 <= c < num_classes]
        if bad:
            raise StoreError(f"{source}: video {vid} has label {bad[0]} outside [0, {num_classes})")


def train_class_counts(rows: Rows, num_classes: int) -> np.ndarray:
    """Videos per class (a multi-label video counts for each of its classes)."""
    flat = [c for _, labels in rows for c in labels]
    return np.bincount(np.asarray(flat, dtype=np.int64), minlength=num_classes)


def lists_from(
    folder: str | os.PathLike[str] | None,
    candidates: Mapping[str, Sequence[str]],
    given: Mapping[str, str | os.PathLike[str] | None],
) -> dict[str, Path]:
    """The list file of each split in ``candidates`` (split -> file names to look for).

    A file given for the split (``--<split>-list FILE``) wins; otherwise the first of its
    candidate names present in ``folder`` (``--lists DIR``). Neither is a one-line error.
    """
    out: dict[str, Path] = {}
    for key, names in candidates.items():
        explicit = given.get(key)
        if explicit is not None:
            out[key] = Path(explicit)
            continue
        if folder is None:
            raise VltrError(f"give --lists DIR or --{key}-list FILE")
        found = [Path(folder) / name for name in names if (Path(folder) / name).is_file()]
        if not found:
            raise VltrError(f"{folder}: no {' or '.join(names)} (or give --{key}-list FILE)")
        out[key] = found[0]
    return out
