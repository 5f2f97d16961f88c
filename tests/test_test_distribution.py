"""Test-distribution-agnostic evaluation: resampling (unit) and ``vltr-eval
eval.test_distribution=...`` (end to end on a tiny trained checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vltr.data.longtail import exponential_profile, group_masks
from vltr.evaluation.metrics import summarize
from vltr.evaluation.resample import (
    effective_distribution,
    parse_distributions,
    primary_classes,
    resample_indices,
    resampled_metrics,
    target_distribution,
)
from vltr.methods.medc import reversed_frequencies
from vltr.utils.errors import ConfigError

from conftest import TINY_OVERRIDES, main_exit, run_cli

KEYS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5")


def long_tailed_test_set(
    seed: int = 0, num_classes: int = 20, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train counts 200 -> 4, a test split with the same profile (at least 2 per class), some
    two-label videos, and scores = label signal + noise: (scores, targets, train counts)."""
    rng = np.random.default_rng(seed)
    train = exponential_profile(num_classes, 200, 0.02)
    test = np.maximum(train // 2, 2)
    labels = np.repeat(np.arange(num_classes), test)
    y = np.zeros((len(labels), num_classes), dtype=np.float32)
    y[np.arange(len(labels)), labels] = 1
    second = np.flatnonzero(rng.random(len(labels)) < 0.15)  # second labels long-tailed too
    y[second, rng.choice(num_classes, size=len(second), p=train / train.sum())] = 1
    # the model is better on classes it saw more often, as a long-tailed model is
    quality = np.log(train) / np.log(train).max()
    s = y * (1.0 + 2.0 * quality) + noise * rng.standard_normal(y.shape)
    return s.astype(np.float32), y, train


def test_target_distributions_and_inverse_is_medc_resort() -> None:
    counts = np.array([60, 40, 20, 10, 6])
    uni = target_distribution("uniform", counts)
    lt = target_distribution("longtailed", counts)
    inv = target_distribution("inverse", counts)
    for p in (uni, lt, inv):
        assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(uni, 0.2)
    np.testing.assert_allclose(lt, counts / counts.sum())
    # the rarest class gets the head's frequency: MEDC's resort, reused, not re-derived
    np.testing.assert_allclose(inv, reversed_frequencies(torch.as_tensor(lt)).numpy())
    np.testing.assert_allclose(inv, counts[::-1] / counts.sum())


def test_primary_class_is_the_rarest_positive() -> None:
    counts = np.array([50, 5, 20, 5])
    y = np.array(
        [
            [1, 0, 1, 0],  # 0 and 2: 2 is rarer
            [1, 1, 0, 1],  # 1 and 3 tie at 5: lower index
            [1, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )  # no label: never drawn
    assert primary_classes(y, counts).tolist() == [2, 1, 0, -1]


@pytest.mark.parametrize("name", ["uniform", "longtailed", "inverse"])
def test_drawn_class_frequencies_match_the_target(name: str) -> None:
    _, y, train = long_tailed_test_set()
    primary = primary_classes(y, train)
    probs = target_distribution(name, train)
    expected = effective_distribution(probs, primary)
    idx = resample_indices(primary, probs, 200_000, np.random.default_rng(0))
    drawn = np.bincount(primary[idx], minlength=len(train)) / len(idx)
    # 200k draws: the standard error of a class share is below 0.0012
    np.testing.assert_allclose(drawn, expected, atol=0.005)
    if name == "uniform":
        np.testing.assert_allclose(drawn, 1 / len(train), atol=0.005)


def test_classes_without_a_test_video_are_skipped_and_the_rest_renormalised() -> None:
    counts = np.array([100, 50, 10])
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]])  # class 1 has no test video
    primary = primary_classes(y, counts)
    p = effective_distribution(target_distribution("uniform", counts), primary)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.5])
    idx = resample_indices(
        primary, target_distribution("uniform", counts), 5000, np.random.default_rng(1)
    )
    assert set(idx.tolist()) == {0, 1, 2}


def test_longtailed_resampling_of_a_long_tailed_split_matches_the_plain_metrics() -> None:
    s, y, train = long_tailed_test_set()
    groups = group_masks(train, head_min=60, tail_max=15)
    plain, _ = summarize(s, y, groups)
    res = resampled_metrics(
        s, y, train, groups, ["longtailed"], repeats=5, seed=0, size=20 * len(s)
    )
    for key in KEYS:
        assert res["longtailed"][key] == pytest.approx(plain[key], abs=0.03), key
    # the point of the exercise: a uniform test distribution weighs the weak tail more
    uni = resampled_metrics(s, y, train, groups, ["uniform"], repeats=5, seed=0)["uniform"]
    assert uni["acc1"] < plain["acc1"]


def test_resampling_is_deterministic_given_the_seed() -> None:
    s, y, train = long_tailed_test_set()
    groups = group_masks(train, head_min=60, tail_max=15)
    names = ["uniform", "longtailed", "inverse"]
    a = resampled_metrics(s, y, train, groups, names, repeats=3, seed=7)
    b = resampled_metrics(s, y, train, groups, names, repeats=3, seed=7)
    c = resampled_metrics(s, y, train, groups, names, repeats=3, seed=8)
    assert a == b
    assert a != c
    # one stream per distribution: asking for fewer distributions changes nothing else
    assert resampled_metrics(s, y, train, groups, ["inverse"], repeats=3, seed=7) == {
        "inverse": a["inverse"]
    }
    for name in names:
        assert set(a[name]) == {*KEYS, *(f"{k}_std" for k in KEYS)}
        assert all(a[name][f"{k}_std"] > 0 for k in ("mAP", "acc1"))


def test_parse_distributions() -> None:
    assert parse_distributions(None) == []
    assert parse_distributions("uniform") == ["uniform"]
    assert parse_distributions(["uniform", "inverse", "uniform"]) == ["uniform", "inverse"]
    with pytest.raises(ConfigError, match="unknown distribution 'balanced'"):
        parse_distributions(["uniform", "balanced"])


# -- end to end: vltr-train a tiny model, then vltr-eval eval.test_distribution=[...]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("train")
    base = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    proc = run_cli(
        [
            "vltr-train",
            f"paths.root_dir={root}",
            *base,
            "trainer.max_epochs=4",
            "logger=none",
            "callbacks.model_checkpoint.save_last=false",
        ],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = (root / "logs" / "train" / "runs").iterdir()
    return root, json.loads((out / "metrics.json").read_text())["best_ckpt"]


def test_eval_test_distributions_end_to_end(checkpoint: tuple[Path, str]) -> None:
    root, ckpt = checkpoint
    proc = run_cli(
        [
            "vltr-eval",
            f"paths.root_dir={root}",
            f"ckpt_path={ckpt}",
            "trainer.enable_progress_bar=false",
            "eval.test_distribution=[uniform,inverse]",
            "eval.resample_repeats=3",
            "eval.seed=1",
            f"hydra.run.dir={root / 'eval'}",
        ],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    block = metrics["test_distribution"]
    assert list(block) == ["uniform", "inverse"]
    for name, values in block.items():
        assert set(values) == {*KEYS, *(f"{k}_std" for k in KEYS)}, name
        assert 0.0 <= values["mAP"] <= 1.0 and values["mAP_std"] >= 0.0
    assert metrics["test_distribution_settings"]["repeats"] == 3
    # one row per distribution in the printed table
    assert "| uniform" in proc.stdout and "| inverse" in proc.stdout
    # the plain test metrics are unchanged by the resampling
    assert set(metrics["test"]) >= set(KEYS)

    # the same numbers as the pure function on predictions computed here, independently
    from vltr.training.builders import build_datamodule, build_module
    from vltr.training.evaluate import load_run_config

    run_cfg = load_run_config(ckpt)
    dm = build_datamodule(run_cfg)
    info = dm.info()
    model = build_module(run_cfg, info)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    model.eval()
    dm.setup("test")
    scores, targets = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            scores.append(model(batch.features, batch.mask))
            targets.append(batch.targets)
    expected = resampled_metrics(
        torch.cat(scores).numpy(),
        torch.cat(targets).numpy(),
        info.class_counts,
        info.groups,
        ["uniform", "inverse"],
        repeats=3,
        seed=1,
    )
    for name in expected:
        for key, value in expected[name].items():
            assert block[name][key] == pytest.approx(value, abs=1e-5), (name, key)


def test_eval_unknown_distribution_is_one_line(
    checkpoint: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, ckpt = checkpoint
    code, last = main_exit(
        monkeypatch,
        capsys,
        "vltr-eval",
        f"paths.root_dir={root}",
        f"ckpt_path={ckpt}",
        "eval.test_distribution=[uniform,balanced]",
    )
    assert code == 2
    assert last == (
        "vltr-eval: error: eval.test_distribution: unknown distribution 'balanced' "
        "(choose from uniform, longtailed, inverse, or null)"
    )
    code, last = main_exit(
        monkeypatch,
        capsys,
        "vltr-eval",
        f"paths.root_dir={root}",
        f"ckpt_path={ckpt}",
        "+eval.test_distributions=uniform",
    )
    assert code == 2
    assert last.startswith("vltr-eval: error: ") and "eval.test_distributions" in last, last
