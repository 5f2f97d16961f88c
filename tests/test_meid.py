"""MEID (vltr.methods.meid, vltr.models.meid): shapes for any T, the frozen first expert in
stage 2, eq. 7/8/10 on hand examples, and both stages end to end on tiny stores."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from vltr.data.datamodule import VideoBatch
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
    return MEIDModule(agg, num_classes=len(COUNTS), loss=FocalLoss(),
                      optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
                      class_counts=COUNTS, head_min=50, tail_max=10, stage=stage, neck_dim=4,
                      expert2_dropout=dropout, **kwargs)


def batch_of(b: int = 6, t: int = 20, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(b, len(COUNTS))
    targets[torch.arange(b), torch.arange(b) % len(COUNTS)] = 1.0
    return VideoBatch(features=torch.randn(b, t, D, generator=g).half(), targets=targets,
                      index=torch.arange(b))


def stage2_from_stage1(seed: int = 0, **kwargs: object) -> MEIDModule:
    torch.manual_seed(seed)
    s1 = make_module(1, **kwargs)
    s2 = make_module(2, **kwargs)
    result = s2.load_state_dict(s1.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith(("expert2.", "necks2."))
                                       for k in result.missing_keys)
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
    mask[:, t - 10:] = False
    padded = x.clone()
    padded[:, t - 10:] = float("nan")
    assert torch.allclose(s2(padded, mask), s2(x[:, : t - 10]), atol=1e-5)
    assert torch.isfinite(s2.training_loss(VideoBatch(padded, batch.targets, batch.index, mask)))


def test_needs_frame_attention_aggregator() -> None:
    with pytest.raises(ValueError, match="frame_attention"):
        MEIDModule(NonLinearFrameAggregator(D, hidden_dim=8), num_classes=len(COUNTS),
                   loss=FocalLoss(), optimizer=functools.partial(torch.optim.Adam),
                   class_counts=COUNTS)
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
    expert1 = {n for n, _ in module.named_parameters()
               if n.startswith(("aggregator.", "classifier.", "necks."))}
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
        assert variance_distillation_loss(m, m + 3.0, over=over).item() == pytest.approx(0.0,
                                                                                         abs=1e-5)
        assert variance_distillation_loss(m, 2 * m, over=over).item() > 0.1
    # hand value: batch variances [1, 1] vs [0, 0] -> ||[1, 1]||_2 = sqrt(2)
    head = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    assert variance_distillation_loss(head, torch.zeros(2, 2)).item() == pytest.approx(2**0.5)
    # per-video variances [1, 0] vs [0, 0] -> 1
    rows = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert variance_distillation_loss(rows, torch.zeros(2, 2), over="features").item() == \
        pytest.approx(1.0)
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
    flat = MEIDModule(FrameAttentionAggregator(D, attention_dim=4), num_classes=3,
                      loss=FocalLoss(), optimizer=functools.partial(torch.optim.Adam),
                      class_counts=[200, 100, 60], head_min=50, tail_max=10)
    assert flat.necks is None
    assert flat.distillation(torch.randn(4, 3), flat.necks).item() == 0.0


# -- config and end to end -----------------------------------------------------------------

E2E = [o for o in TINY_OVERRIDES
       if not o.startswith(("aggregator.hidden_dim", "trainer.max_epochs"))]
SMALL = ["method=meid", "logger=none", "aggregator.attention_dim=16", "method.neck_dim=8"]


def test_config_two_stages(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("method=meid", "trainer.max_epochs=100")
    assert cfg.aggregator._target_.endswith("FrameAttentionAggregator")
    assert cfg.method._target_ == "vltr.methods.meid.MEIDModule"
    assert list(cfg.method.scheduler.milestones) == [30, 60]
    assert cfg.method.optimizer.lr == pytest.approx(1e-3)
    assert [s.method.stage for s in cfg.stages] == [1, 2]
    assert cfg.stages[1].method.optimizer.lr == pytest.approx(1e-4)
    assert all(s.strategy.loss._target_.endswith("FocalLoss") for s in cfg.stages)
    sampler = cfg.stages[1].strategy.sampler
    assert sampler._target_.endswith("ClassAwareSampler") and sampler.power == 0.0
    assert sampler.seed == cfg.seed
    assert "sampler" not in cfg.stages[0].strategy
    # an explicit aggregator still wins over the method's default
    assert compose_cfg("method=meid", "aggregator=nonlinear").aggregator._target_.endswith(
        "NonLinearFrameAggregator")


def expert1_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(("aggregator.", "classifier.",
                                                            "necks."))}


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
    assert run2["method"]["optimizer"]["lr"] == pytest.approx(1e-4)
    assert run2["strategy"]["sampler"]["_target_"].endswith("ClassAwareSampler")
    assert run2["strategy"]["loss"]["_target_"].endswith("FocalLoss")
    assert s1["vltr"]["config"]["strategy"]["sampler"] is None
    # the stage-2 checkpoint re-evaluates on its own (vltr-eval): same test metrics
    ev = evaluate(compose_cfg(f"ckpt_path={result['best_ckpt']}", "splits=[test]",
                              "trainer.enable_progress_bar=false", config_name="eval"))
    assert ev["test"]["mAP"] == pytest.approx(result["test"]["mAP"], abs=1e-6)


def test_start_stage_2_from_stage1_checkpoint(compose_cfg: Callable[..., DictConfig]) -> None:
    stage1 = train(compose_cfg(*E2E, *SMALL, "trainer.max_epochs=1", "stages=null"))
    ckpt = stage1["best_ckpt"]
    assert ckpt and Path(ckpt).is_file()
    cfg = compose_cfg(*E2E, *SMALL, "trainer.max_epochs=1", "start_stage=2",
                      f"init_ckpt={ckpt}")
    result = train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert set(summary["stages"]) == {"stage2"}
    s1 = torch.load(ckpt, weights_only=False)["state_dict"]
    s2 = torch.load(result["best_ckpt"], weights_only=False)["state_dict"]
    e1, e2 = expert1_tensors(s1), expert1_tensors(s2)
    assert e1.keys() == e2.keys() and all(torch.equal(e1[k], e2[k]) for k in e1)


def test_two_hundred_frames_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(*E2E, *SMALL, "trainer.max_epochs=1", "features.frames=200",
                      "dataset.clip_frames=200")
    result = train(cfg)
    assert result["info"].frames == 200
    assert set(json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["stages"]) \
        == {"stage1", "stage2"}
    assert 0.0 < result["test"]["mAP"] <= 1.0
