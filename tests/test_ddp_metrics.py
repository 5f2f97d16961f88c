"""VideoLTMetrics under real torch.distributed (gloo, 2 CPU processes)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vltr.data.longtail import group_masks
from vltr.evaluation.metrics import VideoLTMetrics, summarize

pytestmark = pytest.mark.ddp
COUNTS = np.array([700, 300, 120, 90, 30, 5])


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random((101, 6)) < 0.3).astype(np.float32)  # odd N: the shards are uneven
    s = (y + rng.standard_normal((101, 6))).astype(np.float32)
    return s, y


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    s, y = data()
    # DistributedSampler's split: rank r takes indices r, r + world, ... padded by wrapping
    n = len(s)
    total = -(-n // world) * world
    idx = (list(range(n)) + list(range(total - n)))[rank::world]
    m = VideoLTMetrics(COUNTS, head_min=500, tail_max=100)
    for chunk in np.array_split(np.array(idx), 3):
        m.update(torch.from_numpy(s[chunk]), torch.from_numpy(y[chunk]), torch.from_numpy(chunk))
    result = m.compute()
    torch.save({"result": result, "ap": m.per_class_ap}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    s, y = data()
    expected, ap = summarize(s, y, group_masks(COUNTS))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got["result"] == pytest.approx(expected, abs=1e-12)
        np.testing.assert_allclose(got["ap"], ap, atol=1e-12)
