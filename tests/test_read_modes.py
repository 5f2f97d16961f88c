"""Read modes, batch buffers and the resident mode return the same clips as the per-sample
loader for the same seed; what they do differently (no map, no read-ahead, reused buffers,
one load) is checked on real files and processes. No timing is asserted here (bench/)."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from vltr.data.buffers import BatchBufferPool
from vltr.data.clips import RandomSortedClipSampler
from vltr.data.datamodule import (
    VideoBatch,
    VideoFeatureDataModule,
    VideoFeatureDataset,
    VideoSample,
    collate_videos,
)
from vltr.data.readers import MmapReader, PreadReader, choose_read_mode
from vltr.data.resident import ResidentFeatures, ensure_fits
from vltr.data.samplers import ClassAwareSampler
from vltr.data.store import FeatureStore
from vltr.utils.errors import ConfigError, StoreError

from conftest import TINY_OVERRIDES, make_store, run_cli

MODES = ("mmap", "pread")


class PerSampleH5(VideoFeatureDataset):
    """The reference: one ``__getitem__`` per video, VideoLT's frame rule written out, and an
    independent read path (h5py, whole video, numpy indexing)."""

    __getitems__ = None  # type: ignore[assignment]  # the DataLoader fetches sample by sample

    def __getitem__(self, item: int) -> VideoSample:
        i = int(self.indices[item])
        idx = None
        if self.clip_frames is not None:
            idx = np.sort(self.rng.integers(0, self.store.frames, size=self.clip_frames))
        with h5py.File(self.store.path, "r") as f:
            video = f["features"][i]
        y = np.zeros(self.store.num_classes, dtype=np.float32)
        y[self.store.labels(i)] = 1.0
        return VideoSample(features=video if idx is None else video[idx], targets=y, index=i)


def dm_for(path: Path, **kw: object) -> VideoFeatureDataModule:
    args: dict = dict(
        name="t",
        path=str(path),
        clip_frames=12,
        batch_size=8,
        num_workers=0,
        persistent_workers=False,
        groups={"head_min": 30, "tail_max": 10},
    )
    args.update(kw)
    dm = VideoFeatureDataModule(**args)
    dm.setup("fit")
    return dm


def snapshot(loader: DataLoader, epochs: int = 2) -> list[tuple[torch.Tensor, ...]]:
    """Copies of every batch (buffers are reused: a batch must be copied to be kept)."""
    out = []
    for _ in range(epochs):
        for b in loader:
            out.append((b.features.clone(), b.targets.clone(), b.index.clone()))
    return out


def reference_batches(
    path: Path, seed: int, split: str = "train", epochs: int = 2, **kw: object
) -> list[tuple[torch.Tensor, ...]]:
    L.seed_everything(seed, workers=True)
    dm = dm_for(path, **kw)
    clip = dm.clip_frames if split == "train" else None
    dataset = PerSampleH5(dm.store, split, clip_frames=clip)
    if split == "train":
        dm.train_set = dataset
        return snapshot(dm.train_dataloader(), epochs)
    dm.val_set = dataset
    return snapshot(dm.val_dataloader(), epochs)


def assert_same(got: list, expected: list) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        assert a[0].dtype == b[0].dtype == torch.float16
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


# -- readers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_every_reader_reads_what_h5py_reads(tmp_path: Path, dtype: str) -> None:
    path, x, _ = make_store(tmp_path / "s.h5", n=10, t=9, d=5, dtype=dtype)
    store = FeatureStore(path)
    shape = (store.num_videos, store.frames, store.dim)
    rng = np.random.default_rng(0)
    with h5py.File(path, "r") as f:
        ref = f["features"][()]
    for reader in (
        MmapReader(path, shape, store.dtype, store._offset),
        PreadReader(path, shape, store.dtype, store._offset),
        PreadReader(path, shape, store.dtype, store._offset, threads=3),
    ):
        for i in range(10):
            np.testing.assert_array_equal(reader.read(i), ref[i])
            for idx in (
                np.array([0, 0, 3, 8]),
                np.array([7, 2, 2]),
                np.array([4]),
                np.array([-1, 0]),
            ):
                np.testing.assert_array_equal(reader.read(i, idx), ref[i][idx])
        videos = rng.integers(0, 10, size=30)  # 30 rows: 3 threads read a part each
        frames = np.sort(rng.integers(0, 9, size=(30, 4)), axis=1)
        out = np.empty((30, 4, 5), dtype=store.dtype)
        reader.read_batch(out, videos, frames)
        np.testing.assert_array_equal(
            out, np.stack([ref[v][f] for v, f in zip(videos, frames, strict=True)])
        )
        whole = np.empty((30, 9, 5), dtype=store.dtype)
        reader.read_batch(whole, videos)
        np.testing.assert_array_equal(whole, ref[videos])
        with pytest.raises(IndexError):
            reader.read(10)
        with pytest.raises(IndexError):
            reader.read(0, np.array([9]))
        reader.close()


def test_pread_maps_nothing_and_mmap_maps_the_file(tmp_path: Path) -> None:
    # pread keeps a process's RSS flat: the store is never mapped into it
    path, _, _ = make_store(tmp_path / "mapped.h5", n=10, t=9, d=5)
    store = FeatureStore(path)

    def mapped() -> bool:
        return str(path) in Path("/proc/self/maps").read_text()

    store.set_read_mode("pread")
    store.read(3, np.arange(4))
    assert not mapped()
    store.set_read_mode("mmap")
    store.read(3, np.arange(4))
    assert mapped()
    store.close()


def test_pread_reports_a_truncated_file(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "s.h5", n=10, t=9, d=5)
    store = FeatureStore(path)
    store.set_read_mode("pread")
    store.read(7)
    # cut short while open (a copy still being written, a full disk): a clear error, no zeros
    # (a store whose file changed is refused before any read; this is the reader's own check)
    store.check_identity = lambda: None  # type: ignore[method-assign]
    os.truncate(path, store._offset + 5 * 9 * 5 * 2 + 7)
    with pytest.raises(StoreError, match="unexpected end of file"):
        store.read(7)
    # raised in a reading thread, re-raised in the caller
    store.set_read_mode("pread", threads=3)
    out = np.empty((24, 9, 5), dtype=store.dtype)
    with pytest.raises(StoreError, match="unexpected end of file"):
        store.reader.read_batch(out, np.array([0] * 20 + [7] * 4))


def test_read_mode_auto_chooses_by_size_and_bad_modes_fail() -> None:
    assert choose_read_mode(10 * 2**30, 64 * 2**30) == "mmap"
    assert choose_read_mode(157 * 10**9, 128 * 2**30) == "pread"
    with pytest.raises(ConfigError, match="read_mode must be one of auto, mmap, pread"):
        VideoFeatureDataModule(name="t", path="x.h5", read_mode="direct")
    with pytest.raises(ConfigError, match="resident must be cpu, cuda or null"):
        VideoFeatureDataModule(name="t", path="x.h5", resident="gpu")


def test_read_mode_is_logged_when_the_store_opens(
    tiny_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vltr"):
        dm_for(tiny_store, read_mode="auto")
    # a tiny store fits in memory: auto picks the memmap gather, and says why
    assert "read_mode=auto chose mmap" in caplog.text
    assert "read with read_mode=mmap, 1 thread(s) per batch" in caplog.text


# -- the loader: every mode returns the per-sample loader's batches -------------------------------
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mode", MODES)
def test_every_read_mode_gives_the_per_sample_batches(
    tiny_store: Path, mode: str, workers: int
) -> None:
    expected = reference_batches(tiny_store, 11, num_workers=workers)
    L.seed_everything(11, workers=True)
    got = snapshot(dm_for(tiny_store, read_mode=mode, num_workers=workers).train_dataloader())
    assert_same(got, expected)
    L.seed_everything(12, workers=True)
    other = snapshot(dm_for(tiny_store, read_mode=mode, num_workers=workers).train_dataloader())
    assert not torch.equal(other[0][0], got[0][0])


@pytest.mark.parametrize("mode", MODES)
def test_eval_batches_read_all_frames_in_order(tiny_store: Path, mode: str) -> None:
    expected = reference_batches(tiny_store, 0, split="val", epochs=1, eval_batch_size=16)
    dm = dm_for(tiny_store, read_mode=mode, eval_batch_size=16)
    assert_same(snapshot(dm.val_dataloader(), epochs=1), expected)


def test_chunked_store_reads_through_h5py_in_batches(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "c.h5", n=24, t=9, d=5, chunked=True)
    expected = reference_batches(path, 3, clip_frames=4, batch_size=5)
    L.seed_everything(3, workers=True)
    dm = dm_for(path, read_mode="pread", clip_frames=4, batch_size=5)
    assert dm.store.reader.mode == "h5"
    assert_same(snapshot(dm.train_dataloader()), expected)


def test_a_subset_and_a_sample_collate_still_see_samples(tiny_store: Path) -> None:
    # collate functions written for per-sample lists keep working on batched reads
    ds = VideoFeatureDataset(FeatureStore(tiny_store), "train", clip_frames=5)
    loader = DataLoader(
        torch.utils.data.Subset(ds, [3, 1, 2]),
        batch_size=3,
        collate_fn=lambda samples: [s.index for s in samples],
    )
    assert next(iter(loader)) == [int(ds.indices[k]) for k in (3, 1, 2)]


def test_clip_sampler_draws_the_per_sample_frames() -> None:
    batched = RandomSortedClipSampler(60)(np.random.default_rng(5), 150, 128)
    one_by_one = np.random.default_rng(5)
    for row in batched:
        np.testing.assert_array_equal(row, np.sort(one_by_one.integers(0, 150, size=60)))


def test_nan_in_a_batched_read_names_file_and_video(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "nan.h5")
    with h5py.File(path, "r+") as f:
        f["features"][4] = np.inf  # every frame: any clip of it sees one
    for workers in (0, 2):
        dm = dm_for(path, batch_size=16, read_mode="pread", num_workers=workers)
        with pytest.raises(StoreError, match=rf"{path}: video index 4 has NaN/Inf"):
            snapshot(dm.train_dataloader(), epochs=1)


# -- batch buffers --------------------------------------------------------------------------------
def pool_pointers(dataset: VideoFeatureDataset) -> set[int]:
    assert dataset.buffers is not None
    return {t.data_ptr() for t in dataset.buffers.features}


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_written_into_reused_buffers_and_kept_batches_stay_intact(
    tiny_store: Path, workers: int
) -> None:
    L.seed_everything(5, workers=True)
    expected = reference_batches(
        tiny_store, 5, num_workers=workers, persistent_workers=True, epochs=3
    )
    L.seed_everything(5, workers=True)
    dm = dm_for(tiny_store, num_workers=workers, persistent_workers=True)
    loader = dm.train_dataloader()
    slots = pool_pointers(dm.train_set)
    kept: list[VideoBatch] = []  # held without copying: its slot must never be reused
    copies, in_pool = [], 0
    for _ in range(3):
        for b in loader:
            in_pool += b.features.data_ptr() in slots
            copies.append((b.features.clone(), b.targets.clone(), b.index.clone()))
            if not kept:
                kept.append(b)
    # the pool has room for a held batch, the current one, Lightning's look-ahead and each
    # worker's prefetched batches: nothing was allocated per batch
    assert in_pool == len(copies)
    assert_same(copies, expected)
    assert torch.equal(kept[0].features, copies[0][0])
    assert torch.equal(kept[0].targets, copies[0][1])


def test_pool_reuses_a_slot_only_when_nothing_references_it() -> None:
    pool = BatchBufferPool(2, (4, 3, 2), torch.float16, (4, 5), shared=False)
    a = pool.claim(in_worker=False)
    assert a is not None
    held = pool.views(a, 4)[0]
    b = pool.claim(in_worker=False)
    assert b is not None and b != a
    view_of_view = pool.views(b, 2)[0][:, :1].numpy()
    assert pool.claim(in_worker=False) is None  # both held: the caller allocates
    del held
    assert pool.claim(in_worker=False) == a
    del view_of_view
    assert pool.claim(in_worker=False) in (a, b)


def test_a_pickled_pool_is_empty_and_not_used(tiny_store: Path) -> None:
    import pickle

    dm = dm_for(tiny_store, num_workers=2)
    dm.train_dataloader()
    clone = pickle.loads(pickle.dumps(dm.train_set))
    assert clone.buffers is not None and len(clone.buffers) == 0
    assert clone.buffers.claim(in_worker=True) is None


# -- resident mode --------------------------------------------------------------------------------
def test_resident_cpu_gives_the_per_sample_batches(tiny_store: Path) -> None:
    expected = reference_batches(tiny_store, 21, epochs=3)
    L.seed_everything(21, workers=True)
    # num_workers is not used by the resident loader: batches equal the in-process ones
    dm = dm_for(tiny_store, resident="cpu", num_workers=2)
    loader = dm.train_dataloader()
    assert loader.num_workers == 0 and dm.train_set.resident is not None
    assert dm.train_set.resident.loaded
    slots = pool_pointers(dm.train_set)
    got, in_pool = [], 0
    for _ in range(3):
        for b in loader:
            in_pool += b.features.data_ptr() in slots  # gathered into reused buffers
            got.append((b.features.clone(), b.targets.clone(), b.index.clone()))
    assert in_pool == len(got)
    assert_same(got, expected)
    # val/test stream from the store
    assert dm.val_set.resident is None


def test_resident_with_class_aware_and_distributed_samplers(tiny_store: Path) -> None:
    factory = functools.partial(ClassAwareSampler, power=0.5, seed=3)
    expected = reference_batches(tiny_store, 2, sampler=factory)
    L.seed_everything(2, workers=True)
    assert_same(
        snapshot(dm_for(tiny_store, resident="cpu", sampler=factory).train_dataloader()), expected
    )
    # each rank's shard of a DistributedSampler (what Lightning puts in under DDP)
    for rank in (0, 1):
        batches = []
        for resident in (None, "cpu"):
            L.seed_everything(4, workers=True)
            dm = dm_for(tiny_store, resident=resident)
            dataset = dm.train_set
            if resident is None:
                dataset = PerSampleH5(dm.store, "train", clip_frames=12)
            else:
                dm.train_dataloader()  # loads the split
            sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, seed=9)
            loader = DataLoader(
                dataset, batch_size=8, sampler=sampler, collate_fn=functools.partial(collate_videos)
            )
            batches.append(snapshot(loader, epochs=1))
        assert_same(batches[1], batches[0])


def test_resident_batches_without_host_buffers_as_on_a_gpu(tiny_store: Path) -> None:
    # resident=cuda gathers into a new tensor on its device (no host buffer pool): the same
    # code path, run on the CPU, gives the pooled batches
    batches = []
    for pooled in (True, False):
        L.seed_everything(8, workers=True)
        dm = dm_for(tiny_store, resident="cpu")
        dm.train_dataloader()
        if not pooled:
            dm.train_set.buffers = None
        items = np.random.default_rng(0).permutation(len(dm.train_set))[:8]
        b = collate_videos(dm.train_set.__getitems__(items))
        batches.append([(b.features.clone(), b.targets.clone(), b.index.clone())])
    assert_same(batches[1], batches[0])


def test_resident_gather_on_a_device_tensor(tmp_path: Path) -> None:
    path, x, _ = make_store(tmp_path / "s.h5", n=16, t=6, d=3)
    store = FeatureStore(path)
    split = store.split("train")
    resident = ResidentFeatures(store, split, "cpu", progress=False).load()
    assert resident.features is not None and resident.features.shape == (8, 6, 3)
    positions = np.array([3, 0, 3])
    frames = np.array([[0, 0, 5], [1, 2, 3], [5, 5, 5]])
    got = resident.gather(positions, frames).numpy()
    expected = x.astype(np.float16)[split[positions][:, None], frames]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        resident.gather(positions, None).numpy(), x.astype(np.float16)[split[positions]]
    )


def test_resident_refuses_what_does_not_fit_in_one_line(tiny_store: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ensure_fits(2**40, torch.device("cpu"), what="the train split", copies=4)
    message = str(err.value)
    assert "\n" not in message and "needs 4398.0 GB" in message
    assert f"{4 * 2**40:,} bytes" in message and "dataset.resident=null" in message
    if not torch.cuda.is_available():
        dm = dm_for(tiny_store, resident="cuda")
        with pytest.raises(ConfigError, match="resident=cuda needs a CUDA device"):
            dm.train_dataloader()


def test_resident_refuses_non_finite_features_when_loading(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "nan.h5")
    with h5py.File(path, "r+") as f:
        f["features"][2, 1, 0] = np.nan
    with pytest.raises(StoreError, match=rf"{path}: video index 2 has NaN/Inf"):
        dm_for(path, resident="cpu").train_dataloader()


def test_resident_is_not_pickled(tiny_store: Path) -> None:
    import pickle

    dm = dm_for(tiny_store, resident="cpu")
    dm.train_dataloader()
    clone = pickle.loads(pickle.dumps(dm))
    assert clone.train_set.resident is not None and not clone.train_set.resident.loaded


# -- real training runs ---------------------------------------------------------------------------
@pytest.mark.ddp
def test_ddp_spawn_training_with_resident_equals_streaming(tmp_path: Path) -> None:
    # 2 gloo processes, class-aware sampling (a DistributedSampler): every rank loads the split
    # and draws the same clips as the streaming loader, so the trained weights are identical
    base = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    # both runs from one process (a multirun: ddp_spawn under -m), one interpreter start-up;
    # fit only (test=false): validate and test would each spawn the ranks again
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            f"paths.root_dir={tmp_path}",
            *base,
            "dataset.resident=null,cpu",
            "trainer.max_epochs=1",
            "logger=none",
            "strategy=cbs",
            "seed=3",
            "test=false",
            "trainer=ddp_spawn",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.deterministic=true",
            "trainer.enable_progress_bar=false",
            "hydra.sweep.dir=" + str(tmp_path / "sweep"),
        ],
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resident train -> cpu" in proc.stderr  # rank 0's progress bar, second job
    streaming, resident = (
        torch.load(tmp_path / "sweep" / str(k) / "checkpoints" / "last.ckpt", weights_only=True)
        for k in (0, 1)
    )
    assert streaming["global_step"] == resident["global_step"] > 0  # trained weights compared
    assert streaming["state_dict"].keys() == resident["state_dict"].keys()
    for name, weight in streaming["state_dict"].items():
        assert torch.equal(weight, resident["state_dict"][name]), name


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_batch_finite_check_finds_every_nan_and_inf(dtype: type) -> None:
    from vltr.data.datamodule import batch_all_finite

    x = np.random.default_rng(0).standard_normal((3, 700, 300)).astype(dtype)  # > 1 chunk
    assert batch_all_finite(x)
    x[:] = np.finfo(dtype).max  # the largest finite values are finite
    assert batch_all_finite(x)
    for bad in (np.inf, -np.inf, np.nan):
        for where in ((0, 0, 0), (2, 699, 299), (1, 437, 12)):
            y = x.copy()
            y[where] = bad
            assert not batch_all_finite(y), (bad, where)
