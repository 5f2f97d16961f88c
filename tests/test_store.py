"""Feature store: round trip, read paths, read-only, atomic writes, pickling, validation."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from vltr.data.store import FORMAT_VERSION, FeatureStore, StoreWriter, validate_store
from vltr.utils.errors import StoreError

from conftest import make_store, run_cli


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("layout", [{}, {"chunked": True}, {"compression": "gzip"}])
def test_round_trip(tmp_path: Path, dtype: str, layout: dict) -> None:
    path, x, labels = make_store(tmp_path / "s.h5", dtype=dtype, **layout)
    store = FeatureStore(path)
    assert (store.num_videos, store.frames, store.dim, store.num_classes) == (12, 8, 4, 3)
    assert store.contiguous == (not layout)
    expected = x.astype(dtype)
    for i in range(12):
        np.testing.assert_array_equal(store.read(i), expected[i])
        idx = np.array([0, 0, 3, 7])
        np.testing.assert_array_equal(store.read(i, idx), expected[i][idx])
        assert sorted(store.labels(i).tolist()) == sorted(labels[i])
    assert store.class_names == ["c0", "c1", "c2"]
    assert store.video_ids()[:2] == ["v0000000", "v0000001"]
    hot = store.multi_hot(np.array([0, 1]))
    assert hot.shape == (2, 3) and hot[0].sum() == len(labels[0])
    counts = store.class_counts("train")
    assert (
        counts.tolist()
        == np.bincount([c for i in range(6) for c in labels[i]], minlength=3).tolist()
    )
    assert store.attrs["format_version"] == FORMAT_VERSION


def test_memmap_path_matches_h5py(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "s.h5")
    store = FeatureStore(path)
    with h5py.File(path, "r") as f:
        for i in range(12):
            np.testing.assert_array_equal(store.read(i), f["features"][i])


def test_reader_never_writes(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "s.h5")
    os.chmod(path, 0o444)  # a read-only input must be readable
    before, mtime = digest(path), path.stat().st_mtime_ns
    store = FeatureStore(path)
    store.read(3, np.arange(4))
    store.video_ids()
    validate_store(path)
    store.close()
    assert digest(path) == before and path.stat().st_mtime_ns == mtime


def test_pickle_drops_handles_and_reopens(tmp_path: Path) -> None:
    path, x, _ = make_store(tmp_path / "s.h5", chunked=True)
    store = FeatureStore(path)
    store.read(0)  # opens the h5py handle
    clone = pickle.loads(pickle.dumps(store))
    assert clone._reader is None
    np.testing.assert_array_equal(clone.read(5), x[5].astype(np.float16))
    contiguous = FeatureStore(make_store(tmp_path / "c.h5")[0])
    contiguous.read(0)
    assert pickle.loads(pickle.dumps(contiguous))._reader is None


def test_exception_inside_writer_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with StoreWriter(target, num_videos=4, frames=2, dim=3, class_names=["a"]) as w:
            w.write_features(0, np.zeros((2, 2, 3)))
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_without_finish_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="finish"):
        with StoreWriter(tmp_path / "o.h5", num_videos=1, frames=1, dim=1, class_names=["a"]):
            pass
    assert not (tmp_path / "o.h5").exists()


def test_sigkilled_write_leaves_no_valid_looking_file(tmp_path: Path) -> None:
    target = tmp_path / "big.h5"
    script = (
        "import numpy as np, time\n"
        "from vltr.data.store import StoreWriter\n"
        f"with StoreWriter({str(target)!r}, num_videos=400, frames=50, dim=64, "
        "class_names=['a']) as w:\n"
        "    for i in range(400):\n"
        "        w.write_features(i, np.ones((1, 50, 64)))\n"
        "        print('wrote', i, flush=True); time.sleep(0.01)\n"
        "    w.finish(labels=[[0]]*400, video_ids=[str(i) for i in range(400)],"
        " splits={'train': range(400)})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("wrote 20"):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".") and "tmp-vltr" in p.name for p in leftovers)


# ----------------------------------------------------------------------------- bad inputs
def _corrupt(tmp_path: Path, kind: str) -> Path:
    path, _, _ = make_store(tmp_path / f"{kind}.h5")
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "nan":
        with h5py.File(path, "r+") as f:
            f["features"][5, 2, 1] = np.nan
    elif kind == "inf":
        with h5py.File(path, "r+") as f:
            f["features"][7, 0, 0] = np.inf
    elif kind == "label_range":
        with h5py.File(path, "r+") as f:
            f["label_indices"][3] = 3
    elif kind == "empty_split":
        with h5py.File(path, "r+") as f:
            del f["splits/val"]
            f["splits"].create_dataset("val", data=np.zeros(0, dtype=np.int64))
    elif kind == "no_train_videos":
        # drop every training video of class 2 by relabelling it as class 0
        with h5py.File(path, "r+") as f:
            idx = f["label_indices"][()]
            ptr = f["label_indptr"][()]
            idx[: ptr[6]][idx[: ptr[6]] == 2] = 0
            f["label_indices"][...] = idx
    elif kind == "version":
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 99
    elif kind == "not_hdf5":
        path.write_text("hello")
    return path


EXPECTED = {
    "truncated": "truncated",
    "nan": "NaN/Inf",
    "inf": "NaN/Inf",
    "label_range": "outside [0, 3)",
    "empty_split": "split 'val' is empty",
    "no_train_videos": "without training videos: c2",
    "version": "unknown store format version 99",
    "not_hdf5": "not a readable HDF5 file",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_validator_reports_each_problem(tmp_path: Path, kind: str) -> None:
    path = _corrupt(tmp_path, kind)
    before = digest(path)
    problems = validate_store(path)
    assert len(problems) == 1, problems
    assert EXPECTED[kind] in problems[0] and str(path) in problems[0]
    assert digest(path) == before


def test_validator_accepts_valid_store(tmp_path: Path, tiny_store: Path) -> None:
    assert validate_store(tiny_store) == []
    assert validate_store(make_store(tmp_path / "s.h5", compression="gzip")[0]) == []


@pytest.mark.parametrize("kind", ["truncated", "nan", "label_range"])
def test_validate_cli_one_line_nonzero_exit_file_unchanged(tmp_path: Path, kind: str) -> None:
    path = _corrupt(tmp_path, kind)
    before = digest(path)
    proc = run_cli(["vltr-data", "validate", str(path)], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and EXPECTED[kind] in lines[0], proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert digest(path) == before


def test_validate_cli_missing_file(tmp_path: Path) -> None:
    proc = run_cli(["vltr-data", "validate", str(tmp_path / "nope.h5")], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"{tmp_path / 'nope.h5'}: no such feature store"


def test_expected_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    path, _, _ = make_store(tmp_path / "s.h5")
    with pytest.raises(StoreError, match="dim 4 but the features config says 2048"):
        FeatureStore(path, expected_dim=2048)
    with pytest.raises(StoreError, match="8 frames per video but the features config says 150"):
        FeatureStore(path, expected_frames=150)
