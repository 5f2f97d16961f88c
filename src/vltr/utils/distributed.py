"""Gathering rows of different lengths from every DDP rank, in bounded messages."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

_CHUNK_BYTES = 32 * 2**20  # bytes per rank per gather message


def gather_rows(
    local: torch.Tensor, dst: int = 0, chunk_rows: int | None = None
) -> list[np.ndarray] | None:
    """Collect every rank's ``[n_r, W]`` uint8 rows on ``dst``; ``n_r`` may differ by rank.

    Returns the rows as numpy arrays in rank order on ``dst``, ``None`` on other ranks. Sent in
    messages of ``chunk_rows`` rows (default: about 32 MB), padded to a common length and
    trimmed on arrival, so device memory stays bounded. NCCL needs CUDA tensors; other backends
    (gloo) send from the CPU.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    width = local.shape[1]
    size = torch.tensor([local.shape[0]], dtype=torch.long, device=device)
    sizes_t = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes_t, size)
    sizes = [int(s.item()) for s in sizes_t]
    chunk = chunk_rows or max(1, _CHUNK_BYTES // max(width, 1))
    per_rank: list[list[np.ndarray]] = [[] for _ in range(world)]
    for start in range(0, max(sizes), chunk):
        m = min(chunk, max(sizes) - start)
        send = torch.zeros(m, width, dtype=torch.uint8, device=device)
        part = local[start : start + m]
        send[: len(part)] = part.to(device)
        recv = (
            [torch.empty(m, width, dtype=torch.uint8, device=device) for _ in range(world)]
            if rank == dst
            else None
        )
        dist.gather(send, recv, dst=dst)
        if recv is not None:
            for r in range(world):
                valid = min(max(sizes[r] - start, 0), m)
                if valid:
                    per_rank[r].append(recv[r][:valid].cpu().numpy())
    if rank != dst:
        return None
    return [arr for rows in per_rank for arr in rows]
