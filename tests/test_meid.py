"""MEID (vltr.methods.meid, vltr.models.meid): shapes for any T, the frozen first expert in
stage 2, eq. 7/8/10 on hand examples, and both stages end to end on tiny stores."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from vltr.data.datamodule import VideoBatch, VideoFeatureDataModule, VideoFeatureDataset
from vltr.data.store import FeatureStore, write_store
from vltr.methods.base import MethodSetup
from vltr.methods.meid import MEIDModule
from vltr.models.aggregators import NonLinearFrameAggregator
from vltr.models.attention import FrameAttentionAggregator
from vltr.models.meid import (
    ClassGroupNecks,
    ComplementaryMotionExpert,
    complementary_weights,
    motion_features,
    variance_distillation_loss,
)
from vltr.strategies.losses import FocalLoss
from vltr.strategies.mixup import FeatureMixup
from vltr.training.evaluate import evaluate
from vltr.training.train import train

from conftest import TINY_OVERRIDES

# unit tests call training_loss (which logs) without a Trainer
pytestmark = pytest.mark.filterwarnings("ignore:.*reference is not registered on the model")

# head_min=50, tail_max=10: classes 0, 1 head; 2, 3 medium; 4, 5 tail
COUNTS = [200, 80, 30, 20, 8, 3]
D = 12


def make_module(stage: int = 1, dropout: float = 0.0, **kwargs: object) -> MEIDModule:
    agg = FrameAttentionAggregator(D, attention_dim=8, embed_dim=10, dropout=dropout)
    return MEIDModule(
        meid_setup(agg, lr=1e-2), stage=stage, neck_dim=4, expert2_dropout=dropout, **kwargs
    )


def meid_setup(
    agg: torch.nn.Module,
    counts: list[int] = COUNTS,
    lr: float = 1e-3,
    batch_transform: object = None,
) -> MethodSetup:
    return MethodSetup(
        aggregator=agg,
        loss=FocalLoss(),
        class_counts=counts,
        optimizer=functools.partial(torch.optim.Adam, lr=lr),
        head_min=50,
        tail_max=10,
        batch_transform=batch_transform,
    )


def batch_of(b: int = 6, t: int = 20, seed: int = 0) -> VideoBatch:
    """A training batch: ``t`` frames per video and the frame after each (next_features)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(b, len(COUNTS))
    targets[torch.arange(b), torch.arange(b) % len(COUNTS)] = 1.0
    video = torch.randn(b, t + 1, D, generator=g).half()
    return VideoBatch(
        features=video[:, :t], targets=targets, index=torch.arange(b), next_features=video[:, 1:]
    )


def stage2_from_stage1(seed: int = 0, **kwargs: object) -> MEIDModule:
    torch.manual_seed(seed)
    s1 = make_module(1, **kwargs)
    s2 = make_module(2, **kwargs)
    result = s2.load_state_dict(s1.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(
        k.startswith(("expert2.", "necks2.")) for k in result.missing_keys
    )
    return s2


# -- shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [150, 200])
def test_shapes_any_number_of_frames(t: int) -> None:
    batch = batch_of(b=3, t=t)
    x = batch.features.float()
    s1, s2 = make_module(1).eval(), stage2_from_stage1().eval()
    assert s1(batch.features).shape == (3, len(COUNTS))
    logits, attention = s2.expert1(x)
    assert logits.shape == (3, len(COUNTS)) and attention.shape == (3, t)
    assert s2.expert2 is not None
    assert s2.expert2.features(x, attention).shape == (3, 10)
    assert s2(batch.features).shape == (3, len(COUNTS))
    # inference in stage 2 is Y + Y_F
    assert torch.allclose(s2(batch.features), logits + s2.expert2(x, attention), atol=1e-6)
    assert motion_features(x)[0].shape == (3, t, D)
    # masked: padding frames change nothing, even when they hold NaN
    mask = torch.ones(3, t, dtype=torch.bool)
    mask[:, t - 10 :] = False
    padded = x.clone()
    padded[:, t - 10 :] = float("nan")
    assert torch.allclose(s2(padded, mask), s2(x[:, : t - 10]), atol=1e-5)
    next_padded = batch.next_features.float().clone()
    next_padded[:, t - 10 :] = float("nan")
    assert torch.isfinite(
        s2.training_loss(
            VideoBatch(padded, batch.targets, batch.index, mask, next_features=next_padded)
        )
    )


def test_needs_frame_attention_aggregator() -> None:
    with pytest.raises(ValueError, match="frame_attention"):
        MEIDModule(meid_setup(NonLinearFrameAggregator(D, hidden_dim=8)))
    with pytest.raises(ValueError, match="stage"):
        make_module(3)


# -- stage 2 freezes expert 1 --------------------------------------------------------------


def test_stage2_step_changes_only_expert2() -> None:
    module = stage2_from_stage1(dropout=0.5)
    module.train()
    # expert 1 in eval mode (its dropout off) while expert 2 trains
    assert all(not m.training for e in module.expert1_modules() for m in e.modules())
    assert module.expert2 is not None and module.expert2.training
    names = {id(p): n for n, p in module.named_parameters()}
    expert1 = {
        n
        for n, _ in module.named_parameters()
        if n.startswith(("aggregator.", "classifier.", "necks."))
    }
    expert2 = {n for n, _ in module.named_parameters() if n.startswith(("expert2.", "necks2."))}
    assert any(n.startswith("aggregator.attention_net.") for n in expert1)
    assert any(n.startswith("necks2.") for n in expert2)
    assert expert1 | expert2 == set(names.values())

    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    optimised = {names[id(p)] for group in optimizer.param_groups for p in group["params"]}
    assert optimised == expert2
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    loss = module.training_loss(module.transform_batch(batch_of()))
    loss.backward()
    # every trainable parameter is used (DDP without find_unused_parameters)
    assert all(p.grad is not None for n, p in module.named_parameters() if n in expert2)
    assert all(p.grad is None for n, p in module.named_parameters() if n in expert1)
    optimizer.step()
    after = dict(module.named_parameters())
    for n in expert1:
        assert torch.equal(after[n], before[n]), n
    for n in expert2:
        assert not torch.equal(after[n], before[n]), n


def test_stage1_trains_everything() -> None:
    torch.manual_seed(0)
    module = make_module(1)
    module.train()
    loss = module.training_loss(batch_of())
    loss.backward()
    assert all(p.requires_grad and p.grad is not None for p in module.parameters())
    assert not any(n.startswith(("expert2.", "necks2.")) for n, _ in module.named_parameters())


# -- equations on hand examples ------------------------------------------------------------


def test_complementary_weights_formula() -> None:
    a = torch.tensor([[0.5, 0.0, 1.0, 0.25]])
    expected = torch.tensor([[1.0, 2.0, 2 / 3, 4 / 3]])
    assert torch.allclose(complementary_weights(a, beta=0.5), expected)
    mask = torch.tensor([[True, True, False, True]])
    r = complementary_weights(a, beta=0.5, mask=mask)
    assert torch.allclose(r, torch.tensor([[1.0, 2.0, 0.0, 4 / 3]]))
    assert torch.allclose(complementary_weights(a, beta=0.25), 1 / (a + 0.25))
    with pytest.raises(ValueError):
        complementary_weights(a, beta=0.0)


def test_motion_features_formula() -> None:
    x = torch.tensor([[[1.0, 2.0], [4.0, 0.0], [6.0, 5.0]]])
    x_m, valid = motion_features(x)
    assert valid is None
    expected = torch.tensor([[[3.0, -2.0], [2.0, 5.0], [11 / 3, 7 / 3]]])
    assert torch.allclose(x_m, expected)
    # last frame padded (NaN): its difference is dropped, the mean is over the real frames
    padded = x.clone()
    padded[0, 2] = float("nan")
    mask = torch.tensor([[True, True, False]])
    x_m, valid = motion_features(padded, mask)
    assert valid is not None and valid.tolist() == [[True, False, True]]
    assert torch.allclose(x_m, torch.tensor([[[3.0, -2.0], [0.0, 0.0], [2.5, 1.0]]]))


def test_second_expert_is_the_per_frame_equations() -> None:
    """Eq. 9-12 frame by frame (R-weighted embedding, motion rows, Linear on the concatenation,
    mean over frames, Linear) equals the module's pooled computation."""
    torch.manual_seed(0)
    expert = ComplementaryMotionExpert(D, num_classes=5, embed_dim=7, fused_dim=6, beta=0.5)
    x = torch.randn(2, 9, D)
    a = torch.rand(2, 9)
    r = 1 / (a + 0.5)
    x_c = expert.embedding(x) * r.unsqueeze(-1)  # eq. 9
    x_m = torch.cat([x[:, 1:] - x[:, :-1], x.mean(dim=1, keepdim=True)], dim=1)  # eq. 10
    x_f = expert.fuse(torch.cat([x_c, expert.motion_embedding(x_m)], dim=-1))  # eq. 11
    y_f = expert.classifier(x_f.mean(dim=1))  # eq. 12
    assert torch.allclose(expert(x, a), y_f, atol=1e-5)


def test_distillation_loss_zero_iff_equal_variances() -> None:
    torch.manual_seed(0)
    m = torch.randn(8, 4)
    for over in ("batch", "features"):
        # same variance, different mean (negated rows: bitwise-equal variances)
        assert variance_distillation_loss(m, -m, over=over).item() == 0.0
        assert variance_distillation_loss(m, m + 3.0, over=over).item() == pytest.approx(
            0.0, abs=1e-5
        )
        assert variance_distillation_loss(m, 2 * m, over=over).item() > 0.1
    # hand value: batch variances [1, 1] vs [0, 0] -> ||[1, 1]||_2 = sqrt(2)
    head = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    assert variance_distillation_loss(head, torch.zeros(2, 2)).item() == pytest.approx(2**0.5)
    # per-video variances [1, 0] vs [0, 0] -> 1
    rows = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert variance_distillation_loss(
        rows, torch.zeros(2, 2), over="features"
    ).item() == pytest.approx(1.0)
    # one video: finite (population variance)
    assert variance_distillation_loss(m[:1], 2 * m[:1]).item() == 0.0


def test_necks_split_head_and_tail_classes() -> None:
    module = make_module(1)
    assert module.necks is not None
    assert module.necks.head_index.tolist() == [0, 1]
    assert module.necks.tail_index.tolist() == [4, 5]
    necks = ClassGroupNecks([0, 1], [4, 5], neck_dim=3)
    logits = torch.randn(5, 6)
    m_head, m_tail = necks(logits)
    assert torch.allclose(m_head, necks.head(logits[:, :2]))
    assert torch.allclose(m_tail, necks.tail(logits[:, 4:]))
    # medium classes (2, 3) do not reach the necks
    changed = logits.clone()
    changed[:, 2:4] += 100.0
    assert torch.equal(necks(changed)[0], m_head) and torch.equal(necks(changed)[1], m_tail)
    # no tail class: no necks, L_d = 0
    flat = MEIDModule(
        meid_setup(FrameAttentionAggregator(D, attention_dim=4), counts=[200, 100, 60])
    )
    assert flat.necks is None
    assert flat.distillation(torch.randn(4, 3), flat.necks).item() == 0.0


# -- config and end to end -----------------------------------------------------------------

E2E = [
    o for o in TINY_OVERRIDES if not o.startswith(("aggregator.hidden_dim", "trainer.max_epochs"))
]
SMALL = ["method=meid", "logger=none", "aggregator.attention_dim=16", "method.neck_dim=8"]


def test_config_two_stages(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("method=meid", "schedule=meid")
    assert cfg.aggregator._target_.endswith("FrameAttentionAggregator")
    assert cfg.method._target_ == "vltr.methods.meid.MEIDModule"
    assert cfg.trainer.max_epochs == 100
    assert list(cfg.schedule.scheduler.milestones) == [30, 60]
    assert cfg.schedule.optimizer.lr == pytest.approx(1e-3)
    assert cfg.method.stage2_lr_scale == pytest.approx(0.1)  # stage 2: 1e-4
    stages = cfg.method.stages
    assert [s.method.stage for s in stages] == [1, 2]
    # the loss is the strategy's (focal by default; strategy=bce is the control's)
    assert cfg.strategy.name == "focal"
    assert all("strategy" not in s or "loss" not in s.strategy for s in stages)
    assert compose_cfg("method=meid", "strategy=bce").strategy.name == "bce"
    sampler = stages[1].strategy.sampler
    assert sampler._target_.endswith("ClassAwareSampler") and sampler.power == 0.0
    assert sampler.seed == cfg.seed
    assert "strategy" not in stages[0]
    # an explicit aggregator still wins over the method's default
    assert compose_cfg("method=meid", "aggregator=nonlinear").aggregator._target_.endswith(
        "NonLinearFrameAggregator"
    )


def expert1_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k: v for k, v in state.items() if k.startswith(("aggregator.", "classifier.", "necks."))
    }


def test_two_stages_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(*E2E, *SMALL, "trainer.max_epochs=2")
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["stages"]) == {"stage1", "stage2"}
    assert summary["test"] == result["test"] and 0.0 < result["test"]["mAP"] <= 1.0
    s1 = torch.load(summary["stages"]["stage1"]["best_ckpt"], weights_only=False)
    s2 = torch.load(result["best_ckpt"], weights_only=False)
    assert Path(result["best_ckpt"]).is_relative_to(out / "stage2")
    assert not any(k.startswith("expert2.") for k in s1["state_dict"])
    assert any(k.startswith("expert2.") for k in s2["state_dict"])
    # expert 1 came from stage 1's best checkpoint and did not move in stage 2
    e1, e2 = expert1_tensors(s1["state_dict"]), expert1_tensors(s2["state_dict"])
    assert e1.keys() == e2.keys() and any(k.startswith("necks.") for k in e1)
    assert all(torch.equal(e1[k], e2[k]) for k in e1)
    run2 = s2["vltr"]["config"]
    assert run2["method"]["stage"] == 2
    # stage 2 trains at stage2_lr_scale x the schedule's lr
    lrs = [g["lr"] for g in s2["optimizer_states"][0]["param_groups"]]
    assert lrs and all(lr == pytest.approx(0.1 * cfg.schedule.optimizer.lr) for lr in lrs)
    assert run2["strategy"]["sampler"]["_target_"].endswith("ClassAwareSampler")
    assert run2["strategy"]["loss"]["_target_"].endswith("FocalLoss")
    assert s1["vltr"]["config"]["strategy"].get("sampler") is None
    # the stage-2 checkpoint re-evaluates on its own (vltr-eval): same test metrics
    ev = evaluate(
        compose_cfg(
            f"ckpt_path={result['best_ckpt']}",
            "splits=[test]",
            "trainer.enable_progress_bar=false",
            config_name="eval",
        )
    )
    assert ev["test"]["mAP"] == pytest.approx(result["test"]["mAP"], abs=1e-6)


def test_start_stage_2_from_stage1_checkpoint(compose_cfg: Callable[..., DictConfig]) -> None:
    stage1 = train(compose_cfg(*E2E, *SMALL, "trainer.max_epochs=1", "method.stages=null"))
    ckpt = stage1["best_ckpt"]
    assert ckpt and Path(ckpt).is_file()
    cfg = compose_cfg(*E2E, *SMALL, "trainer.max_epochs=1", "start_stage=2", f"init_ckpt={ckpt}")
    result = train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert set(summary["stages"]) == {"stage2"}
    s1 = torch.load(ckpt, weights_only=False)["state_dict"]
    s2 = torch.load(result["best_ckpt"], weights_only=False)["state_dict"]
    e1, e2 = expert1_tensors(s1), expert1_tensors(s2)
    assert e1.keys() == e2.keys() and all(torch.equal(e1[k], e2[k]) for k in e1)


def test_two_hundred_frames_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        *E2E, *SMALL, "trainer.max_epochs=1", "features.frames=200", "dataset.clip_frames=200"
    )
    result = train(cfg)
    assert result["info"].frames == 200
    assert set(json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["stages"]) == {
        "stage1",
        "stage2",
    }
    assert 0.0 < result["test"]["mAP"] <= 1.0


# -- motion from true adjacent frames (eq. 10) ---------------------------------------------


def frame_store(path: Path, n: int = 12, t: int = 10, d: int = 3) -> tuple[Path, np.ndarray]:
    """A real store whose consecutive frames all differ: frame ``f`` of video ``v`` holds
    ``100 v + f`` in its first dimension (random elsewhere)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    x[:, :, 0] = 100 * np.arange(n)[:, None] + np.arange(t)[None, :]
    path = write_store(
        path,
        x,
        labels=[[i % 2] for i in range(n)],
        class_names=["a", "b"],
        splits={"train": range(n), "val": [0, 1], "test": [2, 3]},
        dtype="float32",
    )
    return path, x


# in process; a worker writing into the shared batch buffers; the train split resident in memory
@pytest.mark.parametrize("workers,resident", [(0, None), (1, None), (0, "cpu")])
def test_training_motion_rows_are_true_adjacent_differences(
    tmp_path: Path, workers: int, resident: str | None
) -> None:
    path, x = frame_store(tmp_path / "frames.h5")
    t = x.shape[1]
    dm = VideoFeatureDataModule(
        name="f",
        path=str(path),
        clip_frames=30,
        batch_size=12,
        num_workers=workers,
        next_frames=True,
        resident=resident,
        groups={"head_min": 5, "tail_max": 1},
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.next_features is not None and batch.next_features.shape == batch.features.shape
    for row, v in enumerate(batch.index.tolist()):
        frame = (batch.features[row, :, 0] - 100 * v).round().long()
        # 30 draws from 10 frames: repeats are certain, yet every frame has a true successor
        assert len(set(frame.tolist())) < 30 and int(frame.max()) <= t - 2
        np.testing.assert_array_equal(batch.features[row].numpy(), x[v, frame.numpy()])
        np.testing.assert_array_equal(batch.next_features[row].numpy(), x[v, frame.numpy() + 1])
    x_m, _ = motion_features(batch.features.float(), next_frames=batch.next_features.float())
    rows = x_m[:, :-1]  # the last row is the mean of the frames
    assert not bool((rows == 0).all(dim=-1).any())  # no duplicate-frame zeros
    # what the clip's own differences gave before: repeated draws are exact-zero rows
    clip_rows = motion_features(batch.features.float())[0][:, :-1]
    assert bool((clip_rows == 0).all(dim=-1).any())
    # evaluation batches: the whole sequence, no successor frames needed
    val = next(iter(dm.val_dataloader()))
    assert val.next_features is None and val.features.shape[1] == t


def test_training_and_evaluation_compute_motion_the_same_way(tmp_path: Path) -> None:
    path, x = frame_store(tmp_path / "frames.h5")
    video = torch.from_numpy(x[:1])
    eval_rows = motion_features(video)[0][0, :-1]  # the whole sequence: T - 1 differences
    assert not bool((eval_rows == 0).all(dim=-1).any())
    # the training rule at every frame index that has a successor gives exactly those rows
    idx = torch.arange(video.shape[1] - 1)
    train_rows = motion_features(video[:, idx], next_frames=video[:, idx + 1])[0][0, :-1]
    assert torch.equal(train_rows, eval_rows)
    # a sampled clip's rows are a subset of the evaluation rows
    ds = VideoFeatureDataset(FeatureStore(path), "train", clip_frames=7, next_frames=True)
    sample = ds[0]
    assert sample.next_features is not None
    clip_rows = torch.from_numpy(sample.next_features - sample.features)
    assert all(bool((eval_rows == row).all(dim=-1).any()) for row in clip_rows)


def test_stage2_training_needs_the_next_frames() -> None:
    module = stage2_from_stage1()
    batch = batch_of()
    with pytest.raises(ValueError, match="dataset.next_frames=true"):
        module.training_loss(replace(batch, next_features=None))
    # the motion branch sees the true successors, not the clip's neighbours
    torch.manual_seed(0)
    a = module.training_loss(batch)
    shuffled = replace(batch, next_features=batch.next_features.flip(1))
    torch.manual_seed(0)
    assert not torch.allclose(a, module.training_loss(shuffled))
    # without the motion branch the successors are not needed
    no_motion = stage2_from_stage1(use_motion=False)
    assert torch.isfinite(no_motion.training_loss(replace(batch, next_features=None)))


def test_mixup_mixes_frames_and_their_successors_alike() -> None:
    torch.manual_seed(0)
    agg = FrameAttentionAggregator(D, attention_dim=8, embed_dim=10)
    module = MEIDModule(
        meid_setup(agg, batch_transform=FeatureMixup(alpha=1.0)), stage=2, neck_dim=4
    )
    batch = batch_of(t=5)
    video = torch.cat([batch.features, batch.next_features[:, -1:]], dim=1).float()
    torch.manual_seed(3)
    mixed = module.transform_batch(batch)
    torch.manual_seed(3)
    mixed_video, _ = FeatureMixup(alpha=1.0).mix(
        torch.cat([video[:, :5], video[:, 1:]], 1), batch.targets
    )
    assert torch.allclose(mixed.features.float(), mixed_video[:, :5], atol=1e-3)
    assert torch.allclose(mixed.next_features.float(), mixed_video[:, 5:], atol=1e-3)
    # successor frame k is mixed like frame k + 1
    assert torch.allclose(
        mixed.next_features[:, :-1].float(), mixed.features[:, 1:].float(), atol=1e-3
    )


# -- ablations -------------------------------------------------------------------------------


def test_ablation_flags_change_the_second_expert() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 9, D)
    a = torch.rand(2, 9)
    plain = ComplementaryMotionExpert(D, 5, embed_dim=7, complementary=False)
    x_m = torch.cat([x[:, 1:] - x[:, :-1], x.mean(dim=1, keepdim=True)], dim=1)
    expected = plain.classifier(
        plain.fuse(
            torch.cat([plain.embedding(x).mean(1), plain.motion_embedding(x_m).mean(1)], dim=-1)
        )
    )
    assert torch.allclose(plain(x, a), expected, atol=1e-5)  # R = 1: the attention is unused
    still = ComplementaryMotionExpert(D, 5, embed_dim=7, use_motion=False)
    assert still.motion_embedding is None and still.fuse.in_features == 7
    r = 1 / (a + 0.5)
    expected = still.classifier(still.fuse((still.embedding(x) * r.unsqueeze(-1)).mean(1)))
    assert torch.allclose(still(x, a), expected, atol=1e-5)
    # every variant trains all its parameters; distill_weight=0 builds no necks
    for kwargs in ({"use_motion": False}, {"complementary": False}, {"distill_weight": 0.0}):
        module = stage2_from_stage1(**kwargs)
        module.train()
        module.training_loss(batch_of()).backward()
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        assert trainable and all(p.grad is not None for _, p in trainable), kwargs
    assert make_module(1, distill_weight=0.0).necks is None
    assert stage2_from_stage1(distill_weight=0.0).necks2 is None


def test_config_stage2_reads_next_frames_and_ablations_compose(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg("method=meid")
    assert cfg.dataset.next_frames is False
    assert cfg.method.stages[1].dataset.next_frames is True  # ${method.use_motion}
    off = compose_cfg("method=meid", "method.use_motion=false")
    assert off.method.stages[1].dataset.next_frames is False
    # one schedule for MEID (both stages) and its control on the same aggregator and head
    meid = compose_cfg("method=meid", "schedule.epochs=12", "schedule.scheduler.milestones=[9]")
    control = compose_cfg(
        "method=base",
        "aggregator=frame_attention",
        "strategy=focal",
        "schedule.epochs=12",
        "schedule.scheduler.milestones=[9]",
        "dataset.clip_frames=${features.frames}",
    )
    assert list(meid.schedule.scheduler.milestones) == [9]
    assert all("schedule" not in s for s in meid.method.stages)
    assert control.schedule == meid.schedule and control.trainer == meid.trainer
    assert control.aggregator == meid.aggregator and control.head == meid.head
    assert control.dataset.clip_frames == meid.dataset.clip_frames
    assert control.strategy == meid.strategy
