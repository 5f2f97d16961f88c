"""The bad-input matrix: each bad store or config fails vltr-train with one line naming the file or
key, a non-zero exit, and the input left untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from vltr.data.store import write_store

from conftest import main_exit, run_cli

pytestmark = pytest.mark.e2e
QUICK = [
    "features.dim=4",
    "features.frames=8",
    "dataset.clip_frames=4",
    "dataset.batch_size=4",
    "dataset.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "logger=none",
    "dataset.groups.head_min=3",
    "dataset.groups.tail_max=1",
]


def store(path: Path, labels: list[list[int]] | None = None, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    labels = labels or [[i % 3] for i in range(n)]
    return write_store(
        path,
        rng.standard_normal((n, 8, 4)).astype(np.float32),
        labels=labels,
        class_names=["a", "b", "c"],
        splits={"train": range(12), "val": range(12, 18), "test": range(18, n)},
    )


def corrupt(path: Path, kind: str) -> Path:
    if kind == "missing":
        return path.with_name("absent.h5")
    store(path)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_hdf5":
        path.write_text("not a store")
    elif kind in ("version", "nan", "label_range", "empty_split", "split_index"):
        with h5py.File(path, "r+") as f:
            if kind == "version":
                f.attrs["format_version"] = 7
            elif kind == "nan":
                f["features"][3, 2, 1] = np.inf
            elif kind == "label_range":
                f["label_indices"][5] = 9
            elif kind == "split_index":  # trained on the last video, a test video, before
                f["splits/train"][0] = -1
            else:
                del f["splits/test"]
                f["splits"].create_dataset("test", data=np.zeros(0, dtype=np.int64))
    return path


CASES = {
    # kind: (extra overrides, message fragment after "vltr-train: error: ")
    "missing": ([], "absent.h5: no such feature store"),
    "truncated": ([], "truncated file"),
    "not_hdf5": ([], "not a readable HDF5 file"),
    "version": ([], "unknown store format version 7"),
    "dim": (["features.dim=2048"], "features have dim 4 but the features config says 2048"),
    "frames": (["features.frames=150"], "8 frames per video but the features config says 150"),
    "nan": ([], "video index 3 has NaN/Inf features"),
    "label_range": ([], "label 9 of video index 5 is outside [0, 3)"),
    "empty_split": ([], "split 'test' is empty"),
    "split_index": ([], "split 'train' holds video index -1, outside [0, 24)"),
    "unknown_key": (["+dataset.batch_sise=3"], "dataset.batch_sise: unknown key"),
    "mistyped_key": (["trainer.max_epochs=many"], "trainer.max_epochs: expected"),
}


# the console script itself, in a new process, for one case; the others through its main
# function in this process (the same code path, without ~10 s of interpreter start-up each)
SUBPROCESS_CASE = "not_hdf5"


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_input_one_line_nonzero_untouched(
    tmp_path: Path,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = (
        corrupt(tmp_path / "s.h5", kind)
        if kind not in ("dim", "frames")
        else store(tmp_path / "s.h5")
    )
    if kind in ("unknown_key", "mistyped_key"):
        store(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    extra, message = CASES[kind]
    argv = [f"paths.root_dir={tmp_path}", "dataset=store", f"dataset.path={path}", *QUICK, *extra]
    if kind == SUBPROCESS_CASE:
        proc = run_cli(["vltr-train", *argv], cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
    else:
        code, last = main_exit(monkeypatch, capsys, "vltr-train", *argv)
        assert code == 2, last
    assert last.startswith("vltr-train: error: ") and message in last, last
    if kind not in ("unknown_key", "mistyped_key"):
        assert str(path) in last
    after = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    assert after == before


def test_class_without_training_videos_still_evaluates(tmp_path: Path) -> None:
    # class "c" (2) never occurs in train: its training count is 0, it is in the tail group
    labels = [[i % 2] for i in range(18)] + [[2], [0], [1], [0], [1], [0]]
    labels[14] = [2]  # one val positive so val/mAP stays informative
    path = store(tmp_path / "s.h5", labels=labels)
    proc = run_cli(
        [
            "vltr-train",
            f"paths.root_dir={tmp_path}",
            "dataset=store",
            f"dataset.path={path}",
            *QUICK,
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # said once, naming the class, instead of training silently
    warning = "store: 1 class(es) have no training videos: c (they are evaluated"
    assert (proc.stdout + proc.stderr).count(warning) == 1, proc.stdout + proc.stderr
    out = next((tmp_path / "logs" / "train" / "runs").iterdir())
    rows = (out / "per_class_ap_test.csv").read_text().strip().splitlines()
    row_c = rows[3].split(",")
    assert row_c[1:4] == ["c", "0", "tail"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["groups"]["tail"] >= 1
