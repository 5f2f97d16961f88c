"""Reusable batch buffers: a batch is written once, in place, and nothing is copied or paged in
to hand it to the training process.

Measured here (``bench/stream.py``, ``docs/scale.md``): filling a fresh 15.7 MB batch tensor
costs the gather *plus* a page fault per 4 KiB page of new memory, and a fresh shared-memory
tensor in a DataLoader worker costs about as much again (shmem pages are allocated, zeroed and
charged one fault at a time) before the training process maps them once more. A pool of
buffers that are allocated once and reused pays those faults once per buffer instead of once
per batch.

:class:`BatchBufferPool` holds ``slots`` pairs of ``[B, t, D]`` feature and ``[B, C]`` target
tensors. It is created in the training process before the DataLoader forks its workers, so
every worker maps the same shared memory:

* a worker claims a free slot (under a lock), fills it, and sends only the slot's number: the
  batch it returns pickles as a handle (``PooledVideoBatch``) and becomes, in the training
  process, a :class:`~vltr.data.datamodule.VideoBatch` of views into the same memory;
* the training process marks a slot free again once nothing references it any more (torch's
  count of the tensors that use the slot's storage is back to the pool's own): a batch kept
  by the caller, or any view of it, keeps its slot out of use. A worker that finds no free
  slot allocates a fresh shared tensor, as torch's DataLoader does -- slower, never wrong;
* in-process (``num_workers=0``) the same rule picks a slot nobody references.

Pools do not survive pickling (spawned processes, DDP spawn): the copy has no slots and
allocates per batch until its DataModule builds a pool of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from vltr.data.datamodule import VideoBatch

FREE = 0
HELD = -1  # received by the training process; free once nothing references it
# state > 0: the pid of the worker that claimed the slot (filling it, or its batch in flight)

_POOLS: weakref.WeakValueDictionary[str, BatchBufferPool] = weakref.WeakValueDictionary()
_use_count_fn = getattr(torch._C, "_storage_Use_Count", None)


def _use_count(t: torch.Tensor) -> int:
    # tensors (and numpy arrays made from them) referencing the storage, plus this call's own
    return int(_use_count_fn(t.untyped_storage()._cdata)) if _use_count_fn else -1


def shared_empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor in shared memory (no page is touched yet)."""
    shape = tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(max(nbytes, 1))
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BatchBufferPool:
    """``slots`` reusable (features ``[B, t, D]``, targets ``[B, C]``) buffers; ``shared``:
    in shared memory, for DataLoader worker processes forked after the pool is made."""

    def __init__(
        self,
        slots: int,
        features_shape: Sequence[int],
        features_dtype: torch.dtype,
        targets_shape: Sequence[int],
        *,
        shared: bool,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.shared = shared
        self.features_shape = tuple(int(s) for s in features_shape)
        self.targets_shape = tuple(int(s) for s in targets_shape)
        self.features_dtype = features_dtype
        make = shared_empty if shared else (lambda s, d: torch.empty(s, dtype=d))
        self.features = [make(self.features_shape, features_dtype) for _ in range(slots)]
        self.targets = [make(self.targets_shape, torch.float32) for _ in range(slots)]
        self.state = make((slots,), torch.int64).numpy()
        self.state[:] = FREE
        self.lock = multiprocessing.get_context("fork").Lock() if shared else None
        self.baseline = _use_count(self.features[0]) if slots else 0
        self.enabled = _use_count_fn is not None and slots > 0
        _POOLS[self.id] = self

    def __getstate__(self) -> dict[str, Any]:
        # a pickled copy (spawn) cannot share these buffers: it allocates per batch instead
        return {
            "id": self.id,
            "shared": self.shared,
            "features_shape": self.features_shape,
            "targets_shape": self.targets_shape,
            "features_dtype": self.features_dtype,
            "features": [],
            "targets": [],
            "state": np.zeros(0, np.int64),
            "lock": None,
            "baseline": 0,
            "enabled": False,
        }

    def __len__(self) -> int:
        return len(self.features)

    def fits(self, features_shape: Sequence[int], targets_shape: Sequence[int]) -> bool:
        f, t = tuple(features_shape), tuple(targets_shape)
        return (
            self.enabled
            and f[0] <= self.features_shape[0]
            and f[1:] == self.features_shape[1:]
            and t[0] <= self.targets_shape[0]
            and t[1:] == self.targets_shape[1:]
        )

    def _unreferenced(self, k: int) -> bool:
        return (
            _use_count(self.features[k]) == self.baseline
            and _use_count(self.targets[k]) == self.baseline
        )

    def claim(self, in_worker: bool) -> int | None:
        """A free slot for this process to fill, or ``None`` (allocate instead)."""
        if not self.enabled:
            return None
        if not in_worker:
            for k in range(len(self)):
                if self.state[k] == FREE and self._unreferenced(k):
                    return k
            return None
        if not self.shared or self.lock is None:
            return None
        pid = os.getpid()
        with self.lock:
            for k in range(len(self)):
                s = int(self.state[k])
                # a slot claimed by a worker that has exited is never received: take it back
                if s == FREE or (s > 0 and s != pid and not _alive(s)):
                    self.state[k] = pid
                    return k
        return None

    def received(self, k: int) -> None:
        """Training process: slot ``k``'s batch arrived; free the slots nobody holds now."""
        self.state[k] = HELD
        for j in np.flatnonzero(self.state == HELD):
            if j != k and self._unreferenced(int(j)):
                self.state[j] = FREE

    def views(self, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[k][:n], self.targets[k][:n]


def rebuild_pooled(
    pool_id: str,
    slot: int,
    n: int,
    index: np.ndarray,
    mask: np.ndarray | None,
    next_frames: bool = False,
) -> VideoBatch:
    from vltr.data.datamodule import VideoBatch

    pool = _POOLS.get(pool_id)
    if pool is None or not pool.enabled:
        raise RuntimeError(
            "a pooled batch reached a process without its buffer pool (the "
            "DataLoader must fork its workers from the process that built it)"
        )
    pool.received(slot)
    features, targets = pool.views(slot, n)
    return VideoBatch.read(
        features,
        targets,
        torch.from_numpy(index),
        next_frames,
        mask=None if mask is None else torch.from_numpy(mask),
    )
