"""The embedded synthetic dataset: long-tailed, weakly labelled, multi-label, cached by spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vltr.data.longtail import exponential_profile, imbalance_ratio
from vltr.data.store import FeatureStore, validate_store
from vltr.data.synthetic import SyntheticSpec, ensure_synthetic
from vltr.utils.errors import ConfigError

from conftest import TINY_SYNTH, run_cli


def test_long_tailed_counts_and_eval_positives(tiny_store: Path, tiny_spec: SyntheticSpec) -> None:
    store = FeatureStore(tiny_store)
    assert validate_store(tiny_store) == []
    counts = store.class_counts("train")
    primary = exponential_profile(tiny_spec.num_classes, tiny_spec.n_max, tiny_spec.imbalance_ratio)
    # multi-label videos only add labels: counts never fall below the profile
    assert np.all(counts >= primary)
    assert counts[0] > 5 * counts[-1]
    assert imbalance_ratio(primary) == pytest.approx(tiny_spec.imbalance_ratio, rel=0.2)
    for split in ("val", "test"):
        assert store.class_counts(split).min() >= tiny_spec.min_eval_per_class
    labels_per_video = np.diff(store.label_indptr)
    assert 1.0 < labels_per_video.mean() < 1.0 + 2 * tiny_spec.multi_label_fraction
    assert set(np.unique(labels_per_video)) <= {1, 2}


def test_class_signal_lives_in_a_segment(tmp_path: Path) -> None:
    # With the segment covering every frame, the class signal is in all frames and a video's
    # frames agree more with each other than with weak labels (a short segment among
    # background): a check that the segment length is what controls the label's visibility.
    def frame_spread(segment: float) -> float:
        spec = SyntheticSpec(
            **{
                **TINY_SYNTH,
                "segment_min": segment,
                "segment_max": segment,
                "multi_label_fraction": 0.0,
            }
        )
        store = FeatureStore(ensure_synthetic(spec, tmp_path))
        x = np.stack([store.read(i).astype(np.float32) for i in store.split("train")[:40]])
        mean = x.mean(axis=1, keepdims=True)
        return float(np.linalg.norm(x - mean, axis=-1).mean())

    assert frame_spread(0.3) > frame_spread(1.0)


def test_cache_reuse_rebuild_and_key(tmp_path: Path) -> None:
    spec = SyntheticSpec(**TINY_SYNTH)
    path = ensure_synthetic(spec, tmp_path)
    mtime = path.stat().st_mtime_ns
    assert ensure_synthetic(spec, tmp_path) == path and path.stat().st_mtime_ns == mtime
    # a truncated cache file is detected and rebuilt
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rebuilt = ensure_synthetic(spec, tmp_path)
    assert rebuilt == path and validate_store(path) == []
    # another spec, another file
    other = SyntheticSpec(**{**TINY_SYNTH, "imbalance_ratio": 0.2})
    assert other.key() != spec.key()
    assert ensure_synthetic(other, tmp_path) != path


def test_deterministic_generation(tmp_path: Path) -> None:
    spec = SyntheticSpec(**TINY_SYNTH)
    a = FeatureStore(ensure_synthetic(spec, tmp_path / "a"))
    b = FeatureStore(ensure_synthetic(spec, tmp_path / "b"))
    np.testing.assert_array_equal(a.read(3), b.read(3))
    np.testing.assert_array_equal(a.label_indices, b.label_indices)


def test_unknown_spec_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown key.*num_clases"):
        SyntheticSpec.from_dict({"num_clases": 3})
    with pytest.raises(ConfigError, match="imbalance_ratio"):
        SyntheticSpec.from_dict({"imbalance_ratio": 2.0})


def test_synth_and_info_cli(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    proc = run_cli(
        [
            "vltr-data",
            "synth",
            "--out",
            str(out),
            "--num-classes",
            "6",
            "--n-max",
            "20",
            "--frames",
            "10",
            "--dim",
            "8",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 classes" in proc.stdout and out.exists()
    proc = run_cli(
        ["vltr-data", "info", str(out), "--head-min", "10", "--tail-max", "3"], cwd=tmp_path
    )
    assert proc.returncode == 0 and '"num_classes": 6' in proc.stdout
    assert proc.returncode == 0 and '"layout": "contiguous (memmap reads)"' in proc.stdout
    proc = run_cli(["vltr-data", "validate", str(out)], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"{out}: ok"
