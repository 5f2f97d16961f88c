"""Training-step throughput of each method on CPU (videos/s), relative to the BCE baseline.

Every method is built exactly as ``vltr-train`` builds it: the composed Hydra config (with the
method's own strategy/method/aggregator groups) through
``vltr.training.builders.build_module``, on a
VideoLT-shaped problem: 1,004 classes with an exponential long-tailed count profile, 2048-d
ResNet-101 features, 60-frame training clips, batch ``--batch`` of float16 features with 1-2
labels per video. One step = the module's own training batch transform, training loss,
backward and an optimiser step (what ``training_step`` does, without Lightning's loop). The
median step time over ``--seconds`` (after warm-up) gives videos/s; the ratio column is relative
to ``bce`` with the non-linear aggregator measured in the same run. The last line is the
headline.

    .venv/bin/python bench/methods.py [--batch 32] [--seconds 4] [--only bce,move]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from hydra import compose, initialize_config_module
from lightning.pytorch import LightningModule

from vltr.data.datamodule import DatasetInfo, VideoBatch
from vltr.data.longtail import exponential_profile
from vltr.training.builders import build_module

# (row name, Hydra overrides): each method with the aggregator its paper uses
METHODS = [
    ("bce", ["strategy=bce", "aggregator=nonlinear"]),
    ("framestack", ["method=framestack", "aggregator=nonlinear"]),
    ("move", ["method=move"]),
    ("medc", ["method=medc"]),
    ("meid (stage 1)", ["method=meid", "method.stage=1"]),
    ("meid (stage 2)", ["method=meid", "method.stage=2"]),
]
CLASSES, DIM, CLIP = 1004, 2048, 60


def videolt_info() -> DatasetInfo:
    counts = exponential_profile(CLASSES, 1900, 10 / 1900)  # VideoLT-like: ~1,900 down to ~10
    return DatasetInfo(
        name="videolt-shaped",
        num_classes=CLASSES,
        frames=150,
        dim=DIM,
        class_names=[f"c{i}" for i in range(CLASSES)],
        class_counts=counts,
        head_min=500,
        tail_max=100,
    )


def make_batch(batch: int, seed: int) -> VideoBatch:
    rng = np.random.default_rng(seed)
    targets = np.zeros((batch, CLASSES), dtype=np.float32)
    targets[np.arange(batch), rng.integers(0, CLASSES, batch)] = 1
    second = rng.random(batch) < 0.3
    targets[np.flatnonzero(second), rng.integers(0, CLASSES, int(second.sum()))] = 1
    features = rng.standard_normal((batch, CLIP, DIM), dtype=np.float32).astype(np.float16)
    return VideoBatch(
        features=torch.from_numpy(features),
        targets=torch.from_numpy(targets),
        index=torch.arange(batch),
    )


def build(overrides: list[str], info: DatasetInfo) -> LightningModule:
    with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["features=resnet101", "dataset=videolt", *overrides]
        )
    module = build_module(cfg, info)
    module.train()
    return module


def measure(module: LightningModule, batch: VideoBatch, seconds: float) -> float:
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]

    def step() -> float:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = module.training_loss(module.transform_batch(batch))
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    warm = time.perf_counter()
    while time.perf_counter() - warm < 1.0:
        step()
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        times.append(step())
    return len(batch.index) / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--only", default="", help="comma-separated row names")
    args = p.parse_args()
    torch.manual_seed(0)
    info = videolt_info()
    batch = make_batch(args.batch, 0)
    rows = [m for m in METHODS if not args.only or m[0] in args.only.split(",")]
    print(
        f"cpus: {os.cpu_count()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}; batch {args.batch} x {CLIP} x {DIM}, {CLASSES} classes"
    )
    print("| method | params | videos/s | vs bce |\n|---|---:|---:|---:|")
    results: dict[str, float] = {}
    for name, overrides in rows:
        module = build(overrides, info)
        params = sum(p.numel() for p in module.parameters()) / 1e6
        results[name] = measure(module, batch, args.seconds)
        base = results.get("bce")
        ratio = f"{results[name] / base:.2f}x" if base else "n/a"
        print(f"| {name} | {params:.1f} M | {results[name]:.0f} | {ratio} |", flush=True)
    fastest = max(results, key=results.get)
    slowest = min(results, key=results.get)
    print(
        f"methods: fastest {fastest} ({results[fastest]:.0f} videos/s), slowest {slowest} "
        f"({results[slowest]:.0f} videos/s), training step, batch {args.batch}, CPU"
    )


if __name__ == "__main__":
    main()
