"""Training-step throughput of each method on CPU (videos/s), relative to the BCE baseline, and
before/after ratios for the attention layers' projection order.

Every method is built exactly as ``vltr-train`` builds it: the composed Hydra config (with the
method's own strategy/method/aggregator groups) through
``vltr.training.builders.build_module``, on a VideoLT-shaped problem: 1,004 classes with an
exponential long-tailed count profile, 2048-d ResNet-101 features, 60-frame training clips,
batch ``--batch`` of float16 features with 1-2 labels per video (MEDC: one such batch per
expert, as its training streams deliver). One step = the module's own training batch
transform, training loss, backward and an optimiser step (what ``training_step`` does, without
Lightning's loop). The median step time over ``--seconds`` and at least 7 steps (after two
warm-up steps) gives videos/s (videos of the natural stream per step); the ratio column is
relative to ``bce`` with the non-linear aggregator measured in the same run.

Rows marked ``(before)`` run the same module as vltr ran it before: Adam not fused (one pass
over the parameters per operation) and, for MOVE and MEDC, PSA's and eq. 4's key/value
projections applied to every frame (``bench/before_models.py``); ``(unfused Adam)`` rows
separate the two changes for MOVE and MEDC. ``--compile`` adds rows with the method's
frame-level parts under ``torch.compile`` (what ``vltr-train compile=true`` does). The last
line is the headline: each method's speed-up over its ``(before)`` row, and over eager mode
where compiled.

    .venv/bin/python bench/methods.py [--batch 32] [--seconds 4] [--only bce,move] [--compile]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import numpy as np
import torch
from before_models import use_per_frame_projections
from hydra import compose, initialize_config_module
from lightning.pytorch import LightningModule

from vltr.data.datamodule import DatasetInfo, VideoBatch
from vltr.data.longtail import exponential_profile
from vltr.training.builders import build_module, compile_model

# (row name, Hydra overrides): each method with the aggregator its paper uses
METHODS = [
    ("bce", ["strategy=bce", "aggregator=nonlinear"]),
    ("framestack", ["method=framestack", "aggregator=nonlinear"]),
    ("move", ["method=move"]),
    ("medc", ["method=medc"]),
    ("meid (stage 1)", ["method=meid", "method.stage=1"]),
    ("meid (stage 2)", ["method=meid", "method.stage=2"]),
]
# methods whose attention layers changed projection order: the two changes measured apart
PROJECTION_CHANGED = ("move", "medc")
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


def make_batch(batch: int, seed: int, next_frames: bool = False) -> VideoBatch:
    rng = np.random.default_rng(seed)
    targets = np.zeros((batch, CLASSES), dtype=np.float32)
    targets[np.arange(batch), rng.integers(0, CLASSES, batch)] = 1
    second = rng.random(batch) < 0.3
    targets[np.flatnonzero(second), rng.integers(0, CLASSES, int(second.sum()))] = 1
    frames = 2 * CLIP if next_frames else CLIP  # MEID's motion: the frame after each frame
    features = rng.standard_normal((batch, frames, DIM), dtype=np.float32).astype(np.float16)
    features = torch.from_numpy(features)
    return VideoBatch(
        features=features[:, :CLIP],
        targets=torch.from_numpy(targets),
        index=torch.arange(batch),
        next_features=features[:, CLIP:] if next_frames else None,
    )


def training_batch(module: LightningModule, size: int) -> VideoBatch | dict[str, VideoBatch]:
    """What the module's training step receives: one batch (with the next frames for MEID's
    motion), or one per MEDC training stream."""
    streams = getattr(module, "expert_names", None)
    if streams is not None and getattr(module, "distribution", None) == "resample":
        return {name: make_batch(size, seed) for seed, name in enumerate(dict.fromkeys(streams))}
    expert2 = getattr(module, "expert2", None)
    return make_batch(size, 0, next_frames=expert2 is not None and expert2.use_motion)


def build(overrides: list[str], info: DatasetInfo) -> LightningModule:
    with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["features=resnet101", "dataset=videolt", *overrides]
        )
    module = build_module(cfg, info)
    module.train()
    return module


def measure(module: LightningModule, batch: VideoBatch | dict, size: int, seconds: float) -> float:
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

    for _ in range(2):  # the first steps pay for lazy initialisation (and compilation)
        step()
    times, start = [], time.perf_counter()
    while len(times) < 7 or time.perf_counter() - start < seconds:
        times.append(step())
    return size / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--only", default="", help="comma-separated method names")
    p.add_argument("--compile", action="store_true", help="also measure under torch.compile")
    args = p.parse_args()
    info = videolt_info()
    chosen = [m for m in METHODS if not args.only or m[0] in args.only.split(",")]
    rows: list[tuple[str, list[str], str]] = []
    for name, overrides in chosen:
        rows.append((name, overrides, "eager"))
        if name in PROJECTION_CHANGED:
            rows.append((name, overrides, "unfused Adam"))
        rows.append((name, overrides, "before"))
        if args.compile:
            rows.append((name, overrides, "compiled"))
    print(
        f"cpus: {os.cpu_count()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}; batch {args.batch} x {CLIP} x {DIM}, {CLASSES} classes"
    )
    print("| method | params | videos/s | vs bce |\n|---|---:|---:|---:|")
    results: dict[tuple[str, str], float] = {}
    for name, overrides, mode in rows:
        torch.manual_seed(0)
        module = build(overrides, info)
        if mode in ("before", "unfused Adam"):
            module.optimizer_factory = functools.partial(module.optimizer_factory, fused=False)
        if mode == "before":
            use_per_frame_projections(module)
        elif mode == "compiled":
            compile_model(module)
        params = sum(p.numel() for p in module.parameters()) / 1e6
        rate = measure(module, training_batch(module, args.batch), args.batch, args.seconds)
        results[(name, mode)] = rate
        base = results.get(("bce", "eager"))
        ratio = f"{rate / base:.2f}x" if base else "n/a"
        label = name if mode == "eager" else f"{name} ({mode})"
        print(f"| {label} | {params:.1f} M | {rate:.1f} | {ratio} |", flush=True)
    parts = [
        f"{name} {results[(name, 'eager')] / results[(name, 'before')]:.2f}x vs before"
        for name, _ in chosen
        if (name, "before") in results
    ]
    parts += [
        f"{name} compiled {results[(name, 'compiled')] / results[(name, 'eager')]:.2f}x"
        for name, _ in chosen
        if (name, "compiled") in results
    ]
    eager = {name: rate for (name, mode), rate in results.items() if mode == "eager"}
    slowest = min(eager, key=eager.get)
    parts.append(f"slowest {slowest} {eager[slowest]:.1f} videos/s")
    print(f"methods (training step, batch {args.batch}, CPU): " + ", ".join(parts))


if __name__ == "__main__":
    main()
