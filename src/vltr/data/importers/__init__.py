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
  (:func:`~vltr.data.importers.features.cast_into`).

Every missing feature file is reported before anything is read (one directory listing per
feature folder), so a bad release fails in seconds, not hours into an import.

Modules: :mod:`.lists` (list files), :mod:`.features` (feature files, resampling),
:mod:`.writer` (the threaded chunked write) and one per release (:mod:`.videolt`,
:mod:`.minikinetics`, :mod:`.charades`, :mod:`.generic`), each with its import function and its
:class:`Release`: the ``vltr-data import <release>`` subcommand, listed in :data:`RELEASES`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vltr.data.importers.features import (
    Video,
    cast_into,
    feature_dim,
    load_video,
    locate_features,
    resample_indices,
)
from vltr.data.importers.lists import (
    check_labels,
    lists_from,
    read_class_names,
    read_label_list,
    read_videolt_counts,
    train_class_counts,
)
from vltr.data.importers.writer import (
    SPLIT_NAMES,
    ImportResult,
    check_out,
    concat_splits,
    default_workers,
    resolve_class_names,
    write_videos,
)

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """A feature release that ``vltr-data import <name>`` converts into a store.

    ``add_arguments`` declares the release's own flags (the CLI adds the shared ones: --out,
    --dtype, --backbone, --workers, --chunk-videos, --no-progress, --force); ``run`` imports
    it to ``out`` with the shared write options ``write_kw`` (frames, dtype, backbone, workers,
    chunk_videos, progress, overwrite). ``dataset`` is the ``dataset=`` config that trains on
    the store (a function of the parsed flags where a flag chooses it), or None when no config
    does: then ``--out`` is required.
    """

    name: str
    help: str
    description: Sequence[str]
    examples: Sequence[str]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Path, dict[str, Any], Warn], ImportResult]
    dataset: str | Callable[[argparse.Namespace], str] | None = None

    @property
    def out_required(self) -> bool:
        return self.dataset is None

    def training_dataset(self, args: argparse.Namespace) -> str | None:
        """The ``dataset=`` config that reads this import's store, if any."""
        return self.dataset(args) if callable(self.dataset) else self.dataset


# each release module builds its Release from the class above, so they are imported after it
from vltr.data.importers import charades, generic, minikinetics, videolt  # noqa: E402
from vltr.data.importers.charades import CHARADES_VARIANTS, import_charades  # noqa: E402
from vltr.data.importers.generic import import_generic  # noqa: E402
from vltr.data.importers.minikinetics import import_minikinetics200  # noqa: E402
from vltr.data.importers.videolt import import_videolt  # noqa: E402

# in the order ``vltr-data import --help`` lists them
RELEASES: dict[str, Release] = {
    r.name: r for r in (videolt.RELEASE, minikinetics.RELEASE, charades.RELEASE, generic.RELEASE)
}

__all__ = [
    "CHARADES_VARIANTS",
    "RELEASES",
    "SPLIT_NAMES",
    "ImportResult",
    "Release",
    "Video",
    "Warn",
    "cast_into",
    "check_labels",
    "check_out",
    "concat_splits",
    "default_workers",
    "feature_dim",
    "import_charades",
    "import_generic",
    "import_minikinetics200",
    "import_videolt",
    "lists_from",
    "load_video",
    "locate_features",
    "read_class_names",
    "read_label_list",
    "read_videolt_counts",
    "resample_indices",
    "resolve_class_names",
    "train_class_counts",
    "write_videos",
]
