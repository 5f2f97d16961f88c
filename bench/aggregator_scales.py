"""Output scale of every temporal aggregator at initialisation, against the non-linear baseline.

A classifier (or MOVE's concatenation of two branches, eq. 4) only sees an aggregator's output
if it arrives at a sensible scale; an un-normalised layer after an L2-normalised ``K * D``
descriptor arrives 30-350x too small and looks exactly like "the method does not help". This
prints, for each ``conf/aggregator/*.yaml`` option built as training builds it, the standard
deviation of its output (and of MOVE's two branches) in training mode at initialisation, with
and without the reference implementations' BatchNorms, at two sizes:

* synthetic: 64-d frames of the embedded synthetic dataset, aggregators sized as in
  ``scripts/compare_strategies.py`` (hidden 256, 16 clusters, attention 256);
* VideoLT: 2048-d frames from the same generator at 2048 dims (the stand-in of
  ``scripts/make_videolt_release.py``), the configs' paper sizes (K = 64, hidden 1024).

The ratio column is the option's std over the non-linear baseline's std measured on the same
frames. The last line is the headline: MOVE's branch ratio at both sizes.

    .venv/bin/python bench/aggregator_scales.py [--batch 32] [--frames 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

import hydra.utils
import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from vltr.data.store import FeatureStore
from vltr.data.synthetic import SyntheticSpec, generate

CONF = resources.files("vltr.conf").joinpath("aggregator")
SYNTHETIC_SIZES = {
    "hidden_dim": 256,
    "num_clusters": 16,
    "attentive_dim": 256,
    "codebook_dim": 256,
    "attention_dim": 256,
    "embed_dim": 256,
}


def options() -> list[str]:
    names = sorted(p.name[: -len(".yaml")] for p in CONF.iterdir() if p.name.endswith(".yaml"))
    return ["nonlinear"] + [n for n in names if n != "nonlinear"]


def build(option: str, dim: int, small: bool, batch_norm: bool | None) -> nn.Module:
    cfg = OmegaConf.load(str(CONF.joinpath(f"{option}.yaml")))
    if small:
        for key, value in SYNTHETIC_SIZES.items():
            if key in cfg:
                cfg[key] = value
    if batch_norm is not None:
        cfg.batch_norm = batch_norm
    return hydra.utils.instantiate(cfg, input_dim=dim).train()


def frames(dim: int, batch: int, clip: int, seed: int) -> torch.Tensor:
    """``[batch, clip]`` training clips of synthetic-generator videos at ``dim`` dims."""
    spec = SyntheticSpec(
        num_classes=10, n_max=batch, imbalance_ratio=0.5, dim=dim, min_eval_per_class=1, seed=seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(generate(spec, Path(tmp) / "scales.h5"))
        rng = np.random.default_rng(seed)
        train = store.split("train")[:batch]
        clips = [store.read(int(i), np.sort(rng.integers(0, store.frames, clip))) for i in train]
    return torch.as_tensor(np.stack(clips), dtype=torch.float32)


def std(t: torch.Tensor) -> float:
    return float(t.float().std())


def measure(x: torch.Tensor, small: bool) -> tuple[list[tuple[str, str, float]], float]:
    rows: list[tuple[str, str, float]] = []
    torch.manual_seed(0)
    with torch.no_grad():
        baseline = std(build("nonlinear", x.shape[-1], small, None)(x))
        for option in options():
            cfg = OmegaConf.load(str(CONF.joinpath(f"{option}.yaml")))
            variants = (
                [("", None)]
                if "batch_norm" not in cfg
                else [("", True), (" (no BatchNorm)", False)]
            )
            for suffix, bn in variants:
                torch.manual_seed(0)
                agg = build(option, x.shape[-1], small, bn)
                rows.append((option + suffix, "output", std(agg(x))))
                if option == "move_dual":
                    rows.append((option + suffix, "f_theta(PSA)", std(agg.self_attentive(x))))
                    rows.append((option + suffix, "f_phi(NetVLAD)", std(agg.codebook_attentive(x))))
    return rows, baseline


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=60)
    args = p.parse_args()
    headline = []
    for label, dim, small in (
        ("synthetic (64-d, sized down)", 64, True),
        ("VideoLT size (2048-d, paper sizes)", 2048, False),
    ):
        x = frames(dim, args.batch, args.frames, seed=0)
        rows, baseline = measure(x, small)
        print(f"\n{label}: frames std {std(x):.3f}; nonlinear output std {baseline:.4f}\n")
        print("| aggregator | part | output std | / nonlinear |")
        print("|---|---|---|---|")
        parts: dict[tuple[str, str], float] = {}
        for option, part, value in rows:
            parts[(option, part)] = value
            print(f"| {option} | {part} | {value:.4f} | {value / baseline:.2f} |")
        ratio = parts[("move_dual", "f_theta(PSA)")] / parts[("move_dual", "f_phi(NetVLAD)")]
        old = (
            parts[("move_dual (no BatchNorm)", "f_theta(PSA)")]
            / parts[("move_dual (no BatchNorm)", "f_phi(NetVLAD)")]
        )
        headline.append(f"{dim}-d: {ratio:.2f}x (without BatchNorm {old:.0f}x)")
    print("\nMOVE attentive / codebook branch std at init: " + "; ".join(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
