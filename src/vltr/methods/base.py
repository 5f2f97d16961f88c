"""The shared LightningModule: aggregator + classifier head + loss, one train/val/test loop.

Methods that change the architecture or the training procedure (FrameStack, MOVE, MEDC, MEID)
subclass it and override :meth:`transform_batch`, :meth:`training_loss` or :meth:`forward`;
everything else (metrics over the whole split, gathered across ranks; logging names;
optimiser and scheduler from config) stays here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.metrics import VideoLTMetrics

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# (input_dim, num_classes) -> classifier module: a ``head`` config with ``_partial_: true``
HeadFactory = Callable[[int, int], nn.Module]


class VideoRecognitionModule(L.LightningModule):
    """Aggregate frames, classify, optimise ``loss``; evaluate with VideoLT's metrics.

    ``head`` builds the classifier from ``(aggregator.output_dim, num_classes)`` (default: one
    ``Linear``). ``optimizer`` and ``scheduler`` are partials from config (``torch.optim.Adam``,
    ``MultiStepLR``: VideoLT trains with Adam and steps the LR down at fixed epochs).
    """

    def __init__(
        self,
        aggregator: nn.Module,
        num_classes: int,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        class_counts: Sequence[int],
        head_min: int = 500,
        tail_max: int = 100,
        scheduler: SchedulerFactory | None = None,
        batch_transform: Any | None = None,
        head: HeadFactory | None = None,
    ) -> None:
        super().__init__()
        self.aggregator = aggregator
        # ``head`` (config group ``head``): linear, or VideoLT's non-linear classifier
        self.classifier = (head(aggregator.output_dim, num_classes) if head is not None
                           else nn.Linear(aggregator.output_dim, num_classes))
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # a strategy's training-time mixing (e.g. FeatureMixup); level "frames" mixes the input
        # frames, level "embedding" the aggregated video embeddings
        self.batch_transform = batch_transform
        counts = np.asarray(class_counts)
        self.register_buffer("class_counts", torch.as_tensor(counts, dtype=torch.long),
                             persistent=False)
        self.val_metrics = VideoLTMetrics(counts, head_min=head_min, tail_max=tail_max)
        self.test_metrics = VideoLTMetrics(counts, head_min=head_min, tail_max=tail_max)
        self.per_class_ap: dict[str, np.ndarray] = {}

    # -- model
    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # batches arrive in the store's dtype (float16 by default): cast on the device, after
        # the copy, so workers and host-to-device transfers move half the bytes
        return self.classifier(self.aggregator(features.float(), mask))

    # -- hooks for methods
    def transform_batch(self, batch: VideoBatch) -> VideoBatch:
        """Training-time batch transform before the model: frame-level mixing, or what a method
        (FrameStack, MOVE) overrides it with."""
        mixer = self.batch_transform
        if mixer is None or getattr(mixer, "level", "frames") != "frames":
            return batch
        if batch.mask is not None:
            raise ValueError("frame-level mixing of masked batches is not defined")
        features, targets = mixer.mix(batch.features.float(), batch.targets)
        return replace(batch, features=features, targets=targets)

    def training_loss(self, batch: VideoBatch) -> torch.Tensor:
        mixer = self.batch_transform
        if mixer is not None and getattr(mixer, "level", "frames") == "embedding":
            embedding = self.aggregator(batch.features.float(), batch.mask)
            embedding, targets = mixer.mix(embedding, batch.targets)
            return self.loss_fn(self.classifier(embedding), targets)
        logits = self(batch.features, batch.mask)
        return self.loss_fn(logits, batch.targets)

    def on_train_epoch_start(self) -> None:
        # losses that change over training (LDAM's deferred re-weighting) follow the epoch
        set_epoch = getattr(self.loss_fn, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    # -- loops
    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(self.transform_batch(batch))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch), sync_dist=True)
        return loss

    def _eval_step(self, batch: VideoBatch, stage: str) -> None:
        logits = self(batch.features, batch.mask)
        loss = self.loss_fn(logits, batch.targets)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(batch))
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits.float(), batch.targets, batch.index)

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        # compute() gathers every rank's predictions and drops the sampler's padding duplicates
        result = metrics.compute()
        # identical on every rank already; sync_dist only averages equal values (and keeps
        # Lightning from warning about epoch-level logging without it)
        self.log_dict({f"{stage}/{k}": v for k, v in result.items()}, sync_dist=True)
        self.per_class_ap[stage] = metrics.per_class_ap
        metrics.reset()

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: VideoBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor:
        return self(batch.features, batch.mask)

    # -- optimisation
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "epoch"}}
