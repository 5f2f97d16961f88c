"""FrameStack: stacking (eqs. 1-4), the eta fraction, rAP storage and AP, DDP, checkpoints, e2e."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from vltr.data.datamodule import VideoBatch, VideoFeatureDataModule
from vltr.evaluation.metrics import average_precision
from vltr.evaluation.running_ap import (
    pack_records,
    rap_from_records,
    record_width,
    unpack_records,
)
from vltr.methods.base import MethodSetup
from vltr.methods.framestack import FrameStackModule
from vltr.models.aggregators import NonLinearFrameAggregator
from vltr.strategies.framestack import (
    frame_stack,
    plan_stack,
    sample_rap,
    select_frames,
    stack_ratio,
)
from vltr.strategies.losses import FocalLoss
from vltr.utils.distributed import gather_rows

from conftest import TINY_OVERRIDES, make_store


def make_module(classes: int, dim: int, dropout: float = 0.0, **kwargs: object) -> FrameStackModule:
    return FrameStackModule(
        MethodSetup(
            aggregator=NonLinearFrameAggregator(input_dim=dim, hidden_dim=16, dropout=dropout),
            loss=FocalLoss(gamma=1.0),
            optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
            class_counts=[10] * classes,
        ),
        **kwargs,
    )


def id_features(batch: int, frames: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """``[B, T, 3]``: channel 0 = the video's row, channel 1 = the frame index."""
    x = torch.zeros(batch, frames, 3, dtype=dtype)
    x[:, :, 0] = torch.arange(batch, dtype=dtype).unsqueeze(1)
    x[:, :, 1] = torch.arange(frames, dtype=dtype).unsqueeze(0)
    return x


def one_label_targets(labels: list[int], classes: int) -> torch.Tensor:
    y = torch.zeros(len(labels), classes)
    y[torch.arange(len(labels)), torch.tensor(labels)] = 1.0
    return y


# -- stacking ------------------------------------------------------------------------------------
def test_stacked_clip_has_exactly_L_frames_and_target_mass_is_conserved() -> None:
    torch.manual_seed(0)
    b, t, c = 10, 60, 7
    y = (torch.rand(b, c) < 0.3).float()
    y[torch.arange(b), torch.randint(0, c, (b,))] = 1.0  # multi-label, every video labelled
    rap = torch.rand(c)
    plan = plan_stack(y, rap, eta=1.0, clip_length=t)
    x = id_features(b, t)
    out, mixed = frame_stack(x, y, plan)
    assert out.shape == x.shape and out.dtype == x.dtype
    for r, (i, j) in enumerate(zip(plan.rows.tolist(), plan.partners.tolist(), strict=True)):
        beta = float(plan.beta[r])
        n_i = int((out[i, :, 0] == i).sum()) if i != j else int(plan.frames_i[r])
        assert n_i == math.floor((1 - beta) * t + 1e-9)  # eq. (2), L_j = L - L_i
        expected = (1 - beta) * y[i].sum() + beta * y[j].sum()
        assert float(mixed[i].sum()) == pytest.approx(float(expected), abs=1e-5)
        torch.testing.assert_close(mixed[i], (1 - beta) * y[i] + beta * y[j])  # eq. (4)


@pytest.mark.parametrize("sampling", ["even", "random"])
def test_frames_come_from_the_right_videos_in_temporal_order(sampling: str) -> None:
    torch.manual_seed(1)
    b, t, c = 8, 12, 4
    y = one_label_targets([0, 1, 2, 3, 0, 1, 2, 3], c)
    rap = torch.tensor([0.75, 0.25, 0.5, 0.0])
    plan = plan_stack(y, rap, eta=1.0, clip_length=t)
    out, _ = frame_stack(id_features(b, t), y, plan, sampling=sampling)
    for r, (i, j) in enumerate(zip(plan.rows.tolist(), plan.partners.tolist(), strict=True)):
        n_i = int(plan.frames_i[r])
        video, frame = out[i, :, 0].long(), out[i, :, 1].long()
        assert (video[:n_i] == i).all() and (video[n_i:] == j).all()  # concat[V_i ; V_j]
        for part, n in ((frame[:n_i], n_i), (frame[n_i:], t - n_i)):
            assert len(part) == n and (part.diff() > 0).all()  # distinct, in temporal order
            if sampling == "even":
                # VideoLT's code: a float linspace used as indices, which torch truncates
                expected = torch.arange(t)[np.linspace(0, t - 1, n)] if n else []
                assert part.tolist() == list(expected)


@pytest.mark.parametrize("t", [7, 37, 60, 150])
def test_even_sampling_is_the_released_codes_truncated_linspace(t: int) -> None:
    # the released code indexes the clip with np.linspace(0, T - 1, n): torch truncates the
    # floats (e.g. T = 60, n = 7: frame 9 for 9.83, not the rounded 10)
    for n in range(1, t + 1):
        picks = select_frames(torch.tensor([n]), t, "even")[0, :n]
        assert picks.tolist() == torch.arange(t)[np.linspace(0, t - 1, n)].tolist(), n


def test_fixed_beta_replaces_the_rap_ratio() -> None:
    torch.manual_seed(0)
    y = one_label_targets([0, 1, 2, 3], 4)
    rap = torch.tensor([0.9, 0.1, 0.5, 0.0])
    plan = plan_stack(y, rap, eta=1.0, clip_length=10, fixed_beta=0.5)
    assert plan.beta.tolist() == [0.5] * 4 and plan.frames_i.tolist() == [5] * 4
    adaptive = plan_stack(y, rap, eta=1.0, clip_length=10)
    assert len(set(adaptive.beta.tolist())) > 1


def test_beta_follows_rap_and_falls_back_to_half() -> None:
    beta = stack_ratio(
        torch.tensor([0.75, 0.25, 0.3, 0.0, 4e-6, 2e-5]),
        torch.tensor([0.25, 0.75, 0.0, 0.0, 5e-6, 0.0]),
        eps=1e-5,
    )
    assert beta.tolist() == pytest.approx([0.75, 0.25, 1.0, 0.5, 0.5, 1.0])
    # a multi-label video's rAP: mean over its positive classes (or VideoLT's mean over all C)
    rap = torch.tensor([0.8, 0.4, 0.0, 0.2])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert sample_rap(y, rap).tolist() == pytest.approx([0.6, 0.2, 0.0])
    assert sample_rap(y, rap, "mean_all").tolist() == pytest.approx([0.3, 0.05, 0.0])
    # through the module: rows with rAP 0.75 / 0.25 / 0 / 0 (classes 0..3), L = 16
    module = make_module(4, 3, eta=1.0)
    module.rap.copy_(torch.tensor([0.75, 0.25, 0.0, 0.0]))
    labels = [0, 1, 2, 3]
    y = one_label_targets(labels, 4)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = module.transform_batch(VideoBatch(id_features(4, 16), y, torch.arange(4)))
        plan = module.last_plan
        assert plan is not None and len(plan.rows) == 4
        for r, (i, j) in enumerate(zip(plan.rows.tolist(), plan.partners.tolist(), strict=True)):
            ri, rj = module.rap[labels[i]].item(), module.rap[labels[j]].item()
            beta = 0.5 if ri + rj < 1e-5 else ri / (ri + rj)
            assert plan.beta[r].item() == pytest.approx(beta)
            if i != j:
                assert int((out.features[i, :, 0] == i).sum()) == math.floor((1 - beta) * 16)
                seen.add((labels[i], labels[j]))
    # the pairs that show both rules: a good class gives few frames, ~0 + ~0 gives half
    assert {(0, 1), (1, 0), (2, 3)} <= seen


@pytest.mark.parametrize("eta", [0.0, 0.25, 0.5, 1.0])
def test_fraction_eta_of_the_batch_is_stacked(eta: float) -> None:
    torch.manual_seed(2)
    b, t, c = 10, 12, 5
    module = make_module(c, 3, eta=eta)
    module.rap.copy_(torch.rand(c))
    x = id_features(b, t)
    y = one_label_targets([k % c for k in range(b)], c)
    out = module.transform_batch(VideoBatch(x, y, torch.arange(b)))
    plan = module.last_plan
    assert plan is not None
    k = math.floor(eta * b)
    rows = sorted(plan.rows.tolist())
    assert len(rows) == k and len(set(rows)) == k and sorted(plan.partners.tolist()) == rows
    changed = [r for r in range(b) if not torch.equal(out.features[r], x[r])]
    assert changed == rows  # exactly the planned rows were replaced, the rest untouched
    untouched = [r for r in range(b) if r not in rows]
    assert torch.equal(out.targets[untouched], y[untouched])


def test_warmup_and_clip_length_checks() -> None:
    module = make_module(3, 3, warmup_epochs=1)
    batch = VideoBatch(id_features(4, 8), one_label_targets([0, 1, 2, 0], 3), torch.arange(4))
    assert module.transform_batch(batch) is batch  # epoch 0 < warmup_epochs: not stacked
    assert len(module._records) == 1  # but recorded
    with pytest.raises(ValueError, match="clip_length=6 but training clips have 8"):
        make_module(3, 3, clip_length=6).transform_batch(batch)


# -- rAP -----------------------------------------------------------------------------------------
def test_rap_equals_average_precision_and_float16_storage_is_exact_enough() -> None:
    rng = np.random.default_rng(0)
    n, c = 20000, 150  # two AP blocks; C not a multiple of 8 (label padding bits)
    freq = np.geomspace(0.05, 0.001, c)
    y = (rng.random((n, c)) < freq).astype(np.float32)
    s = (-6 + 3 * rng.standard_normal((n, c)) + 6 * y * rng.random((n, c))).astype(np.float32)
    index = np.arange(n)
    parts = np.array_split(np.arange(n), 3)
    chunks = [
        pack_records(
            torch.from_numpy(s[p]), torch.from_numpy(y[p]), torch.from_numpy(index[p])
        ).numpy()
        for p in parts
    ]
    assert chunks[0].shape[1] == record_width(c) == 2 * c + 19 + 8
    # a repeated video (sampler padding) with other scores: the first occurrence counts
    dup = pack_records(
        torch.from_numpy(s[:50] + 5), torch.from_numpy(y[:50]), torch.from_numpy(index[:50])
    ).numpy()
    rap = rap_from_records([*chunks, dup], c)
    scores, targets, idx = unpack_records(np.concatenate(chunks), c)
    assert np.array_equal(targets, y > 0.5) and np.array_equal(idx, index)
    assert np.array_equal(scores, s.astype(np.float16))
    np.testing.assert_array_equal(
        rap, average_precision(s.astype(np.float16).astype(np.float32), y)
    )
    err = np.abs(rap - average_precision(s, y))
    assert err.max() <= 5e-3 and err.mean() <= 2e-4  # the documented float16 tolerance
    assert err.max() > 0  # float16 did round (the check above is not vacuous)


def test_module_rap_is_ap_of_the_epochs_unmixed_predictions() -> None:
    torch.manual_seed(3)
    c, d, t = 6, 5, 10
    module = make_module(c, d, dropout=0.0)  # no dropout: the recorded logits are reproducible
    logits, targets = [], []
    for step in range(3):
        x = torch.randn(8, t, d).half()
        y = one_label_targets([(step + k) % c for k in range(8)], c)
        y[0, (step + 3) % c] = 1.0
        module.transform_batch(VideoBatch(x, y, torch.arange(8) + 8 * step))
        with torch.no_grad():
            logits.append(module(x))
        targets.append(y)
    module.update_rap()
    s, y = torch.cat(logits), torch.cat(targets)
    expected = average_precision(s.half().float(), y)
    np.testing.assert_allclose(module.rap.numpy(), expected, rtol=0, atol=1e-7)
    assert module.rap.sum() > 0 and module._records == []


# -- DDP -----------------------------------------------------------------------------------------
class RapDump(L.Callback):
    """Each rank writes its local records (before the gather) and the rAP after every epoch."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # the gather alone, on the run's process group: uneven shards, several padded messages
        rank = trainer.global_rank
        n = [5, 2][rank]
        rows = torch.arange(n * 3, dtype=torch.uint8).reshape(n, 3) + 100 * rank
        torch.save(gather_rows(rows, dst=0, chunk_rows=2), f"{self.out}/gather{rank}.pt")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # callbacks run before the module's hook, which gathers and clears the records
        if pl_module._is_last_train_batch(batch_idx):
            rows = torch.cat(pl_module._records).numpy()
            np.save(f"{self.out}/rows_e{trainer.current_epoch}_r{trainer.global_rank}.npy", rows)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        np.save(
            f"{self.out}/rap_e{trainer.current_epoch}_r{trainer.global_rank}.npy",
            pl_module.rap.numpy(),
        )


@pytest.mark.ddp
def test_rap_is_identical_on_every_rank_under_ddp(tmp_path: Path) -> None:
    # Lightning ddp_spawn, gloo, 2 processes, 21 training videos (odd: the DistributedSampler
    # repeats one), messages of 2 rows
    path, _, _ = make_store(tmp_path / "s.h5", n=42, t=8, d=4, c=3)
    dm = VideoFeatureDataModule(
        name="s", path=str(path), clip_frames=8, batch_size=4, num_workers=0
    )
    module = make_module(3, 4, dropout=0.5, gather_chunk_rows=2)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=[RapDump(str(tmp_path))],
    )
    trainer.fit(module, datamodule=dm)
    got = torch.load(tmp_path / "gather0.pt", weights_only=False)
    assert torch.load(tmp_path / "gather1.pt", weights_only=False) is None
    expected = np.concatenate([np.arange(15).reshape(5, 3), np.arange(6).reshape(2, 3) + 100])
    np.testing.assert_array_equal(np.concatenate(got), expected)
    for epoch in range(2):
        rap0, rap1 = (np.load(tmp_path / f"rap_e{epoch}_r{r}.npy") for r in range(2))
        assert np.array_equal(rap0, rap1) and rap0.sum() > 0
        shards = [np.load(tmp_path / f"rows_e{epoch}_r{r}.npy") for r in range(2)]
        assert len(shards[0]) == len(shards[1]) == 11
        scores, targets, index = unpack_records(np.concatenate(shards), 3)
        _, first = np.unique(index, return_index=True)
        assert len(first) == 21  # the padded duplicate is dropped
        expected = average_precision(scores[first].astype(np.float32), targets[first])
        np.testing.assert_allclose(rap0, expected, rtol=0, atol=1e-7)


# -- checkpoints and end to end ------------------------------------------------------------------
class RapTrace(L.Callback):
    def __init__(self) -> None:
        self.at_start: list[torch.Tensor] = []
        self.at_val_end: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.at_start.append(pl_module.rap.clone())

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.at_val_end.append(pl_module.rap.clone())


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_checkpoint_holds_the_rap_the_next_epoch_uses(tmp_path: Path) -> None:
    torch.manual_seed(4)
    path, _, _ = make_store(tmp_path / "s.h5", n=40, t=8, d=4, c=3)

    def fit(max_epochs: int, ckpt: str | None) -> RapTrace:
        trace = RapTrace()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=max_epochs,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[
                trace,
                ModelCheckpoint(dirpath=tmp_path / f"ck{max_epochs}", save_last=True),
            ],
        )
        dm = VideoFeatureDataModule(
            name="s", path=str(path), clip_frames=8, batch_size=4, num_workers=0
        )
        trainer.fit(make_module(3, 4, dropout=0.5), datamodule=dm, ckpt_path=ckpt)
        return trace

    trace = fit(2, None)
    assert trace.at_start[0].sum() == 0  # epoch 0: rAP = 0
    assert trace.at_val_end[0].sum() > 0
    assert torch.equal(trace.at_start[1], trace.at_val_end[0])  # next epoch uses epoch 0's
    last = tmp_path / "ck2" / "last.ckpt"
    saved = torch.load(last, weights_only=False)["state_dict"]["rap"]
    assert torch.equal(saved, trace.at_val_end[1])  # saved after the epoch's rAP update
    resumed = fit(3, str(last))
    assert torch.equal(resumed.at_start[0], saved)  # resuming continues with it


def test_trains_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    from vltr.training.train import train

    cfg = compose_cfg(*TINY_OVERRIDES, "method=framestack", "logger=none", "trainer.max_epochs=3")
    assert cfg.method._target_ == "vltr.methods.framestack.FrameStackModule"
    assert cfg.method.clip_length == cfg.dataset.clip_frames == 12
    result = train(cfg)
    for split in ("val", "test"):
        assert 0.0 < result[split]["mAP"] <= 1.0 and "mAP_tail" in result[split]
    state = torch.load(result["best_ckpt"], weights_only=False)["state_dict"]
    assert state["rap"].shape == (10,) and state["rap"].sum() > 0
