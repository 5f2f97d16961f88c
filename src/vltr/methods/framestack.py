"""FrameStack (VideoLT, Zhang et al. ICCV 2021, §4 and Algorithm 1) as a LightningModule.

FrameStack re-samples training data at the frame level: pairs of videos of a batch are cut
and concatenated along time, taking *fewer* frames from the video whose classes the network
already handles well, as measured by a running AP (rAP) per class on the training set.

Per training step (:meth:`FrameStackModule.transform_batch`, on frame features before any
aggregator, so it works with every aggregator; the stacking itself is
:mod:`vltr.strategies.framestack`, the compact records and rAP :mod:`vltr.evaluation.running_ap`):

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
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from vltr.data.datamodule import VideoBatch
from vltr.evaluation.running_ap import pack_records, rap_from_records, record_width
from vltr.methods.base import MethodSetup, VideoRecognitionModule
from vltr.strategies.framestack import (
    SAMPLE_RAPS,
    SAMPLINGS,
    StackPlan,
    frame_stack,
    plan_stack,
)
from vltr.utils.distributed import gather_rows


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
            raise ValueError(
                "FrameStack is itself the batch transform: drop the strategy's batch_transform"
            )
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"FrameStack eta must be in [0, 1], got {eta}")
        if clip_length is not None and clip_length < 1:
            raise ValueError(f"FrameStack clip_length must be positive, got {clip_length}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"FrameStack sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if sample_rap not in SAMPLE_RAPS:
            raise ValueError(
                f"FrameStack sample_rap must be one of {SAMPLE_RAPS}, got {sample_rap!r}"
            )
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
            raise ValueError(
                f"FrameStack clip_length={self.clip_length} but training clips have "
                f"{length} frames (dataset.clip_frames): they must be equal"
            )
        plan = plan_stack(
            batch.targets, self.rap, self.eta, length, self.eps, self.sample_rap, self.fixed_beta
        )
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
        local = (
            torch.cat(self._records)
            if self._records
            else torch.zeros(0, record_width(self.num_classes), dtype=torch.uint8)
        )
        self._records = []
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            chunks = gather_rows(local, dst=0, chunk_rows=self.gather_chunk_rows)
            device = (
                torch.device("cuda", torch.cuda.current_device())
                if dist.get_backend() == "nccl"
                else torch.device("cpu")
            )
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
