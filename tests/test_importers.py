"""Importers (fabricated release folders) and the imbalance-ratio recipe applied at load time."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vltr.cli.data import main as cli_main
from vltr.data import importers
from vltr.data.datamodule import VideoFeatureDataModule
from vltr.data.longtail import imbalanced_subset
from vltr.data.store import FeatureStore, validate_store, write_store
from vltr.utils.errors import ConfigError, StoreError

from conftest import run_cli

D = 8
# lengths around the interesting cases: 1 frame, < 60, == T, just above T, >> T
LENGTHS = [1, 5, 59, 150, 151, 400, 37, 2]

Rows = list[tuple[str, list[int]]]


def fabricate(folder: Path, rows: Rows, seed: int = 0, ext: str = ".npy") -> dict[str, np.ndarray]:
    """Write one ``[T_i, D]`` float32 array per video; return them by id."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for k, (vid, _) in enumerate(rows):
        x = rng.standard_normal((LENGTHS[k % len(LENGTHS)], D)).astype(np.float32)
        if ext == ".pt":
            torch.save(torch.from_numpy(x), folder / f"{vid}.pt")
        else:
            np.save(folder / f"{vid}.npy", x)
        arrays[vid] = x
    return arrays


def write_list(path: Path, rows: Rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{vid} {','.join(map(str, labels))}\n" for vid, labels in rows))
    return path


def expected_frames(x: np.ndarray, t: int) -> np.ndarray:
    return x[np.linspace(0, len(x) - 1, t).astype(np.int32)]


def check_store(
    path: Path,
    rows_by_split: dict[str, Rows],
    arrays: dict[str, np.ndarray],
    frames: int,
    dtype: str = "float32",
) -> FeatureStore:
    assert validate_store(path) == []
    store = FeatureStore(path)
    assert (store.frames, store.dim) == (frames, D)
    ids = store.video_ids()
    for split, rows in rows_by_split.items():
        got = [ids[i] for i in store.split(split)]
        assert got == [vid for vid, _ in rows], split
        for i, (vid, labels) in zip(store.split(split), rows, strict=True):
            assert store.labels(int(i)).tolist() == labels
            np.testing.assert_array_equal(
                store.read(int(i)), expected_frames(arrays[vid], frames).astype(dtype)
            )
    return store


# ------------------------------------------------------------------------------- resampling rule
def test_resample_rule_by_hand() -> None:
    assert importers.resample_indices(3, 5).tolist() == [0, 0, 1, 1, 2]  # short: repeats
    assert importers.resample_indices(10, 4).tolist() == [0, 3, 6, 9]  # long: skips
    assert importers.resample_indices(1, 3).tolist() == [0, 0, 0]
    assert importers.resample_indices(150, 150).tolist() == list(range(150))  # identity


# ------------------------------------------------------------------------------------- VideoLT
VIDEOLT_NAMES = ["3DPainting", "ACappella", "ATM", "zumbaDance"]


def videolt_release(
    root: Path, counts: list[float] | None = None
) -> tuple[dict[str, Rows], dict[str, np.ndarray]]:
    rows = {
        "train": [
            ("aa-1", [0]),
            ("b_2", [1, 3]),
            ("c3", [2]),
            ("d4", [3, 0]),
            ("e5", [1]),
            ("f6", [2]),
            ("g7", [0]),
        ],
        "val": [("h8", [1]), ("i9", [2, 0]), ("j10", [3])],
        "test": [("k11", [0]), ("l12", [3]), ("m13", [1, 2])],
    }
    arrays: dict[str, np.ndarray] = {}
    for k, split in enumerate(("train", "val", "test")):
        arrays |= fabricate(root / "features", rows[split], seed=k)
    for split, file in (("train", "train.lst"), ("val", "validate.lst"), ("test", "test.lst")):
        write_list(root / "labels" / file, rows[split])
    counts = counts or [3.0, 2.0, 2.0, 2.0]  # train.lst, multi-label videos count per class
    (root / "labels" / "count-labels-train.lst").write_text(
        "".join(
            f"{n} {i} {c}\n" for i, (n, c) in enumerate(zip(VIDEOLT_NAMES, counts, strict=True))
        )
    )
    return rows, arrays


@pytest.mark.parametrize("dtype,workers", [("float32", 1), ("float16", 3)])
def test_videolt_import(tmp_path: Path, dtype: str, workers: int) -> None:
    rows, arrays = videolt_release(tmp_path)
    warnings: list[str] = []
    result = importers.import_videolt(
        tmp_path / "features",
        tmp_path / "labels",
        tmp_path / "vlt.h5",
        dtype=dtype,
        backbone="resnet101",
        workers=workers,
        chunk_videos=4,
        warn=warnings.append,
    )
    assert warnings == []
    assert (result.num_videos, result.split_sizes) == (13, {"train": 7, "val": 3, "test": 3})
    store = check_store(tmp_path / "vlt.h5", rows, arrays, frames=150, dtype=dtype)
    assert store.class_names == VIDEOLT_NAMES
    assert store.class_counts("train").tolist() == [3, 2, 2, 2]
    assert store.dtype == np.dtype(dtype)
    assert (store.source, store.backbone) == ("videolt-release", "resnet101")


def test_videolt_count_mismatch_warns(tmp_path: Path) -> None:
    videolt_release(tmp_path, counts=[3.0, 5.0, 2.0, 2.0])
    proc = run_cli(
        [
            "vltr-data",
            "import",
            "videolt",
            "--features",
            str(tmp_path / "features"),
            "--lists",
            str(tmp_path / "labels"),
            "--out",
            str(tmp_path / "v.h5"),
            "--frames",
            "20",
            "--no-progress",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "count-labels-train.lst: 1 class count(s) differ from train.lst, first ACappella "
        "(index 1): file says 5, train.lst has 2"
    ) in proc.stderr
    assert FeatureStore(tmp_path / "v.h5").frames == 20


def test_videolt_missing_feature_file_cli(tmp_path: Path) -> None:
    videolt_release(tmp_path)
    (tmp_path / "features" / "i9.npy").unlink()
    out = tmp_path / "out" / "vlt.h5"
    out.parent.mkdir()
    proc = run_cli(
        [
            "vltr-data",
            "import",
            "videolt",
            "--features",
            str(tmp_path / "features"),
            "--lists",
            str(tmp_path / "labels"),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"vltr-data: error: video i9: feature file {tmp_path / 'features' / 'i9.npy'} not found"
    ]
    assert list(out.parent.iterdir()) == []  # neither the store nor a temporary file


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: np.save(p, np.zeros((12, D + 1), np.float32)), r"array of shape \[12, 9\]"),
        (lambda p: np.save(p, np.zeros((0, D), np.float32)), r"array of shape \[0, 8\]"),
        (lambda p: np.save(p, np.zeros((4, 3, D), np.float32)), r"array of shape \[4, 3, 8\]"),
        (lambda p: p.write_bytes(b"not numpy"), "unreadable"),
        (lambda p: np.save(p, np.full((4, D), 1e6, np.float32)), "values beyond the float16 range"),
        (lambda p: np.save(p, np.full((4, D), np.nan, np.float32)), "NaN/Inf features"),
    ],
)
def test_bad_feature_file_leaves_nothing(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    videolt_release(tmp_path)
    bad = tmp_path / "features" / "l12.npy"  # in the last chunk: earlier chunks are written
    damage(bad)
    out = tmp_path / "out"
    with pytest.raises(StoreError, match=rf"^video l12: {re.escape(str(bad))}: {message}") as err:
        importers.import_videolt(
            tmp_path / "features", tmp_path / "labels", out / "v.h5", workers=2, chunk_videos=2
        )
    assert "\n" not in str(err.value)
    assert list(out.iterdir()) == []  # neither the store nor its temporary file


def test_bad_lists_are_one_line_errors(tmp_path: Path) -> None:
    videolt_release(tmp_path)
    feats, labels = tmp_path / "features", tmp_path / "labels"
    (labels / "test.lst").write_text("k11 0\nl12 7\n")
    with pytest.raises(StoreError, match="test.lst: video l12 has label 7 outside"):
        importers.import_videolt(feats, labels, tmp_path / "a.h5")
    (labels / "test.lst").write_text("k11 0\nl12 x,1\n")
    with pytest.raises(StoreError, match=r"test.lst:2: labels must be comma-separated"):
        importers.import_videolt(feats, labels, tmp_path / "a.h5")
    (labels / "test.lst").write_text("k11 0\nc3 1\n")
    with pytest.raises(StoreError, match="video c3 is in both the train and the test lists"):
        importers.import_videolt(feats, labels, tmp_path / "a.h5")
    (tmp_path / "a.h5").write_text("precious")
    with pytest.raises(StoreError, match="already exists"):
        importers.import_videolt(feats, labels, tmp_path / "a.h5")
    assert (tmp_path / "a.h5").read_text() == "precious"


# ------------------------------------------------------------------------------ MiniKinetics200
def test_minikinetics_holdout_and_load_time_imbalance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # train list: class 0 x6, class 1 x4, class 2 x6 (interleaved); val_per_class=1 holds out
    # the LAST clip of each class -> train counts 5 / 3 / 5 (a tie between classes 0 and 2)
    labels = [0, 2, 1, 0, 2, 0, 1, 2, 0, 2, 1, 0, 2, 0, 1, 2]
    train = [(f"yt{k:02d}_000010_000020", [c]) for k, c in enumerate(labels)]
    test = [(f"te{k}_000001_000011", [k % 3]) for k in range(6)]
    arrays = fabricate(tmp_path / "ResNet50" / "train", train) | fabricate(
        tmp_path / "ResNet50" / "val", test, seed=1
    )
    write_list(tmp_path / "data" / "train.lst", train)
    write_list(tmp_path / "data" / "val.lst", test)
    names = tmp_path / "names.txt"
    names.write_text("abseiling\nair drumming\narchery\n")
    out = tmp_path / "mk.h5"
    proc = run_cli(
        [
            "vltr-data",
            "import",
            "minikinetics200",
            "--features",
            str(tmp_path / "ResNet50"),
            "--lists",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--val-per-class",
            "1",
            "--num-classes",
            "3",
            "--class-names",
            str(names),
            "--frames",
            "16",
            "--workers",
            "2",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    held = [15, 14, 13]  # last clip of classes 2, 1, 0 in list order
    rows = {
        "train": [r for k, r in enumerate(train) if k not in held],
        "val": [train[k] for k in sorted(held)],
        "test": test,
    }
    store = check_store(out, rows, arrays, frames=16, dtype="float16")
    assert store.class_names == ["abseiling", "air drumming", "archery"]
    assert store.class_counts("train").tolist() == [5, 3, 5]
    assert store.attrs["imbalance_n_max"] == 6 and store.source == "minikinetics200-release"
    # IR 0.5, n_max = 6 (the full list's largest class, stored by the importer), K = 3:
    # rank 0 class 0: int(6 * 1) = 6 -> all 5; rank 1 class 2 (tie with 0, higher index):
    # int(6 * 0.5^0.5) = int(4.24) = 4; rank 2 class 1: int(6 * 0.5) = 3 -> all 3
    dm = VideoFeatureDataModule(
        name="mk", path=str(out), imbalance_ratio=0.5, batch_size=4, num_workers=0
    )
    dm.setup("fit")
    assert dm.info().class_counts.tolist() == [5, 3, 4]
    ids = store.video_ids()
    kept_class2 = [ids[i] for i in dm.train_set.indices if store.labels(int(i))[0] == 2]
    assert kept_class2 == [train[k][0] for k in (1, 4, 7, 9)]  # its FIRST four clips
    assert len(dm.train_dataloader()) == 3  # 12 videos, batch 4
    assert len(dm.val_set) == 3 and len(dm.test_set) == 6  # untouched
    assert cli_main(["info", str(out), "--imbalance-ratio", "0.5"]) == 0
    assert '"train": 12' in capsys.readouterr().out


def test_minikinetics_holdout_needs_enough_clips(tmp_path: Path) -> None:
    train = [("a", [0]), ("b", [0]), ("c", [1])]
    fabricate(tmp_path / "f", train)
    with pytest.raises(StoreError, match=r"class class001 \(index 1\) has 1 clips"):
        importers.import_minikinetics200(
            tmp_path / "f",
            tmp_path / "o.h5",
            num_classes=2,
            train_list=write_list(tmp_path / "train.lst", train),
            test_list=write_list(tmp_path / "val.lst", train[:1]),
            val_per_class=1,
        )


# ------------------------------------------------------------------------------------ Charades
def test_charades_import_cli(tmp_path: Path) -> None:
    rows = {
        "train": [
            ("46GP8", [3, 0, 1, 5]),
            ("N11GT", [2, 4]),
            ("0IH69", [1, 0, 3]),
            ("KRF68", [5, 4, 2, 0]),
        ],
        "val": [("YA10G", [0, 2, 1])],
        "test": [("ZZ9X1", [4, 3]), ("7UPGT", [5])],
    }
    arrays: dict[str, np.ndarray] = {}
    for split, file in (("train", "train.lst"), ("val", "validate.lst"), ("test", "test.lst")):
        arrays |= fabricate(tmp_path / "feats", rows[split], seed=len(arrays))
        write_list(tmp_path / "lists" / file, rows[split])
    out = tmp_path / "charadesegolt-resnet101.h5"
    proc = run_cli(
        [
            "vltr-data",
            "import",
            "charades",
            "--dataset",
            "charadesegolt",
            "--features",
            str(tmp_path / "feats"),
            "--lists",
            str(tmp_path / "lists"),
            "--num-classes",
            "6",
            "--out",
            str(out),
            "--dtype",
            "float32",
            "--backbone",
            "resnet101",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "splits train=4, val=1, test=2" in proc.stdout
    store = check_store(out, rows, arrays, frames=200)
    assert store.source == "charadesegolt-release" and store.num_classes == 6
    assert store.class_names[0] == "class000"


# ------------------------------------------------------------------------------------- generic
def test_generic_import_pt_and_npy(tmp_path: Path) -> None:
    rows = {
        "train": [("v1", [0]), ("v2", [1, 2]), ("v3", [2])],
        "val": [("v4", [1])],
        "test": [("v5", [0, 1])],
    }
    arrays = fabricate(tmp_path / "f", rows["train"], ext=".pt")
    arrays |= fabricate(tmp_path / "f", rows["val"] + rows["test"], seed=3)
    lists = {s: write_list(tmp_path / f"{s}.txt", r) for s, r in rows.items()}
    (tmp_path / "names.txt").write_text("run\njump\nswim\n")
    result = importers.import_generic(
        tmp_path / "f",
        tmp_path / "g.h5",
        train_list=lists["train"],
        val_list=lists["val"],
        test_list=lists["test"],
        class_names=tmp_path / "names.txt",
        frames=7,
        dtype="float32",
        source="my-lab",
    )
    assert result.dim == D
    store = check_store(tmp_path / "g.h5", rows, arrays, frames=7)
    assert store.class_names == ["run", "jump", "swim"] and store.source == "my-lab"


@pytest.mark.parametrize("release", ["videolt", "minikinetics200", "charades", "generic"])
def test_every_import_subcommand_has_help(release: str) -> None:
    from vltr.cli.data import build_parser

    with pytest.raises(SystemExit) as code:
        build_parser().parse_args(["import", release, "--help"])
    assert code.value.code == 0


# ------------------------------------------------------------------------ imbalance ratio recipe
# primary labels of 20 training videos in list order: counts c0=5, c1=8, c2=5, c3=2
PRIMARY = [1, 0, 1, 2, 0, 1, 1, 2, 0, 3, 1, 2, 0, 1, 2, 3, 1, 0, 2, 1]


def test_imbalanced_subset_by_hand() -> None:
    idx = np.arange(100, 120)
    # ratio 0.25, n_max 8, K 4: rank 0 c1 -> 8; rank 1 c0 (ties c2 at 5, lower index first)
    # -> int(8 * 0.25^(1/3)) = int(5.04) = 5; rank 2 c2 -> int(8 * 0.25^(2/3)) = int(3.17) = 3;
    # rank 3 c3 -> int(8 * 0.25) = 2. c2 keeps its first three videos (100+3, 100+7, 100+11).
    kept = imbalanced_subset(idx, np.array(PRIMARY), 0.25)
    assert kept.tolist() == [i for i in range(100, 120) if i not in (114, 118)]
    # given n_max=4: 4, int(4 * 0.63) = 2, int(4 * 0.397) = 1, int(4 * 0.25) = 1
    kept = imbalanced_subset(idx, np.array(PRIMARY), 0.25, n_max=4)
    assert np.bincount(np.array(PRIMARY)[kept - 100]).tolist() == [2, 4, 1, 1]
    assert kept.tolist() == [100, 101, 102, 103, 104, 105, 106, 109]
    # ratio 1 keeps everything; order of the inputs does not matter
    assert imbalanced_subset(idx, np.array(PRIMARY), 1.0).tolist() == idx.tolist()
    rev = imbalanced_subset(idx[::-1], np.array(PRIMARY)[::-1], 0.25)
    assert rev.tolist() == [i for i in range(100, 120) if i not in (114, 118)]
    # every class keeps at least one video even when n_max * ratio < 1
    assert len(imbalanced_subset(np.arange(3), np.array([0, 1, 2]), 0.01)) == 3
    with pytest.raises(ValueError, match="imbalance ratio"):
        imbalanced_subset(idx, np.array(PRIMARY), 0.0)


def ir_store(path: Path) -> Path:
    """20 train videos with PRIMARY first labels; video 7 also carries class 0, video 16 class 3
    (second labels: counted by class_counts, ignored by the recipe)."""
    labels = [[c] for c in PRIMARY]
    labels[7] = [2, 0]
    labels[16] = [1, 3]
    labels += [[k % 4] for k in range(8)]  # 4 val + 4 test
    x = np.zeros((28, 3, 2), dtype=np.float32)
    return write_store(
        path,
        x,
        labels=labels,
        class_names=["a", "b", "c", "d"],
        splits={"train": range(20), "val": range(20, 24), "test": range(24, 28)},
    )


def test_datamodule_imbalance_ratio(tmp_path: Path) -> None:
    path = ir_store(tmp_path / "ir.h5")
    plain = VideoFeatureDataModule(name="s", path=str(path), batch_size=4, num_workers=0)
    assert plain.info().class_counts.tolist() == [6, 8, 5, 3]
    dm = VideoFeatureDataModule(
        name="s", path=str(path), batch_size=4, num_workers=0, imbalance_ratio=0.25
    )
    dm.setup("fit")
    # the recipe drops videos 14 and 18 (class 2's 4th and 5th): counts by all labels
    assert dm.info().class_counts.tolist() == [6, 8, 3, 3]
    assert len(dm.train_set) == 18 and len(dm.train_dataloader()) == 5  # ceil(18 / 4)
    assert len(dm.val_set) == 4 and len(dm.test_set) == 4
    with pytest.raises(ConfigError, match="imbalance_ratio must be in"):
        VideoFeatureDataModule(name="s", path=str(path), imbalance_ratio=1.5)


def test_imbalance_ratio_through_config(
    tmp_path: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    path = ir_store(tmp_path / "ir.h5")
    cfg = compose_cfg(
        "dataset=store",
        f"dataset.path={path}",
        "features.dim=2",
        "features.frames=3",
        "dataset.imbalance_ratio=0.25",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
    )
    dm = instantiate(cfg.dataset)
    assert dm.info().class_counts.tolist() == [6, 8, 3, 3]
    for name in ("minikinetics200", "charadeslt", "charadesegolt", "videolt", "synthetic"):
        assert "imbalance_ratio" in compose_cfg(f"dataset={name}").dataset
    assert compose_cfg("dataset=minikinetics200").dataset.imbalance_ratio == 0.01


def test_synthetic_store_imbalance_ratio(tiny_store: Path) -> None:
    # the tiny synthetic store (10 classes, primary counts 60 -> 6): IR 0.02, n_max 60, K 10:
    # int(60 * 0.02^(r/9)) = 60, 38, 25, 16, 10, 6, 4, 2, 1, 1 -> capped by what each class has
    store = FeatureStore(tiny_store)
    train = store.split("train")
    primary = store.label_indices[store.label_indptr[train]]
    have = np.bincount(primary, minlength=10)
    assert have.tolist() == [60, 46, 35, 27, 21, 16, 12, 10, 7, 6]  # int(60 * 0.1^(r/9))
    dm = VideoFeatureDataModule(
        name="synthetic", path=str(tiny_store), num_workers=0, imbalance_ratio=0.02, batch_size=16
    )
    dm.setup("fit")
    kept = dm.train_set.indices
    assert np.bincount(store.label_indices[store.label_indptr[kept]], minlength=10).tolist() == [
        60,
        38,
        25,
        16,
        10,
        6,
        4,
        2,
        1,
        1,
    ]
    assert dm.info().class_counts.sum() >= len(kept) == 163
    assert len(dm.train_dataloader()) == 11  # ceil(163 / 16)


def test_import_writes_where_training_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vltr.training.stores import training_store

    videolt_release(tmp_path)
    stores = tmp_path / "stores"
    monkeypatch.setenv("VLTR_VIDEOLT_DIR", str(stores))
    monkeypatch.chdir(tmp_path)
    args = [
        "import",
        "videolt",
        "--features",
        str(tmp_path / "features"),
        "--lists",
        str(tmp_path / "labels"),
        "--chunk-videos",
        "4",
    ]
    assert cli_main([*args, "--backbone", "resnet101"]) == 0
    out, err = capsys.readouterr()
    # the path `vltr-train dataset=videolt features=resnet101` reads, composed like training
    target = training_store("videolt", "resnet101").path
    assert target == stores / "videolt-resnet101.h5" and FeatureStore(target).num_videos == 13
    assert out.splitlines()[-1] == (
        f"train on it: VLTR_VIDEOLT_DIR={stores} vltr-train dataset=videolt "
        "features=resnet101 features.dim=8 features.frames=150"
    )  # D=8 here, 2048 in VideoLT
    # not a terminal: a line every 5 % (here every chunk of 4 of the 13 videos)
    assert [ln.split(" (")[0] for ln in err.splitlines()] == [
        "VideoLT: 31%",
        "VideoLT: 62%",
        "VideoLT: 92%",
        "VideoLT: 100%",
    ]

    # an --out named for another backbone is refused in one line, and nothing is written
    assert (
        cli_main([*args, "--backbone", "resnet101", "--out", str(tmp_path / "videolt-resnet50.h5")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features=resnet50 would read this file" in err
    assert not (tmp_path / "videolt-resnet50.h5").exists()
    # without --out the backbone must name a features config
    assert cli_main([*args, "--backbone", "r101"]) == 2
    assert "--backbone r101: not a features config" in capsys.readouterr().err
    # any other --out: the command names the file
    assert (
        cli_main(
            [*args, "--backbone", "resnet101", "--out", str(tmp_path / "mine.h5"), "--no-progress"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == (
        "train on it: vltr-train dataset=videolt features=resnet101 features.dim=8 "
        f"features.frames=150 dataset.path={tmp_path / 'mine.h5'}"
    )
    assert "VideoLT:" not in err


@pytest.mark.e2e
def test_researchers_path_release_to_report_and_wandb_run(tmp_path: Path) -> None:
    """From scripts/make_videolt_release.py output to a report table and a W&B offline run,
    with the commands as printed, no path set by hand."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_videolt_release.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--out",
            str(tmp_path / "rel"),
            "--num-classes",
            "4",
            "--n-max",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lengths = [
        np.load(f, mmap_mode="r").shape
        for f in (tmp_path / "rel" / "ResNet101-feature").glob("*.npy")
    ]
    assert {d for _, d in lengths} == {2048} and min(t for t, _ in lengths) < 60
    proc = run_cli(
        [
            "vltr-data",
            "import",
            "videolt",
            "--features",
            str(tmp_path / "rel" / "ResNet101-feature"),
            "--lists",
            str(tmp_path / "rel" / "labels"),
            "--backbone",
            "resnet101",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    store = FeatureStore(
        tmp_path / "data" / "videolt" / "videolt-resnet101.h5",
        expected_dim=2048,
        expected_frames=150,
    )
    assert store.num_videos == len(lengths) and store.num_classes == 4
    printed = proc.stdout.splitlines()[-1]
    assert printed == (
        f"train on it: vltr-train dataset=videolt features=resnet101  (run from {tmp_path})"
    )
    command = printed.removeprefix("train on it: ").split("  (")[0].split()
    small = [
        "trainer.max_epochs=1",
        "dataset.num_workers=0",
        "dataset.batch_size=8",
        "aggregator.hidden_dim=32",
        "logger=wandb",
    ]
    proc = run_cli(
        [*command, *small], cwd=tmp_path, env={"WANDB_MODE": "offline", "WANDB_API_KEY": ""}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| test" in proc.stdout
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # for `wandb sync`
    proc = run_cli(["vltr-report", "logs"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\| bce \| nonlinear \| (\d\.\d{3}|n/a) \|", proc.stdout, re.M)
