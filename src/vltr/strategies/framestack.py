"""FrameStack's stacking (VideoLT, Zhang et al. ICCV 2021, eq. 1-4): which rows of a batch are
stacked with which partner, with what ratio ``beta`` (from the classes' running AP) and which
frames; the method (:mod:`vltr.methods.framestack`) records the running AP and applies it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SAMPLINGS = ("even", "random")
SAMPLE_RAPS = ("mean_positive", "mean_all")


@dataclass(frozen=True)
class StackPlan:
    """Which rows are stacked, with whom, and how: all ``[k]`` tensors."""

    rows: torch.Tensor  # long: batch rows replaced by a stacked sample (V_i)
    partners: torch.Tensor  # long: their partners (V_j), a permutation of ``rows``
    beta: torch.Tensor  # float64: eq. (1)
    frames_i: torch.Tensor  # long: L_i = floor((1 - beta) L); L_j = L - L_i


def sample_rap(
    targets: torch.Tensor, rap: torch.Tensor, reduction: str = "mean_positive"
) -> torch.Tensor:
    """Per-sample rAP ``[B]`` (float64) from multi-hot ``targets [B, C]`` and ``rap [C]``."""
    pos = (targets > 0.5).double()
    total = pos @ rap.to(device=pos.device, dtype=torch.float64)
    if reduction == "mean_positive":
        return total / pos.sum(dim=1).clamp_min(1.0)
    if reduction == "mean_all":
        return total / targets.shape[1]
    raise ValueError(f"sample_rap must be one of {SAMPLE_RAPS}, got {reduction!r}")


def stack_ratio(rap_i: torch.Tensor, rap_j: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Eq. (1): ``beta = rap_i / (rap_i + rap_j)``; 0.5 where ``rap_i + rap_j < eps``."""
    total = rap_i.double() + rap_j.double()
    beta = rap_i.double() / total.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(total < eps, torch.full_like(beta, 0.5), beta)


def plan_stack(
    targets: torch.Tensor,
    rap: torch.Tensor,
    eta: float,
    clip_length: int,
    eps: float = 1e-5,
    reduction: str = "mean_positive",
    fixed_beta: float | None = None,
) -> StackPlan:
    """Draw the rows to stack (``floor(eta B)``), their partners, ``beta`` and ``L_i``.

    ``fixed_beta``: every pair stacked with this ``beta`` instead of eq. (1)'s rAP ratio (the
    ablation "rAP-adaptive vs fixed beta").
    """
    batch = targets.shape[0]
    k = math.floor(eta * batch + 1e-9)  # slack: 0.29 * 100 is 28.999...
    device = targets.device
    rows = torch.randperm(batch, device=device)[:k]
    partners = rows[torch.randperm(k, device=device)]
    if fixed_beta is None:
        r = sample_rap(targets, rap, reduction)
        beta = stack_ratio(r[rows], r[partners], eps)
    else:
        beta = torch.full((k,), float(fixed_beta), dtype=torch.float64, device=device)
    # floor((1 - beta) L), with slack so that an exact product is not floored one below
    frames_i = torch.floor((1.0 - beta) * clip_length + 1e-9).long().clamp(0, clip_length)
    return StackPlan(rows=rows, partners=partners, beta=beta, frames_i=frames_i)


def select_frames(counts: torch.Tensor, num_frames: int, sampling: str = "even") -> torch.Tensor:
    """``[k, T]`` frame indices; row ``r``'s first ``counts[r]`` are its picks, increasing.

    ``even``: ``linspace(0, T - 1, n)`` truncated to integers, what VideoLT's code does (it
    indexes the clip with numpy's float ``linspace``, which torch truncates): computed as numpy
    does (``i * (T - 1) / (n - 1)``, the last one exactly ``T - 1``), so every pick equals the
    released code's; strictly increasing for ``n <= T``. ``random``: ``n`` distinct frames
    uniformly at random, sorted. Entries past ``n`` are filler.
    """
    k, t = counts.shape[0], num_frames
    device = counts.device
    pos = torch.arange(t, device=device)
    if sampling == "even":
        n = counts.unsqueeze(1)
        div = (n - 1).clamp_min(1).double()
        step = torch.full_like(div, t - 1) / div  # tensor / tensor: numpy's rounding exactly
        frames = (pos.double().unsqueeze(0) * step).long()  # truncation, as torch indexing
        endpoint = (pos.unsqueeze(0) == n - 1) & (n > 1)  # numpy sets its last point exactly
        frames = torch.where(endpoint, t - 1, frames)
        return frames.clamp_(0, t - 1)
    if sampling == "random":
        rank = torch.rand(k, t, device=device).argsort(dim=1).argsort(dim=1)
        chosen = rank < counts.unsqueeze(1)
        # chosen frames first, each group in temporal order
        key = torch.where(chosen, pos, pos + t)
        return key.argsort(dim=1)
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")


def frame_stack(
    features: torch.Tensor, targets: torch.Tensor, plan: StackPlan, sampling: str = "even"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (2)-(4) for the planned rows; other rows are returned unchanged.

    ``features [B, L, D]`` (any dtype: frames are copied, not combined), ``targets [B, C]``.
    """
    k = plan.rows.shape[0]
    if k == 0:
        return features, targets
    length = features.shape[1]
    n_i = plan.frames_i.to(features.device)
    n_j = length - n_i
    idx_i = select_frames(n_i, length, sampling)
    idx_j = select_frames(n_j, length, sampling)
    pos = torch.arange(length, device=features.device).unsqueeze(0).expand(k, length)
    from_i = pos < n_i.unsqueeze(1)
    frame = torch.where(from_i, idx_i, idx_j.gather(1, (pos - n_i.unsqueeze(1)).clamp_min(0)))
    source = torch.where(from_i, plan.rows.unsqueeze(1), plan.partners.unsqueeze(1))
    stacked = features[source, frame]  # [k, L, D]: concat[V^_i ; V^_j]
    out = features.clone()
    out[plan.rows] = stacked
    beta = plan.beta.to(targets.dtype).unsqueeze(1)
    mixed = (1 - beta) * targets[plan.rows] + beta * targets[plan.partners]
    y = targets.clone()
    y[plan.rows] = mixed
    return out, y
