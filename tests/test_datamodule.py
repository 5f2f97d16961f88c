"""DataModule: shapes, VideoLT's frame sampling, determinism per seed and per worker."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from vltr.data.datamodule import VideoBatch, VideoFeatureDataModule, VideoFeatureDataset
from vltr.data.store import FeatureStore
from vltr.utils.errors import StoreError

from conftest import make_store


def dm_for(path: Path, **kw: object) -> VideoFeatureDataModule:
    args = dict(
        name="t",
        path=str(path),
        clip_frames=12,
        batch_size=8,
        num_workers=0,
        groups={"head_min": 30, "tail_max": 10},
    )
    args.update(kw)
    dm = VideoFeatureDataModule(**args)
    dm.setup("fit")
    return dm


def test_batch_shapes_and_types(tiny_store: Path) -> None:
    dm = dm_for(tiny_store)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, VideoBatch)
    assert batch.features.shape == (8, 12, 32) and batch.features.dtype == torch.float16
    assert batch.targets.shape == (8, 10) and batch.targets.dtype == torch.float32
    assert batch.index.dtype == torch.long and batch.mask is None
    store = FeatureStore(tiny_store)
    for row, i in enumerate(batch.index.tolist()):
        assert batch.targets[row].nonzero().flatten().tolist() == sorted(store.labels(i).tolist())
    val = next(iter(dm.val_dataloader()))
    assert val.features.shape == (8, 24, 32)  # all T frames at evaluation


def test_eval_reads_all_frames_in_order(tiny_store: Path) -> None:
    dm = dm_for(tiny_store)
    store = FeatureStore(tiny_store)
    batch = next(iter(dm.test_dataloader()))
    for row, i in enumerate(batch.index.tolist()):
        np.testing.assert_array_equal(batch.features[row].numpy(), store.read(i))
    assert sorted(batch.index.tolist()) == batch.index.tolist()  # no shuffling at evaluation


def test_train_frames_sorted_with_replacement(tmp_path: Path) -> None:
    # frame t of every video holds the value t: the batch reveals the sampled indices
    n, t = 16, 10
    x = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None], (n, t, 2)).copy()
    from vltr.data.store import write_store

    path = write_store(
        tmp_path / "idx.h5",
        x,
        labels=[[i % 2] for i in range(n)],
        class_names=["a", "b"],
        splits={"train": range(n), "val": [0], "test": [1]},
    )
    ds = VideoFeatureDataset(FeatureStore(path), "train", clip_frames=30)  # more than T
    repeats = 0
    for item in range(n):
        idx = ds[item].features[:, 0]
        assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < t
        repeats += len(idx) - len(np.unique(idx))
    assert repeats > 0


def test_same_seed_same_batches_other_seed_differs(tiny_store: Path) -> None:
    def first_batch(seed: int, workers: int) -> torch.Tensor:
        L.seed_everything(seed, workers=True)
        dm = dm_for(tiny_store, num_workers=workers, persistent_workers=False)
        return next(iter(dm.train_dataloader())).features

    a, b = first_batch(1, 0), first_batch(1, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, first_batch(2, 0))
    assert torch.equal(first_batch(3, 2), first_batch(3, 2))


def test_workers_draw_different_frames(tiny_store: Path) -> None:
    # two workers reading the same video must not share a frame-sampling stream
    L.seed_everything(0, workers=True)
    store = FeatureStore(tiny_store)
    ds = VideoFeatureDataset(store, "train", clip_frames=12)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(ds, [0] * 8),
        batch_size=1,
        num_workers=2,
        collate_fn=lambda s: s[0].features,
    )
    clips = [c.tobytes() for c in loader]
    assert len(set(clips)) > 1


def test_mismatched_features_config_fails_early(tiny_store: Path) -> None:
    with pytest.raises(StoreError, match="dim 32 but the features config says 2048"):
        dm_for(tiny_store, expected_dim=2048)


def test_nan_features_name_file_and_video(tmp_path: Path) -> None:
    import h5py

    path, _, _ = make_store(tmp_path / "nan.h5")
    with h5py.File(path, "r+") as f:
        f["features"][2, 1, 0] = np.nan
    dm = dm_for(path, batch_size=16)
    with pytest.raises(StoreError, match=rf"{path}: video index 2 has NaN/Inf"):
        next(iter(dm.train_dataloader()))


def test_info_groups(tiny_store: Path) -> None:
    info = dm_for(tiny_store).info()
    assert info.num_classes == 10 and info.dim == 32 and info.frames == 24
    sizes = {k: int(v.sum()) for k, v in info.groups.items()}
    assert sum(sizes.values()) == 10 and sizes["head"] >= 1 and sizes["tail"] >= 1


def test_train_streams_yield_one_batch_per_stream(tiny_store: Path) -> None:
    import functools

    from lightning.pytorch.utilities import CombinedLoader

    from vltr.data.samplers import ClassAwareSampler
    from vltr.utils.errors import ConfigError

    uniform = functools.partial(ClassAwareSampler, power=0.0, seed=0)
    dm = dm_for(
        tiny_store,
        train_streams={"natural": None, "uniform": uniform},
        train_stream_names=["uniform", "natural"],
    )
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader) and list(loader.iterables) == ["uniform", "natural"]
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"uniform", "natural"}
    assert all(
        isinstance(b, VideoBatch) and b.features.shape == (8, 12, 32) for b in batch.values()
    )
    assert isinstance(loader.iterables["uniform"].sampler, ClassAwareSampler)
    # one stream of several; a stream that does not exist; a strategy sampler next to streams
    one = dm_for(
        tiny_store,
        train_streams={"natural": None, "uniform": uniform},
        train_stream_names=["uniform"],
    )
    assert list(one.train_dataloader().iterables) == ["uniform"]
    with pytest.raises(ConfigError, match="train_stream_names"):
        dm_for(tiny_store, train_streams={"natural": None}, train_stream_names=["inverse"])
    with pytest.raises(ConfigError, match="strategy"):
        dm_for(tiny_store, train_streams={"natural": None}, sampler=uniform)
    # names without streams select nothing: one plain loader
    assert isinstance(
        dm_for(tiny_store, train_stream_names=["a"]).train_dataloader(), torch.utils.data.DataLoader
    )
