"""Property: randomly corrupted stores and malformed list files keep the one-line-error contract.

Stores are damaged by truncation, flipped bytes in the small arrays (labels, splits, the NaN/Inf
record) or anywhere in the file, datasets of the wrong dtype or shape, deleted datasets and bad
attributes. Each goes through what a run does with a store: ``vltr-data validate``, ``vltr-data
info`` and the training data path (the DataModule opens it, builds the class counts and reads
every split through its loaders) inside the entry point's error handler. List files are random
lines of ids, labels and junk bytes, imported with ``vltr-data import generic``.

The contract: either it works, or exit status 2 with one line on stderr that names the file; no
traceback (any other exception fails the property); the input is byte-for-byte unchanged; and
nothing is half-written at the output path. Examples are derandomized (the same ones every run)
and bounded so the file runs in seconds; a few cases also go through the real console scripts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vltr.cli.common import user_errors
from vltr.cli.data import main as data_cli
from vltr.data.datamodule import VideoFeatureDataModule
from vltr.data.store import validate_store, write_store

from conftest import run_cli

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SMALL = (
    "label_indptr",
    "label_indices",
    "splits/train",
    "splits/val",
    "splits/test",
    "nonfinite_videos",
    "class_names",
    "video_ids",
)
DATASETS = ("features", *SMALL)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    n = 18
    x = rng.standard_normal((n, 6, 4)).astype(np.float32)
    x[4, 1, 1] = np.nan  # one recorded non-finite video outside every split: the record exists
    labels = [[i % 3] + ([(i + 1) % 3] if i % 5 == 0 else []) for i in range(n)]
    splits = {"train": [i for i in range(12) if i != 4], "val": range(12, 15), "test": range(15, n)}
    return write_store(
        tmp_path_factory.mktemp("base") / "base.h5",
        x,
        labels=labels,
        class_names=["a", "b", "c"],
        splits=splits,
    )


def byte_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """``(offset, nbytes)`` of each contiguous dataset's raw data in the file."""
    out: dict[str, tuple[int, int]] = {}
    with h5py.File(path, "r") as f:
        for name in DATASETS:
            ds = f[name]
            offset, size = ds.id.get_offset(), ds.id.get_storage_size()
            if offset is not None and size:
                out[name] = (int(offset), int(size))
    return out


# ------------------------------------------------------------------------------ corruptions
flips = st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), min_size=1, max_size=4)
corruptions = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip_small"), st.sampled_from(SMALL), flips),
    st.tuples(st.just("flip_any"), flips),
    st.tuples(
        st.just("retype"),
        st.sampled_from(DATASETS),
        st.sampled_from(["float32", "int8", "uint64", "2d", "empty", "scalar", "string"]),
    ),
    st.tuples(st.just("delete"), st.sampled_from((*DATASETS, "splits"))),
    st.tuples(
        st.just("attr"),
        st.sampled_from(["format_version", "num_classes", "store_id"]),
        st.one_of(
            st.none(),
            st.integers(-3, 10**6),
            st.text(max_size=4),
            st.floats(allow_nan=True),
            st.booleans(),
        ),
    ),
)


def corrupt(path: Path, how: tuple[Any, ...]) -> None:
    kind = how[0]
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * how[1])])
    elif kind in ("flip_small", "flip_any"):
        data = bytearray(path.read_bytes())
        lo, size = (0, len(data))
        if kind == "flip_small":
            lo, size = byte_ranges(path).get(how[1], (0, len(data)))
        for pos, mask in how[-1]:
            data[lo + pos % size] ^= mask
        path.write_bytes(bytes(data))
    elif kind == "retype":
        name, form = how[1], how[2]
        with h5py.File(path, "r+") as f:
            old = f[name][()]
            del f[name]
            values: Any = {
                "float32": np.asarray(old).astype(np.float32)
                if old.dtype.kind in "iuf"
                else np.zeros(len(old), np.float32),
                "int8": np.zeros(np.shape(old), np.int8),
                "uint64": np.zeros(np.shape(old), np.uint64),
                "2d": np.zeros((2, 2), np.int64),
                "empty": np.zeros((0,), np.int64),
                "scalar": np.int64(3),
                "string": np.array([b"x"] * max(1, len(np.atleast_1d(old)))),
            }[form]
            f.create_dataset(name, data=values)
    elif kind == "delete":
        with h5py.File(path, "r+") as f:
            del f[how[1]]
    elif kind == "attr":
        with h5py.File(path, "r+") as f:
            if how[2] is None:
                f.attrs.pop(how[1], None)
            else:
                f.attrs[how[1]] = how[2]


# ---------------------------------------------------------------------------------- contract
def one_line(err: str, prog: str, names: tuple[str, ...]) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines
    assert any(name in lines[0] for name in names), lines
    return lines[0]


def train_data_path(path: Path) -> int:
    """What ``vltr-train`` does with ``dataset.path``: open, class counts, every split read;
    returns the exit status its entry point would have (0, or 2 after one line)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            with user_errors("vltr-train"):
                dm = VideoFeatureDataModule(
                    name="p", path=str(path), num_workers=0, batch_size=5, clip_frames=3
                )
                dm.info()
                dm.setup()
                for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
                    for _ in loader:
                        pass
        except SystemExit as stop:
            assert stop.code == 2
            one_line(err.getvalue(), "vltr-train", (str(path),))
            return 2
    assert err.getvalue() == ""
    return 0


def check_store_contract(path: Path) -> None:
    before = digest(path)
    problems = validate_store(path)
    for line in problems:
        assert line.startswith(f"{path}:") and "\n" not in line, line
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = data_cli(["info", str(path)])
    assert code in (0, 2)
    if code == 2:
        one_line(err.getvalue(), "vltr-data", (str(path),))
    event(
        f"validate: {'problems' if problems else 'ok'}; info: exit {code}; "
        f"train data: exit {train_data_path(path)}"
    )
    assert digest(path) == before, "the input was modified"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "something was written"


@SETTINGS
@given(how=corruptions)
def test_corrupted_store_is_one_line_or_works(base_store: Path, how: tuple[Any, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.h5"
        shutil.copyfile(base_store, path)
        corrupt(path, how)
        check_store_contract(path)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "how",
    [
        ("flip_small", "splits/train", [(3, 0x80)]),
        ("retype", "class_names", "float32"),
        ("attr", "num_classes", "x"),
    ],
)
def test_corrupted_store_through_the_console_script(
    base_store: Path, tmp_path: Path, how: tuple[Any, ...]
) -> None:
    path = tmp_path / "s.h5"
    shutil.copyfile(base_store, path)
    corrupt(path, how)
    before = digest(path)
    proc = run_cli(["vltr-data", "info", str(path)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    one_line(proc.stderr, "vltr-data", (str(path),))
    assert digest(path) == before


# ------------------------------------------------------------------------------- list files
tokens = st.sampled_from(
    [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "zz",
        "0",
        "-1",
        "1,2",
        "2,,1",
        "x",
        ",",
        "7",
        "a,b",
        "#",
        "1 2",
        "\t",
        "\u00e9",
        "",
    ]
)
lines = st.one_of(
    st.builds(
        lambda vid, labels: f"{vid} {labels}",
        st.sampled_from("abcdef"),
        st.lists(st.integers(-2, 5), max_size=3).map(lambda ls: ",".join(map(str, ls))),
    ),
    st.lists(tokens, max_size=4).map(" ".join),
)
VALID = {"train": ["a 0", "b 1,0"], "val": ["c 1"], "test": ["d 0"]}


def list_file(split: str) -> st.SearchStrategy[bytes]:
    """A valid list with random lines added, random lines only, or random bytes."""
    valid = st.builds(
        lambda extra, at: VALID[split][:at] + extra + VALID[split][at:],
        st.lists(lines, max_size=2),
        st.integers(0, len(VALID[split])),
    )
    return st.one_of(
        st.just(VALID[split]).map(lambda ls: "\n".join(ls).encode()),
        valid.map(lambda ls: "\n".join(ls).encode()),
        st.lists(lines, max_size=5).map(lambda ls: "\n".join(ls).encode()),
        st.binary(max_size=12),
    )


def release(root: Path) -> Path:
    feats = root / "features"
    feats.mkdir()
    for vid in "abcd":
        np.save(feats / f"{vid}.npy", np.ones((3, 4), np.float32))
    np.save(feats / "e.npy", np.ones((3, 5), np.float32))  # another dim
    (feats / "f.npy").write_bytes(b"not an array")
    return feats


@SETTINGS
@given(train=list_file("train"), val=list_file("val"), test=list_file("test"))
def test_malformed_lists_are_one_line_and_leave_nothing(
    train: bytes, val: bytes, test: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        feats = release(root)
        lists = {}
        for split, data in (("train", train), ("val", val), ("test", test)):
            lists[split] = root / f"{split}.lst"
            lists[split].write_bytes(data)
        before = {p: digest(p) for p in lists.values()}
        out = root / "out" / "store.h5"
        stdout, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
            code = data_cli(
                [
                    "import",
                    "generic",
                    "--features",
                    str(feats),
                    "--train",
                    str(lists["train"]),
                    "--val",
                    str(lists["val"]),
                    "--test",
                    str(lists["test"]),
                    "--out",
                    str(out),
                    "--no-progress",
                    "--workers",
                    "1",
                ]
            )
        assert {p: digest(p) for p in lists.values()} == before, "a list file was modified"
        event(f"import: exit {code}")
        if code == 0:
            check_store_contract_after_import(out)
        else:
            assert code == 2
            names = (*map(str, lists.values()), str(feats), str(out))
            one_line(err.getvalue(), "vltr-data", names)
            assert not out.parent.exists() or list(out.parent.iterdir()) == [], (
                "something half-written at the output path"
            )


def check_store_contract_after_import(out: Path) -> None:
    # whatever an import accepted opens, or is refused in one line (e.g. an empty split)
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert train_data_path(out) in (0, 2)
