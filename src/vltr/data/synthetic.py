"""The embedded synthetic long-tailed video dataset, written in the store format.

What makes it a useful stand-in for VideoLT rather than a toy:

* **Long-tailed counts**: an exponential profile ``n_r = n_max * mu^(r/(C-1))``.
* **Weak labels**: each label of a video is visible only in one contiguous segment (15-40 % of
  the frames by default) among background frames, so frame sampling and temporal aggregation
  matter.
* **Confusable classes**: class prototypes are drawn around a few superclass centres.
* **Multi-label videos**: a fraction of videos carries a second label with its own segment;
  the co-occurring class is drawn by frequency, so head classes co-occur more, as in VideoLT.
* **Not linearly ready**: latent frames go through a fixed random two-layer tanh network (the
  "backbone") before being stored, so aggregators and classifiers must undo a non-linearity.
* **Evaluation sets with positives for every class**: val/test hold ``max(min_eval,
  round(fraction * n_train))`` videos per class, long-tailed like train but never empty.

Generated on first use and cached under ``data/`` with a name keyed by the spec; a cached file
that fails to open or whose stored spec differs is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from vltr.data.longtail import exponential_profile
from vltr.data.store import FeatureStore, StoreWriter
from vltr.utils.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the generator's output for a given spec changes


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the generated store (and so its cache key)."""

    num_classes: int = 60
    n_max: int = 300
    imbalance_ratio: float = 0.01
    frames: int = 150
    dim: int = 64
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    min_eval_per_class: int = 6
    multi_label_fraction: float = 0.15
    segment_min: float = 0.15
    segment_max: float = 0.4
    latent_dim: int = 32
    num_superclasses: int = 8
    class_spread: float = 0.8
    signal: float = 3.0
    scene_std: float = 1.0
    noise_std: float = 1.0
    backbone_hidden: int = 256
    dtype: str = "float16"
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SyntheticSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"dataset.synthetic: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        spec = cls(**values)
        spec.check()
        return spec

    def check(self) -> None:
        if not 0 < self.imbalance_ratio <= 1:
            raise ConfigError(
                f"dataset.synthetic.imbalance_ratio must be in (0, 1], got {self.imbalance_ratio}"
            )
        if not 0 < self.segment_min <= self.segment_max <= 1:
            raise ConfigError("dataset.synthetic: need 0 < segment_min <= segment_max <= 1")
        if self.num_classes < 2 or self.frames < 1 or self.dim < 1:
            raise ConfigError("dataset.synthetic: num_classes >= 2, frames >= 1, dim >= 1")
        for name in (
            "n_max",
            "min_eval_per_class",
            "latent_dim",
            "backbone_hidden",
            "num_superclasses",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"dataset.synthetic.{name} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("val_fraction", "test_fraction", "multi_label_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(
                    f"dataset.synthetic.{name} must be in [0, 1], got {getattr(self, name)}"
                )

    def key(self) -> str:
        payload = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _assign_labels(
    spec: SyntheticSpec, per_class: np.ndarray, rng: np.random.Generator, freq: np.ndarray
) -> list[list[int]]:
    labels: list[list[int]] = []
    for c, n in enumerate(per_class):
        for _ in range(int(n)):
            row = [c]
            if rng.random() < spec.multi_label_fraction:
                p = freq.copy()
                p[c] = 0
                row.append(int(rng.choice(len(p), p=p / p.sum())))
            labels.append(row)
    return labels


def generate(spec: SyntheticSpec, path: str | os.PathLike[str], chunk: int = 256) -> Path:
    """Write the synthetic store for ``spec`` at ``path`` (atomically)."""
    rng = np.random.default_rng(spec.seed)
    lat = spec.latent_dim
    # class prototypes around superclass centres, unit variance per latent dimension
    centres = rng.standard_normal((spec.num_superclasses, lat))
    parent = rng.integers(0, spec.num_superclasses, size=spec.num_classes)
    protos = centres[parent] + spec.class_spread * rng.standard_normal((spec.num_classes, lat))
    protos /= np.sqrt(1 + spec.class_spread**2)
    # the fixed random non-linear "backbone": latent -> hidden -> dim, tanh after each layer
    w1 = rng.standard_normal((lat, spec.backbone_hidden)) / np.sqrt(lat)
    b1 = 0.5 * rng.standard_normal(spec.backbone_hidden)
    w2 = rng.standard_normal((spec.backbone_hidden, spec.dim)) / np.sqrt(spec.backbone_hidden)
    b2 = 0.2 * rng.standard_normal(spec.dim)

    train_counts = exponential_profile(spec.num_classes, spec.n_max, spec.imbalance_ratio)
    freq = train_counts / train_counts.sum()

    def eval_counts(fraction: float) -> np.ndarray:
        return np.maximum(
            np.round(fraction * train_counts).astype(np.int64), spec.min_eval_per_class
        )

    split_labels = {
        "train": _assign_labels(spec, train_counts, rng, freq),
        "val": _assign_labels(spec, eval_counts(spec.val_fraction), rng, freq),
        "test": _assign_labels(spec, eval_counts(spec.test_fraction), rng, freq),
    }
    labels = [row for name in ("train", "val", "test") for row in split_labels[name]]
    splits, start = {}, 0
    for name in ("train", "val", "test"):
        splits[name] = np.arange(start, start + len(split_labels[name]))
        start += len(split_labels[name])
    n = len(labels)
    t = spec.frames
    names = [f"class{c:03d}" for c in range(spec.num_classes)]
    ids = [f"synth{i:06d}" for i in range(n)]
    with StoreWriter(
        path,
        num_videos=n,
        frames=t,
        dim=spec.dim,
        class_names=names,
        dtype=spec.dtype,
        backbone="synthetic",
        source="vltr-synthetic",
        attrs={
            "synthetic_spec": json.dumps(asdict(spec), sort_keys=True),
            "synthetic_key": spec.key(),
        },
        # the content is a function of the spec: regenerating it (a parallel sweep
        # job rebuilding the cache) writes the same store, not another one
        store_id=f"synthetic-{spec.key()}",
    ) as writer:
        for lo in range(0, n, chunk):
            rows = labels[lo : lo + chunk]
            m = len(rows)
            scene = spec.scene_std * rng.standard_normal((m, 1, lat))
            z = scene + spec.noise_std * rng.standard_normal((m, t, lat))
            for v, row in enumerate(rows):
                for c in row:
                    length = max(1, int(round(rng.uniform(spec.segment_min, spec.segment_max) * t)))
                    s0 = int(rng.integers(0, t - length + 1))
                    amp = spec.signal * rng.uniform(0.7, 1.3)
                    z[v, s0 : s0 + length] += amp * protos[c]
            x = np.tanh(np.tanh(z @ w1 + b1) @ w2 + b2)
            writer.write_features(lo, x.astype(np.float32))
        writer.finish(labels=labels, video_ids=ids, splits=splits)
    return Path(path)


def ensure_synthetic(spec: SyntheticSpec, data_dir: str | os.PathLike[str]) -> Path:
    """Path of the cached store for ``spec`` under ``data_dir``, generating it if needed.

    A cached file that cannot be opened, is truncated or was written for another spec is
    replaced. Generation writes a temporary file and renames it, so concurrent callers (DDP
    ranks, parallel sweep jobs) each produce a complete file and never see a partial one.
    """
    path = Path(data_dir) / f"synthetic-{spec.key()}.h5"
    if path.exists():
        problem = _cache_problem(path, spec)
        if problem is None:
            return path
        log.warning("rebuilding synthetic cache %s: %s", path, problem)
    log.info("generating synthetic dataset %s", path)
    return generate(spec, path)


def _cache_problem(path: Path, spec: SyntheticSpec) -> str | None:
    try:
        store = FeatureStore(path, expected_dim=spec.dim, expected_frames=spec.frames)
        stored = store.attrs.get("synthetic_key")
        if stored != spec.key():
            return f"stored key {stored!r} != {spec.key()!r}"
        if set(store.splits) != {"train", "val", "test"}:
            return "missing splits"
    except (StoreError, OSError) as e:
        return str(e)
    return None
