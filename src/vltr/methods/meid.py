"""MEID: Mixture-of-Experts with Internal Distillation (Li et al., AAAI 2023), two stages.

``stage=1`` trains the first expert on the long-tailed distribution (eq. 2-7, 13)::

    T = FrameEmbedding(X), A = FrameAttention(X), Y = Linear(T (.) A)   (aggregator, classifier)
    Loss1 = L_cls(Y) + lambda_1 L_d(M_head(Y), M_tail(Y))

``stage=2`` freezes it (no gradient, eval mode) and trains the second expert, fed by
class-balanced sampling (the stage's sampler), on the frozen attention ``A`` (eq. 8-12, 14)::

    Y_F = ComplementaryMotionExpert(X, A)
    Loss2 = L_cls(Y + Y_F) + lambda_2 L_d(M'_head(Y_F), M'_tail(Y_F))

Inference (the base class's val/test metrics through :meth:`forward`): ``Y`` in stage 1,
``Y + Y_F`` in stage 2. ``L_cls`` is the strategy's loss (focal in ``method=meid``).

Motion (eq. 10) is always a difference of true adjacent frames of the stored sequence: in
training the batch carries the frame after each sampled frame (``VideoBatch.next_features``,
``dataset.next_frames``, which ``method=meid`` turns on for stage 2), in evaluation the frames
are the whole sequence in order.

Parameter names: expert 1 is ``aggregator.*`` (a
:class:`~vltr.models.attention.FrameAttentionAggregator`: ``embedding`` = eq. 2,
``attention_net`` = eq. 3), ``classifier.*`` (the base class's ``Linear``, eq. 4) and
``necks.*`` (eq. 5-6), identical in both stages, so a stage-2 module loads a stage-1
checkpoint; stage 2 adds ``expert2.*`` and ``necks2.*``. Only trainable parameters reach the
optimiser. Every parameter that requires a gradient is used in every training step (no
unused parameters under DDP). Readings of the paper: ``docs/methods/meid.md``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.data.longtail import group_masks
from vltr.methods.base import MethodSetup, VideoRecognitionModule
from vltr.models.attention import FrameAttentionAggregator
from vltr.models.meid import (
    VARIANCE_OVER,
    ClassGroupNecks,
    ComplementaryMotionExpert,
    variance_distillation_loss,
)

log = logging.getLogger(__name__)


class MEIDModule(VideoRecognitionModule):
    """MEID's first (``stage=1``) or both experts (``stage=2``, expert 1 frozen).

    ``aggregator`` must be a :class:`FrameAttentionAggregator` (expert 1's embedding and
    attention; ``method=meid`` selects ``aggregator=frame_attention``). ``beta``: eq. 8
    (0.5, Table 7); ``distill_weight``: lambda_1 = lambda_2 (0.1); ``neck_dim``: output size
    of each neck (not in the paper); ``variance_over``: what eq. 7's ``Var`` runs over
    (``"batch"``, or ``"features"``); ``expert2_dim``: the second expert's embedding and fused
    size (null: expert 1's embedding size); ``expert2_dropout``: after its embeddings.
    Ablations: ``distill_weight=0`` trains without eq. 7 (no necks are built);
    ``use_motion=False`` gives expert 2 no motion branch (eq. 10-11); ``complementary=False``
    pools expert 2's frames without eq. 8's ``R``. ``stage2_lr_scale``: stage 2's learning
    rate relative to the schedule's (the paper's 1e-4 after 1e-3).

    Head / tail classes for the necks: the dataset's groups from the training counts (head
    ``n > head_min``, tail ``n <= tail_max``); medium classes are in neither neck. Without a
    head or a tail class there are no necks and ``L_d = 0``.
    """

    # the paper's focal loss, its control bce, and the image-LT losses; samplers and mixing are
    # the stages' (stage 2 samples class-balanced)
    strategies = ("focal", "bce", "ldam_drw", "eql", "cb_loss", "mixup")

    def __init__(
        self,
        setup: MethodSetup,
        stage: int = 1,
        beta: float = 0.5,
        distill_weight: float = 0.1,
        neck_dim: int = 256,
        variance_over: str = "batch",
        expert2_dim: int | None = None,
        expert2_dropout: float = 0.0,
        use_motion: bool = True,
        complementary: bool = True,
        stage2_lr_scale: float = 0.1,
    ) -> None:
        aggregator, batch_transform = setup.aggregator, setup.batch_transform
        if not isinstance(aggregator, FrameAttentionAggregator):
            raise ValueError(
                f"MEID needs aggregator=frame_attention (its expert 1 is a "
                f"FrameAttentionAggregator), got {type(aggregator).__name__}"
            )
        if stage not in (1, 2):
            raise ValueError(f"MEID stage must be 1 or 2, got {stage}")
        if variance_over not in VARIANCE_OVER:
            raise ValueError(f"variance_over must be one of {VARIANCE_OVER}, got {variance_over!r}")
        if distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
        if batch_transform is not None and getattr(batch_transform, "level", "frames") != "frames":
            raise ValueError(
                "MEID supports frame-level batch transforms only (its two experts "
                "have no single embedding to mix)"
            )
        if stage2_lr_scale <= 0:
            raise ValueError(f"stage2_lr_scale must be > 0, got {stage2_lr_scale}")
        super().__init__(setup)
        self.stage2_lr_scale = float(stage2_lr_scale)
        num_classes, head_min, tail_max = setup.num_classes, setup.head_min, setup.tail_max
        class_counts = setup.class_counts
        self.stage = int(stage)
        self.distill_weight = float(distill_weight)
        self.variance_over = variance_over
        groups = group_masks(np.asarray(class_counts), head_min=head_min, tail_max=tail_max)
        head, tail = np.flatnonzero(groups["head"]), np.flatnonzero(groups["tail"])
        has_groups = len(head) > 0 and len(tail) > 0
        if not has_groups:
            log.warning(
                "MEID: %d head and %d tail classes: no necks, distillation loss off",
                len(head),
                len(tail),
            )
        # no necks without a distillation loss: every parameter keeps a gradient (DDP)
        has_groups = has_groups and self.distill_weight > 0
        self.necks = ClassGroupNecks(head.tolist(), tail.tolist(), neck_dim) if has_groups else None
        self.expert2: ComplementaryMotionExpert | None = None
        self.necks2: ClassGroupNecks | None = None
        if self.stage == 2:
            input_dim = aggregator.input_dim
            embed = aggregator.output_dim if expert2_dim is None else expert2_dim
            self.expert2 = ComplementaryMotionExpert(
                input_dim,
                num_classes,
                embed_dim=embed,
                beta=beta,
                dropout=expert2_dropout,
                use_motion=use_motion,
                complementary=complementary,
            )
            self.necks2 = (
                ClassGroupNecks(head.tolist(), tail.tolist(), neck_dim) if has_groups else None
            )
            for module in self.expert1_modules():
                module.requires_grad_(False)

    # -- structure
    def expert1_modules(self) -> list[nn.Module]:
        """Expert 1: embedding + attention (aggregator), eq. 4's Linear, its necks."""
        return [m for m in (self.aggregator, self.classifier, self.necks) if m is not None]

    def compile_targets(self) -> list[nn.Module]:
        # expert 1 calls the aggregator's attention network and embedding, not its forward
        agg = self.aggregator
        parts: list[nn.Module] = [agg.attention_net, agg.embedding]
        return parts if self.expert2 is None else [*parts, self.expert2]

    def train(self, mode: bool = True) -> MEIDModule:
        # stage 2: the frozen expert stays in eval mode (its dropout off) while expert 2 trains
        super().train(mode)
        if self.stage == 2:
            for module in self.expert1_modules():
                module.train(False)
        return self

    # -- model
    def expert1(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert 1 on float frames: ``(Y [B, C], A [B, T])`` (eq. 2-4)."""
        agg = self.aggregator
        attention = agg.attention(x, mask)  # eq. 3 (zeroes masked frames itself)
        frames = x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)
        logits = self.classifier(agg.pool(agg.embedding(frames), attention, mask))  # eq. 4
        return logits, attention

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = features.float()
        logits, attention = self.expert1(x, mask)
        if self.expert2 is None:
            return logits
        return logits + self.expert2(x, attention, mask)

    def distillation(self, logits: torch.Tensor, necks: ClassGroupNecks | None) -> torch.Tensor:
        """Eq. 5-7 on a classification embedding ``[B, C]`` (0 without necks)."""
        if necks is None:
            return logits.new_zeros(())
        m_head, m_tail = necks(logits)
        return variance_distillation_loss(m_head, m_tail, over=self.variance_over)

    def transform_batch(self, batch: VideoBatch) -> VideoBatch:
        """Frame-level mixing (``strategy=mixup``) mixes the frames and the frames after them
        with the same pairs and weights, so that mixed motion stays a difference of the mixed
        video's adjacent frames."""
        if batch.next_features is None or self.batch_transform is None:
            return super().transform_batch(batch)
        t = batch.features.shape[1]
        both = replace(
            batch,
            features=torch.cat([batch.features, batch.next_features], dim=1),
            next_features=None,
        )
        mixed = super().transform_batch(both)
        return replace(mixed, features=mixed.features[:, :t], next_features=mixed.features[:, t:])

    def training_loss(self, batch: VideoBatch) -> torch.Tensor:
        x, mask = batch.features.float(), batch.mask
        if self.expert2 is None:  # eq. 13
            logits, _ = self.expert1(x, mask)
            cls_loss = self.loss_fn(logits, batch.targets)
            distill = self.distillation(logits, self.necks)
        else:  # eq. 14, expert 1 frozen
            next_frames = batch.next_features
            if self.expert2.use_motion and next_frames is None:
                raise ValueError(
                    "MEID stage 2 needs the stored frame after each training frame "
                    "for its motion features (dataset.next_frames=true, which "
                    "method=meid sets in stage 2)"
                )
            with torch.no_grad():
                logits, attention = self.expert1(x, mask)
            logits_f = self.expert2(
                x, attention, mask, None if next_frames is None else next_frames.float()
            )
            cls_loss = self.loss_fn(logits + logits_f, batch.targets)
            distill = self.distillation(logits_f, self.necks2)
        self.log_dict(
            {"train/cls_loss": cls_loss.detach(), "train/distill_loss": distill.detach()},
            on_step=False,
            on_epoch=True,
            batch_size=len(batch),
            sync_dist=True,
        )
        return cls_loss + self.distill_weight * distill

    # -- optimisation
    def configure_optimizers(self) -> Any:
        # stage 2: expert 1 (requires_grad False) is left out of the optimiser entirely
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.stage == 2:  # the schedule's lr, scaled (paper: 1e-3 -> 1e-4)
            for group in optimizer.param_groups:
                group["lr"] *= self.stage2_lr_scale
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
