"""The shared LightningModule: aggregator + classifier head + loss, one train/val/test loop.

Methods that change the architecture or the training procedure (FrameStack, MOVE, MEDC, MEID)
subclass it and override :meth:`transform_batch`, :meth:`training_loss` or :meth:`forward`;
everything else (metrics over the whole split, gathered across ranks; logging names;
optimiser and scheduler from config) stays here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.data.longtail import label_distribution
from vltr.evaluation.metrics import VideoLTMetrics
from vltr.models.heads import init_prior_bias

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# (input_dim, num_classes) -> classifier module: a ``head`` config with ``_partial_: true``
HeadFactory = Callable[[int, int], nn.Module]


class MethodSetup:
    """What every method is built from besides its own hyper-parameters, made by
    :func:`vltr.training.builders.build_module` from the run's groups: the ``aggregator`` and
    ``head``
    (a factory ``(input_dim, num_classes) -> module``), the strategy's ``loss`` and
    ``batch_transform``, the schedule's ``optimizer`` and ``scheduler`` factories, and the
    training class counts with the group thresholds. A method's config then holds only its own
    hyper-parameters, which the config validator checks against its constructor.

    A plain class, not a dataclass: Hydra's ``instantiate`` would turn a dataclass argument
    into a structured config (and the modules inside it with it).
    """

    def __init__(
        self,
        aggregator: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        class_counts: Sequence[int],
        head: HeadFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        head_min: int = 500,
        tail_max: int = 100,
        batch_transform: Any | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.loss = loss
        self.optimizer = optimizer
        self.class_counts = list(class_counts)
        self.head = head
        self.scheduler = scheduler
        self.head_min = head_min
        self.tail_max = tail_max
        self.batch_transform = batch_transform

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    def classifier(self, input_dim: int) -> nn.Module:
        """The head for an ``input_dim`` embedding (one ``Linear`` when no head was chosen)."""
        if self.head is None:
            return nn.Linear(input_dim, self.num_classes)
        return self.head(input_dim, self.num_classes)


class VideoRecognitionModule(L.LightningModule):
    """Aggregate frames, classify, optimise ``loss``; evaluate with VideoLT's metrics.

    Built from a :class:`MethodSetup`. ``strategies``: the strategies (``strategy=...``) a
    method composes with, ``None`` for all; the builder refuses others in one line.
    """

    strategies: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, setup: MethodSetup) -> None:
        super().__init__()
        self.aggregator = setup.aggregator
        self.classifier = self.build_classifier(setup)
        self.loss_fn = setup.loss
        self.optimizer_factory = setup.optimizer
        self.scheduler_factory = setup.scheduler
        # a strategy's training-time mixing (e.g. FeatureMixup); level "frames" mixes the input
        # frames, level "embedding" the aggregated video embeddings
        self.batch_transform = setup.batch_transform
        counts = np.asarray(setup.class_counts)
        self.register_buffer(
            "class_counts", torch.as_tensor(counts, dtype=torch.long), persistent=False
        )
        self.val_metrics = VideoLTMetrics(counts, head_min=setup.head_min, tail_max=setup.tail_max)
        self.test_metrics = VideoLTMetrics(counts, head_min=setup.head_min, tail_max=setup.tail_max)
        self.per_class_ap: dict[str, np.ndarray] = {}

    def build_classifier(self, setup: MethodSetup) -> nn.Module | None:
        """The head on the aggregator's output; a method whose experts carry their own heads
        (MEDC) returns None, so that no parameter goes unused."""
        head = setup.classifier(setup.aggregator.output_dim)
        if getattr(head, "prior_bias_init", False):
            init_prior_bias(head, label_distribution(setup.class_counts))
        return head

    def compile_targets(self) -> list[nn.Module]:
        """The modules whose ``forward`` a training step calls on frames: what ``compile=true``
        compiles (the aggregator here; methods that call parts of it list those)."""
        return [self.aggregator]

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
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch),
            sync_dist=True,
        )
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
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
