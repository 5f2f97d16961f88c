"""FrameStack (VideoLT, Zhang et al. ICCV 2021, §4 and Algorithm 1) as a LightningModule.

FrameStack re-samples training data at the frame level: pairs of videos of a batch are cut
and concatenated along time, taking *fewer* frames from the video whose classes the network
already handles well, as measured by a running AP (rAP) per class on the training set.

Per training step (:meth:`FrameStackModule.transform_batch`, on frame features before any
aggregator, so it works with every aggregator):

1. ``k = floor(eta * B)`` rows of the batch are chosen at random (a random permutation's first
   ``k``); the other ``B - k`` rows pass unchanged. Each chosen row ``i`` gets a partner ``j``
   by a random permutation *of the chosen rows* (VideoLT's code stacks within the mixed part;
   ``j = i`` is possible, as there, and then stacks a video with itself).
2. Sample rAP: ``r_i = mean_{c: y_ic = 1} rAP_c`` (``sample_rap="mean_positive"``, the default:
   the mean rAP of the sample's positive classes; exactly the paper's ``rAP_i`` for a
   single-label video; 0 for a video without labels). ``"mean_all"`` is VideoLT's released rule,
   ``mean_c(y_ic rAP_c)`` over all C classes: the same ratio (eq. 1) but the ``eps`` test then
   sees the sum of positive rAPs divided by C.
3. Eq. (1): ``beta = r_i / (r_i + r_j)``, and ``beta = 0.5`` when ``r_i + r_j < eps`` (1e-5).
4. Eq. (2): ``L_i = floor((1 - beta) L)`` frames from ``V_i``, ``L_j = L - L_i`` from ``V_j``
   (so the result has exactly ``L`` frames; the paper's ``L_j = floor(beta L)`` would give
   ``L - 1`` when both products are fractional). ``L`` = ``clip_length`` = the training clip
   length (``dataset.clip_frames``, 60 on VideoLT); it must equal the batch's frame count.
5. Uniform sampling keeps temporal order: ``sampling="even"`` (default) takes the frames at
   ``linspace(0, T - 1, n)`` of the clip truncated to integers, as VideoLT's code does (it
   indexes with numpy's float ``linspace``, and torch truncates float indices);
   ``"random"`` draws ``n`` distinct frames uniformly at random and sorts them.
6. Eq. (3): ``V~ = concat[V^_i ; V^_j]`` (paper order: ``V_i``'s frames first; VideoLT's code
   puts the partner's first, which order-free aggregators do not see).
7. Eq. (4): ``y~ = (1 - beta) y_i + beta y_j``; the loss is the strategy's (focal, gamma = 1).

rAP (Algorithm 1's ``APCalculator``): every training step records the logits of the
**un-mixed** batch (all ``B`` rows, mixed or not), computed under ``no_grad`` **in train mode**
(dropout active, BatchNorm in batch-statistics mode) with the parameters of that step before the
optimiser updates them: this is what VideoLT's ``dy_main.train`` records (``model(feature)``
on the original features inside the training loop, ``model.train()``). After the epoch's last
training batch, rAP_c = :func:`vltr.evaluation.metrics.average_precision` (this project's
tie-aware AP on
logits; VideoLT ranks sigmoid outputs with torchnet's APMeter) of those predictions over the
epoch's videos; the next epoch stacks with it. Epoch 0 uses rAP = 0 (every ``beta = 0.5``).
It is computed at the last batch's end, before the epoch's validation and checkpoint, so a
checkpoint holds the rAP the next epoch uses: ``rap`` is a persistent buffer, restored on
resume (a resumption mid-epoch records only the rest of that epoch).

Storage: a row per video of ``2 C`` bytes of float16 logits, ``ceil(C / 8)`` bytes of bit-packed
labels and an 8-byte index: ``2 C + ceil(C / 8) + 8`` bytes per video (VideoLT, C = 1,004:
2,142 bytes; 179k training videos: 384 MB), on the CPU. AP is computed in blocks of 128 classes
(float32 only for one block at a time).

Tolerance of the float16 storage. Rounding to float16 is monotone: it never reorders scores, it
only merges near-equal ones into ties, which the tie-aware AP scores as a block. Measured per
class |AP(float16) - AP(float32)|: max 1.6e-3, mean < 3.2e-4 at VideoLT scale (179k videos,
40-5,000 positives per class); max 4.4e-3, mean 5e-5 on the data of ``tests/test_framestack.py``
(20k videos, 16-1,000 positives), which asserts max <= 5e-3 and mean <= 2e-4. It is not a hard
bound: one negative tied with the top positive of a class with P positives costs up to 1 / (2P).
Recording in train mode (dropout) moves rAP far more than that, and beta only matters through
``floor((1 - beta) L)``. Keeping 3 bytes of each float32 would cut the error ~40x for +50 %.

DDP: at the epoch's end every rank sends its rows to rank 0 (``torch.distributed.gather`` in
chunks of about 32 MB, padded to a common size, so the shards may differ in length); rank 0
drops duplicate video indices (``DistributedSampler`` pads shards with repeated videos; the
first occurrence in rank order is kept), computes rAP and broadcasts it, so every rank stacks
with the identical vector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vltr.data.datamodule import VideoBatch
from vltr.evaluation.metrics import average_precision
from vltr.methods.base import MethodSetup, VideoRecognitionModule

SAMPLINGS = ("even", "random")
SAMPLE_RAPS = ("mean_positive", "mean_all")
_AP_BLOCK = 128  # classes per AP block (a multiple of 8: blocks start on whole label bytes)
_CHUNK_BYTES = 32 * 2**20  # bytes per rank per gather message
_F16_MAX = 65504.0


# -- mixing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackPlan:
    """Which rows are stacked, with whom, and how: all ``[k]`` tensors."""

    rows: torch.Tensor  # long: batch rows replaced by a stacked sample (V_i)
    partners: torch.Tensor  # long: their partners (V_j), a permutation of ``rows``
    beta: torch.Tensor  # float64: eq. (1)
    frames_i: torch.Tensor  # long: L_i = floor((1 - beta) L); L_j = L - L_i


def sample_rap(targets: torch.Tensor, rap: torch.Tensor, reduction: str = "mean_positive"
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


def select_frames(counts: torch.Tensor, num_frames: int, sampling: str = "even"
                  ) -> torch.Tensor:
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


# -- compact per-video records and rAP -----------------------------------------------------------
def record_width(num_classes: int) -> int:
    """Bytes per recorded video: float16 logits, bit-packed labels, int64 index."""
    return 2 * num_classes + (num_classes + 7) // 8 + 8


def pack_records(logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor
                 ) -> torch.Tensor:
    """``[B, record_width(C)]`` uint8 rows: ``logits`` as float16 (clamped to its finite range),
    ``targets > 0.5`` packed 8 classes a byte (little bit order), ``index`` as int64."""
    b, c = logits.shape
    scores = logits.detach().float().clamp(-_F16_MAX, _F16_MAX).half().contiguous()
    bits = (targets.detach() > 0.5).to(torch.uint8)
    pad = (-c) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(b, pad)], dim=1)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    packed = (bits.view(b, -1, 8) * weights).sum(dim=2, dtype=torch.uint8)
    idx = index.detach().long().reshape(b, 1).contiguous()
    return torch.cat([scores.view(torch.uint8), packed, idx.view(torch.uint8)], dim=1)


def unpack_records(rows: np.ndarray, num_classes: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_records`: ``(float16 scores [N, C], bool targets [N, C],
    int64 index [N])``."""
    c = num_classes
    scores = np.ascontiguousarray(rows[:, : 2 * c]).view(np.float16)
    nbytes = (c + 7) // 8
    targets = np.unpackbits(rows[:, 2 * c : 2 * c + nbytes], axis=1, count=c,
                            bitorder="little").astype(bool)
    index = np.ascontiguousarray(rows[:, 2 * c + nbytes :]).view(np.int64)[:, 0]
    return scores, targets, index


def rap_from_records(chunks: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-class AP ``[C]`` (float64) of the recorded rows (a list of ``[n, W]`` uint8 arrays).

    Each video counts once: rows repeating an earlier row's index are dropped (first occurrence
    in list order kept). Equals ``average_precision(scores.astype(float32), targets)`` on the
    kept rows; computed ``_AP_BLOCK`` classes at a time, so float32 exists for one block only.
    """
    c = num_classes
    chunks = [ch for ch in chunks if len(ch)]
    ap = np.zeros(c, dtype=np.float64)
    if not chunks:
        return ap
    nbytes = (c + 7) // 8
    index = np.concatenate([np.ascontiguousarray(ch[:, 2 * c + nbytes :]).view(np.int64)[:, 0]
                            for ch in chunks])
    _, first = np.unique(index, return_index=True)
    keep = None if len(first) == len(index) else np.sort(first)
    for lo in range(0, c, _AP_BLOCK):
        hi = min(lo + _AP_BLOCK, c)
        scores = np.concatenate([np.ascontiguousarray(ch[:, 2 * lo : 2 * hi]).view(np.float16)
                                 for ch in chunks])
        b0, b1 = 2 * c + lo // 8, 2 * c + (hi + 7) // 8
        labels = np.concatenate([np.unpackbits(ch[:, b0:b1], axis=1, count=hi - lo,
                                               bitorder="little") for ch in chunks])
        if keep is not None:
            scores, labels = scores[keep], labels[keep]
        ap[lo:hi] = average_precision(scores.astype(np.float32), labels.astype(np.float32))
    return ap


def gather_rows(local: torch.Tensor, dst: int = 0, chunk_rows: int | None = None
                ) -> list[np.ndarray] | None:
    """Collect every rank's ``[n_r, W]`` uint8 rows on ``dst``; ``n_r`` may differ by rank.

    Returns the rows as numpy arrays in rank order on ``dst``, ``None`` on other ranks. Sent in
    messages of ``chunk_rows`` rows (default: about 32 MB), padded to a common length and
    trimmed on arrival, so device memory stays bounded. NCCL needs CUDA tensors; other backends
    (gloo) send from the CPU.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
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
        recv = ([torch.empty(m, width, dtype=torch.uint8, device=device) for _ in range(world)]
                if rank == dst else None)
        dist.gather(send, recv, dst=dst)
        if recv is not None:
            for r in range(world):
                valid = min(max(sizes[r] - start, 0), m)
                if valid:
                    per_rank[r].append(recv[r][:valid].cpu().numpy())
    if rank != dst:
        return None
    return [arr for rows in per_rank for arr in rows]


# -- the method ---------------------------------------------------------------------------------
class FrameStackModule(VideoRecognitionModule):
    """The shared module trained with FrameStack (see the module docstring for every choice).

    ``eta``: fraction of each batch that is stacked (0.5). ``clip_length``: L, the stacked
    length; must equal the training clip's frame count (``None``: take it from the batch).
    ``eps``: eq. (1)'s fallback threshold (1e-5). ``sampling``: ``"even"`` | ``"random"``.
    ``sample_rap``: ``"mean_positive"`` | ``"mean_all"`` (VideoLT's code). ``warmup_epochs``:
    epochs trained without stacking (0, Algorithm 1; VideoLT's script, ``--warm_epoch 0`` with
    ``epoch <= warm_epoch``, trains epoch 0 plain, i.e. 1 here); predictions are recorded
    during warm-up too. ``gather_chunk_rows``: rows per DDP message (``None``: about 32 MB).
    """

    # its loss is the strategy's; mixup would be a second batch transform
    strategies = ("bce", "focal", "ldam_drw", "eql", "cb_loss", "cbs", "srs")

    def __init__(
        self,
        setup: MethodSetup,
        eta: float = 0.5,
        clip_length: int | None = None,
        eps: float = 1e-5,
        sampling: str = "even",
        sample_rap: str = "mean_positive",
        warmup_epochs: int = 0,
        gather_chunk_rows: int | None = None,
        fixed_beta: float | None = None,
    ) -> None:
        if setup.batch_transform is not None:
            raise ValueError("FrameStack is itself the batch transform: drop the strategy's "
                             "batch_transform")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"FrameStack eta must be in [0, 1], got {eta}")
        if clip_length is not None and clip_length < 1:
            raise ValueError(f"FrameStack clip_length must be positive, got {clip_length}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"FrameStack sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if sample_rap not in SAMPLE_RAPS:
            raise ValueError(f"FrameStack sample_rap must be one of {SAMPLE_RAPS}, got "
                             f"{sample_rap!r}")
        if warmup_epochs < 0:
            raise ValueError(f"FrameStack warmup_epochs must be >= 0, got {warmup_epochs}")
        if fixed_beta is not None and not 0.0 <= fixed_beta <= 1.0:
            raise ValueError(f"FrameStack fixed_beta must be in [0, 1] or null, got {fixed_beta}")
        super().__init__(setup)
        num_classes = setup.num_classes
        self.num_classes = num_classes
        self.eta = float(eta)
        self.clip_length = clip_length
        self.eps = float(eps)
        self.sampling = sampling
        self.sample_rap = sample_rap
        self.warmup_epochs = int(warmup_epochs)
        self.gather_chunk_rows = gather_chunk_rows
        self.fixed_beta = fixed_beta
        # the rAP the current epoch stacks with: persistent, so a checkpoint resumes with it
        self.register_buffer("rap", torch.zeros(num_classes, dtype=torch.float32))
        self._records: list[torch.Tensor] = []  # this epoch's packed rows, CPU
        self.last_plan: StackPlan | None = None

    # -- training
    def transform_batch(self, batch: VideoBatch) -> VideoBatch:
        """Record the un-mixed batch's predictions, then stack ``floor(eta B)`` rows."""
        if batch.mask is not None:
            raise ValueError("FrameStack needs unpadded training clips (mask=None)")
        if self.fixed_beta is None:  # a fixed beta needs no rAP
            self.record(batch)
        if self.current_epoch < self.warmup_epochs:
            self.last_plan = None
            return batch
        length = batch.features.shape[1]
        if self.clip_length is not None and self.clip_length != length:
            raise ValueError(f"FrameStack clip_length={self.clip_length} but training clips have "
                             f"{length} frames (dataset.clip_frames): they must be equal")
        plan = plan_stack(batch.targets, self.rap, self.eta, length, self.eps, self.sample_rap,
                          self.fixed_beta)
        features, targets = frame_stack(batch.features, batch.targets, plan, self.sampling)
        self.last_plan = plan
        return replace(batch, features=features, targets=targets)

    @torch.no_grad()
    def record(self, batch: VideoBatch) -> None:
        """Store the un-mixed batch's logits (train mode, as VideoLT's code) compactly on CPU."""
        logits = self(batch.features, batch.mask)
        self._records.append(pack_records(logits, batch.targets, batch.index).cpu())

    def update_rap(self) -> None:
        """rAP from this epoch's records (gathered over ranks, computed on rank 0, broadcast)."""
        local = torch.cat(self._records) if self._records else torch.zeros(
            0, record_width(self.num_classes), dtype=torch.uint8)
        self._records = []
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            chunks = gather_rows(local, dst=0, chunk_rows=self.gather_chunk_rows)
            device = (torch.device("cuda", torch.cuda.current_device())
                      if dist.get_backend() == "nccl" else torch.device("cpu"))
            rap = torch.zeros(self.num_classes, dtype=torch.float32, device=device)
            if chunks is not None:
                rap.copy_(torch.from_numpy(rap_from_records(chunks, self.num_classes)))
            dist.broadcast(rap, src=0)
        else:
            rap = torch.from_numpy(rap_from_records([local.numpy()], self.num_classes))
        self.rap.copy_(rap.to(self.rap))

    def on_train_epoch_start(self) -> None:
        self._records = []
        super().on_train_epoch_start()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # before this epoch's validation, so its checkpoint holds the rAP the next epoch uses
        if self._is_last_train_batch(batch_idx):
            self.update_rap()

    def on_train_epoch_end(self) -> None:
        if self._records:  # the last batch was not recognised (e.g. an iterable loader)
            self.update_rap()
        self.log("train/rAP", self.rap.mean(), sync_dist=True)

    def _is_last_train_batch(self, batch_idx: int) -> bool:
        trainer = self.trainer
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return True
        total = trainer.num_training_batches
        return math.isfinite(total) and batch_idx + 1 >= total
