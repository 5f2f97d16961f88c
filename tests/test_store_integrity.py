"""A store is checked when it is opened, keeps its identity for the whole run, and every writer
leaves either the complete store or nothing.

Open-time checks: split indices in range (a train split holding -1 trained on a test video),
a valid CSR label index, class names matching ``num_classes``, ``/splits`` a group of integer
arrays, frames and dim >= 1, and the writer's NaN/Inf record (a test split with Inf failed only
after all training). Identity: a store replaced or deleted while a run uses it fails in one line
where a process reopens it, instead of giving another file's features under the first file's
labels. Writers: ``--out`` a directory, a failed final rename, SIGTERM, and temporaries left by
killed writers.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest

from vltr.cli.common import one_line
from vltr.cli.data import main as data_cli
from vltr.data.store import (
    FeatureStore,
    StoreWriter,
    remove_stale_temporaries,
    temporary_path,
    validate_store,
    write_store,
)
from vltr.data.synthetic import SyntheticSpec, generate
from vltr.utils.errors import StoreError

from conftest import BIN, TINY_OVERRIDES, compose_at, make_store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(path: Path, kind: str) -> None:
    with h5py.File(path, "r+") as f:
        if kind == "split_minus_one":
            train = f["splits/train"][()]
            train[0] = -1
            f["splits/train"][...] = train
        elif kind == "split_too_large":
            test = f["splits/test"][()]
            test[-1] = 99
            f["splits/test"][...] = test
        elif kind == "split_twice":
            test = f["splits/test"][()]
            test[1] = test[0]
            f["splits/test"][...] = test
        elif kind == "csr_not_monotonic":
            ptr = f["label_indptr"][()]
            ptr[3], ptr[4] = ptr[4], ptr[3] - 1
            f["label_indptr"][...] = ptr
        elif kind == "num_classes":
            f.attrs["num_classes"] = 5
        elif kind == "splits_dataset":
            del f["splits"]
            f.create_dataset("splits", data=np.arange(3))
        elif kind == "split_floats":
            del f["splits/val"]
            f["splits"].create_dataset("val", data=np.array([6.0, 7.0]))
        elif kind == "dim_zero":
            del f["features"]
            f.create_dataset("features", shape=(12, 8, 0), dtype="float16")


OPEN_TIME = {
    "split_minus_one": "split 'train' holds video index -1, outside [0, 12)",
    "split_too_large": "split 'test' holds video index 99, outside [0, 12)",
    "split_twice": "split 'test' lists a video more than once",
    "csr_not_monotonic": "/label_indptr is not a valid CSR index",
    "num_classes": "3 class names for num_classes=5",
    "splits_dataset": "/splits is a dataset, expected a group",
    "split_floats": "/splits/val is not a 1-D integer array",
    "dim_zero": "/features has shape [12, 8, 0]: no frames or no feature dimensions",
}


@pytest.mark.parametrize("kind", sorted(OPEN_TIME))
def test_open_checks_what_the_reader_trusts(tmp_path: Path, kind: str) -> None:
    path, _, _ = make_store(tmp_path / "s.h5")
    damage(path, kind)
    before = digest(path)
    with pytest.raises(StoreError) as err:
        FeatureStore(path)
    assert str(err.value).startswith(f"{path}: ") and OPEN_TIME[kind] in str(err.value)
    assert "\n" not in str(err.value)
    problems = validate_store(path)
    assert any(OPEN_TIME[kind] in p for p in problems), problems
    assert digest(path) == before


def test_training_on_a_split_holding_minus_one_fails_at_start(tmp_path: Path) -> None:
    from vltr.training.train import train

    path, _, _ = make_store(tmp_path / "s.h5", n=24, d=4, t=8)
    damage(path, "split_minus_one")
    cfg = compose_at(
        tmp_path,
        "dataset=store",
        f"dataset.path={path}",
        "features.dim=4",
        "features.frames=8",
        "dataset.num_workers=0",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "~callbacks.rich_progress_bar",
    )
    with pytest.raises(StoreError, match=r"split 'train' holds video index -1"):
        train(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()


# ---------------------------------------------------------------------------- NaN/Inf record
def inf_in_test(path: Path) -> Path:
    x = np.random.default_rng(0).standard_normal((12, 8, 4)).astype(np.float32)
    x[10, 3, 1] = np.inf
    return write_store(
        path,
        x,
        labels=[[i % 3] for i in range(12)],
        class_names=["a", "b", "c"],
        splits={"train": range(6), "val": range(6, 9), "test": range(9, 12)},
    )


def test_nan_inf_recorded_by_the_writer_fails_at_open(tmp_path: Path) -> None:
    path = inf_in_test(tmp_path / "s.h5")
    with pytest.raises(StoreError) as err:
        FeatureStore(path)
    assert str(err.value) == (
        f"{path}: split 'test' has 1 video(s) with NaN/Inf features, first at video index 10 "
        "(recorded when the store was written)"
    )
    store = FeatureStore(path, check=False)
    assert store.values_recorded


def test_foreign_store_without_record_is_found_when_read(tmp_path: Path) -> None:
    from vltr.data.datamodule import VideoFeatureDataModule

    path = inf_in_test(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:  # as written by another tool: no record
        del f["nonfinite_videos"]
    store = FeatureStore(path)
    assert not store.values_recorded
    dm = VideoFeatureDataModule(name="s", path=str(path), num_workers=0, batch_size=4)
    dm.setup()
    with pytest.raises(StoreError, match="video index 10 has NaN/Inf features"):
        list(dm.test_dataloader())


def test_float16_overflow_is_recorded(tmp_path: Path) -> None:
    x = np.ones((4, 2, 2), dtype=np.float32)
    x[1, 0, 0] = 1e6  # finite in float32, inf in the float16 store
    path = write_store(
        tmp_path / "s.h5",
        x,
        labels=[[0]] * 4,
        class_names=["a"],
        splits={"train": [0], "val": [1], "test": [2, 3]},
    )
    with pytest.raises(StoreError, match="split 'val' has 1 video"):
        FeatureStore(path)


# --------------------------------------------------------------------------------- identity
def worker_copy(store: FeatureStore) -> FeatureStore:
    """What a DataLoader worker or a spawned process gets: the store without open handles."""
    return pickle.loads(pickle.dumps(store))


def test_store_replaced_during_a_run_is_refused_where_it_is_reopened(tmp_path: Path) -> None:
    path, x, _ = make_store(tmp_path / "s.h5", seed=0)
    store = FeatureStore(path)
    np.testing.assert_array_equal(worker_copy(store).read(0), x[0].astype(np.float16))
    make_store(path, seed=1)  # same shapes and size, other values (vltr-data synth --out ...)
    with pytest.raises(StoreError) as err:
        worker_copy(store).read(0)
    assert str(err.value).startswith(f"{path}: the feature store was replaced or modified")
    path.unlink()
    with pytest.raises(StoreError, match="the feature store was deleted while this run"):
        worker_copy(store).read(0)
    with pytest.raises(StoreError, match="deleted"):
        store.video_ids()


def test_foreign_store_identity_is_size_and_mtime(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "s.h5", compression="gzip")  # the h5py read path
    with h5py.File(path, "r+") as f:
        del f.attrs["store_id"]
    store = FeatureStore(path)
    worker_copy(store).read(0)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(StoreError, match="replaced or modified"):
        worker_copy(store).read(0)


def test_regenerating_the_same_synthetic_store_keeps_its_identity(tmp_path: Path) -> None:
    # parallel sweep jobs may each (re)build the cache: the content, and so the id, is the same
    spec = SyntheticSpec(
        num_classes=3,
        n_max=6,
        imbalance_ratio=0.5,
        frames=4,
        dim=4,
        latent_dim=4,
        backbone_hidden=8,
        min_eval_per_class=2,
    )
    path = generate(spec, tmp_path / "syn.h5")
    store = FeatureStore(path)
    generate(spec, path)
    worker_copy(store).read(0)
    generate(SyntheticSpec(**{**spec.__dict__, "seed": 1}), path)  # another seed: another store
    with pytest.raises(StoreError, match="replaced or modified"):
        worker_copy(store).read(0)


class ReplaceStore(L.Callback):
    """Rewrites the store with other data after the first training epoch, as ``vltr-data synth
    --out SAME_PATH --seed 1`` from another shell would."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            make_store(Path(self.path), n=24, t=8, d=4, seed=7)


def test_store_rewritten_mid_training_fails_in_one_line(tmp_path: Path) -> None:
    """Workers reopen the path for validation and testing (val mAP 0.09 instead of 0.58 with
    exit 0 before); now the reopen refuses."""
    from vltr.training.train import train

    path, _, _ = make_store(tmp_path / "s.h5", n=24, t=8, d=4)
    before = [o for o in TINY_OVERRIDES if o.startswith(("trainer.", "~callbacks"))]
    cfg = compose_at(
        tmp_path,
        "dataset=store",
        f"dataset.path={path}",
        "features.dim=4",
        "features.frames=8",
        "dataset.num_workers=1",
        "dataset.batch_size=8",
        "dataset.groups.head_min=3",
        "dataset.groups.tail_max=1",
        *before,
        "trainer.max_epochs=2",
        "trainer.num_sanity_val_steps=0",
        "logger=none",
        "+callbacks.replace._target_=test_store_integrity.ReplaceStore",
        f"+callbacks.replace.path={path}",
    )
    with pytest.raises(StoreError) as err:
        train(cfg)
    # raised in a DataLoader worker: the one line the entry point prints
    assert one_line(err.value).startswith(f"{path}: the feature store was replaced or modified")
    assert not (tmp_path / "out" / "metrics.json").exists()


# ---------------------------------------------------------------------------------- writers
def generic_release(root: Path, first: np.ndarray | None = None, fifo: bool = False) -> list[str]:
    """A 4-video release (a, b in train, c in val, d in test) for ``vltr-data import generic``;
    ``first`` replaces video a's array, ``fifo`` makes video b a named pipe. Returns the
    command's arguments up to ``--out``."""
    feats = root / "f"
    feats.mkdir()
    for vid in "abcd":
        if vid == "b" and fifo:
            os.mkfifo(feats / "b.npy")
        else:
            np.save(
                feats / f"{vid}.npy",
                first if vid == "a" and first is not None else np.ones((3, 4), np.float32),
            )
    lists = {"train": "a 0\nb 0\n", "val": "c 0\n", "test": "d 0\n"}
    args = ["import", "generic", "--features", str(feats), "--no-progress"]
    for split, text in lists.items():
        (root / f"{split}.lst").write_text(text)
        args += [f"--{split}", str(root / f"{split}.lst")]
    return args


def test_out_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "stores"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(StoreError, match="is a directory"):
        StoreWriter(folder, num_videos=1, frames=1, dim=1, class_names=["a"])
    args = generic_release(tmp_path)
    assert data_cli([*args, "--out", str(folder), "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"vltr-data: error: {folder}: is a directory; --out takes the store's file "
        f"name (e.g. {folder / 'features.h5'})"
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_failed_final_rename_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "s.h5"
    with pytest.raises(StoreError, match="cannot put the finished store in place"):
        with StoreWriter(target, num_videos=1, frames=1, dim=1, class_names=["a"]) as w:
            w.write_features(0, np.ones((1, 1, 1)))
            w.finish(labels=[[0]], video_ids=["a"], splits={"train": [0]})
            target.mkdir()  # something took the name while we wrote
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"] and target.is_dir()


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "s.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".s.h5.{host}.{dead.pid}.tmp-vltr"
    alive = tmp_path / f".s.h5.{host}.{os.getppid()}.tmp-vltr"
    other_host = tmp_path / f".s.h5.elsewhere-{host}.{dead.pid}.tmp-vltr"
    for p in (stale, alive, other_host):
        p.write_bytes(b"partial")
    assert temporary_path(target).name == f".s.h5.{host}.{os.getpid()}.tmp-vltr"
    make_store(target)
    assert not stale.exists()
    assert alive.exists() and other_host.exists()  # may still be written
    assert remove_stale_temporaries(target) == []


def test_synth_needs_force_to_replace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.h5"
    flags = [
        "--num-classes",
        "3",
        "--n-max",
        "6",
        "--imbalance-ratio",
        "0.5",
        "--frames",
        "4",
        "--dim",
        "4",
        "--latent-dim",
        "4",
        "--backbone-hidden",
        "8",
        "--min-eval-per-class",
        "2",
    ]
    assert data_cli(["synth", "--out", str(out), *flags]) == 0
    before = digest(out)
    assert data_cli(["synth", "--out", str(out), *flags, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vltr-data: error: {out}: already exists (pass --force to replace it)"]
    assert digest(out) == before
    assert data_cli(["synth", "--out", str(out), *flags, "--seed", "1", "--force"]) == 0
    assert digest(out) != before


def test_import_with_zero_dim_features_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = generic_release(tmp_path, first=np.ones((5, 0), np.float32))
    out = tmp_path / "out" / "s.h5"
    assert data_cli([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"vltr-data: error: video a: {tmp_path / 'f' / 'a.npy'}: array of shape "
        "[5, 0], expected [T, D] with T >= 1 and D >= 1"
    ]
    assert not out.parent.exists()


def test_sigterm_during_import_leaves_nothing(tmp_path: Path) -> None:
    """A killed import (SIGTERM from a scheduler) removes its temporary store. The second
    video is a FIFO, so the import is reliably in progress when the signal comes."""
    args = generic_release(tmp_path, fifo=True)
    out = tmp_path / "out" / "s.h5"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [str(BIN / "vltr-data"), *args, "--out", str(out), "--workers", "1", "--chunk-videos", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def temporaries() -> list[Path]:
        return list(out.parent.glob(".s.h5.*.tmp-vltr")) if out.parent.exists() else []

    try:
        deadline = time.monotonic() + 60
        while not temporaries():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import never started writing"
            time.sleep(0.05)
        time.sleep(0.3)  # the reader is blocked on the FIFO
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while temporaries():
            assert time.monotonic() < deadline, "the temporary store was not removed"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:  # unblock the reader thread (it waits for a FIFO writer)
            os.close(os.open(tmp_path / "f" / "b.npy", os.O_WRONLY | os.O_NONBLOCK))
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"vltr-data: stopped by SIGTERM; nothing was written at {out}"
    )
    assert list(out.parent.iterdir()) == []
