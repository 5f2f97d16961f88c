"""Training throughput of every temporal aggregator on CPU: forward + backward, videos/s.

Each ``conf/aggregator/*.yaml`` option is built as training builds it
(``hydra.utils.instantiate(cfg, input_dim=D)``) with the paper hyperparameters of its config
(non-linear hidden 2048; NetVLAD K=64, hidden 1024; NeXtVLAD lambda=2, G=8, K=64, hidden
1024; PSA 4 heads; MOVE dual 4 heads + K=64, 1024 + 1024; MEID frame attention). Input: a
random float32 batch ``[--batch, --frames, --dim]`` (default 32 x 60 x 2048: VideoLT's
training clip) with an all-True mask, in training mode. One step = ``zero_grad``, forward,
a scalar loss (mean of the squared output), backward; no classifier head and no optimiser
step, so only the aggregator is measured. The process first warms up on the baseline for
``--process-warmup`` seconds (the first steps of a fresh process are 2-3x slower: thread pool,
allocator); then per aggregator warm-up steps for ``--warmup`` seconds (at least 1) and timed
steps for ``--seconds`` (at least 3); videos/s = batch / the median step time (single steps of
the big models vary by +-20 % on a shared 2-core machine). The ratio column is relative to the
non-linear baseline measured in the same run. The last line is the headline.

    .venv/bin/python bench/aggregators.py [--batch 32] [--frames 60] [--dim 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from importlib import resources

import hydra.utils
import torch
from omegaconf import OmegaConf
from torch import nn

CONF = resources.files("vltr.conf").joinpath("aggregator")
BASELINE = "nonlinear"


def options() -> list[str]:
    names = sorted(p.name[: -len(".yaml")] for p in CONF.iterdir() if p.name.endswith(".yaml"))
    return [BASELINE] + [n for n in names if n != BASELINE]


def build(option: str, dim: int) -> nn.Module:
    cfg = OmegaConf.load(str(CONF.joinpath(f"{option}.yaml")))
    return hydra.utils.instantiate(cfg, input_dim=dim).train()


def step(agg: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> None:
    agg.zero_grad(set_to_none=True)
    agg(x, mask).square().mean().backward()


def run_for(
    agg: nn.Module, x: torch.Tensor, mask: torch.Tensor, seconds: float, min_steps: int
) -> list[float]:
    """Steps until ``seconds`` have passed and at least ``min_steps``: each step's seconds."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step(agg, x, mask)
        times.append(time.perf_counter() - t0)
    return times


def measure(
    agg: nn.Module, x: torch.Tensor, mask: torch.Tensor, warmup: float, seconds: float
) -> tuple[float, int]:
    """(videos/s, timed steps)."""
    run_for(agg, x, mask, warmup, 1)
    times = run_for(agg, x, mask, seconds, 3)
    return x.shape[0] / statistics.median(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--process-warmup", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=2.5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"cpus: {os.cpu_count()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), float32, training mode"
    )
    x = torch.randn(args.batch, args.frames, args.dim)
    mask = torch.ones(args.batch, args.frames, dtype=torch.bool)
    run_for(build(BASELINE, args.dim), x, mask, args.process_warmup, 1)
    rows: list[tuple[str, int, int, float, int]] = []
    for option in options():
        agg = build(option, args.dim)
        params = sum(p.numel() for p in agg.parameters())
        vps, n = measure(agg, x, mask, args.warmup, args.seconds)
        rows.append((option, params, agg.output_dim, vps, n))
        del agg
    base = rows[0][3]
    print()
    print("| aggregator | params | output dim | videos/s | vs nonlinear | timed steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for option, params, out_dim, vps, n in rows:
        print(
            f"| {option} | {params / 1e6:.1f} M | {out_dim} | {vps:,.0f} | "
            f"{vps / base:.2f}x | {n} |"
        )
    print()
    fast = max(rows, key=lambda r: r[3])
    slow = min(rows, key=lambda r: r[3])
    print(
        f"aggregators: fastest {fast[0]} ({fast[3]:,.0f} videos/s), slowest {slow[0]} "
        f"({slow[3]:,.0f} videos/s), batch {args.batch}, T={args.frames}, D={args.dim}"
    )


if __name__ == "__main__":
    main()
