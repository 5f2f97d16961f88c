"""Resuming a killed run in its own directory, so that it ends where the uninterrupted run would.

``vltr-train hydra.run.dir=<run> ckpt_path=last`` resumes from ``<run>/checkpoints/last.ckpt``
(the checkpoint callback writes it at every validation, i.e. every epoch end). Lightning restores
the weights, optimizer, LR scheduler, epoch/step counters and callback states, but not the random
generators, so a resumed run would draw other shuffles, dropout masks, mixup lambdas and clip
frames than the uninterrupted run from the first resumed epoch on. :class:`RandomStateInCheckpoint`
stores them in every checkpoint and puts them back before the first resumed epoch: in one process
with ``dataset.num_workers=0`` a resumed run reproduces the uninterrupted run's metrics exactly
(``tests/test_resume.py``).

Not restored (documented in ``docs/scaling.md``): the clip-frame generators of DataLoader worker
processes (``num_workers > 0``: the order of videos is still restored, the sampled frames after
the resume differ), and under DDP every rank gets rank 0's generator state.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from vltr.utils.errors import StoreError
from vltr.utils.io import write_text_atomic

LAST = "last"
WANDB_RUN_ID_FILE = "wandb_run_id"


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``last`` is ``<checkpoint_dir>/last.ckpt``.

    Lightning's own ``ckpt_path="last"`` looks for a last checkpoint and, finding none, only
    warns and trains from scratch: a resume pointed at the wrong directory would silently start
    over (and overwrite that directory's checkpoints). Here a missing file is a one-line error.
    """
    if ckpt_path is None:
        return None
    last = str(ckpt_path) == LAST
    path = Path(checkpoint_dir) / "last.ckpt" if last else Path(str(ckpt_path))
    if not path.is_file():
        hint = (
            " (ckpt_path=last resumes the run in hydra.run.dir=<its output directory>)"
            if last
            else " (ckpt_path)"
        )
        raise StoreError(f"{path}: no such checkpoint{hint}")
    return str(path)


def wandb_run_id(output_dir: str | Path) -> str | None:
    """The W&B run id of the run in ``output_dir``: read from ``<output_dir>/wandb_run_id``, or
    made and written there (atomically) on the run's first start.

    W&B names a run by its id; a resumed run that passes the same id with ``resume="allow"``
    continues the same W&B run (online: one run page; offline: ``offline-run-*-<id>`` dirs that
    ``wandb sync`` merges) instead of opening a new one. Only rank 0 logs to W&B, so only rank 0
    writes the file; other ranks get ``None`` unless it exists.
    """
    path = Path(output_dir) / WANDB_RUN_ID_FILE
    if path.is_file():
        run_id = path.read_text().strip()
        if run_id:
            return run_id
    if rank_zero_only.rank != 0:
        return None
    # W&B's own format: 8 characters of [a-z0-9]
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    write_text_atomic(path, run_id + "\n")
    return run_id


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    # numpy's legacy state holds an ndarray; plain ints load under torch.load(weights_only=True)
    out = dict(state)
    if "numpy" in out:
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]
    out["python"] = [out["python"][0], list(out["python"][1]), out["python"][2]]
    return out


def _unplain(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    if "numpy" in out:
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    out["python"] = tuple(out["python"])
    if not torch.cuda.is_available():
        out.pop("torch.cuda", None)
    return out


class RandomStateInCheckpoint(L.Callback):
    """Save the random generators in every checkpoint; restore them when a fit resumes.

    Saved: torch (CPU and CUDA), numpy's and Python's global generators, and the clip-frame
    generator of the training dataset when it lives in this process (``num_workers=0``).

    Restored in ``on_load_checkpoint``, i.e. as soon as Lightning reads the checkpoint, not
    later: the fit loop creates the first epoch's DataLoader iterator (which draws the loader's
    base seed from torch's generator) before ``on_train_start``, and the RandomSampler draws its
    shuffle seed at the first batch. Restored any later, the resumed epoch's two draws would come
    from two different states and the video order would differ from the uninterrupted run. The
    sanity check in between runs under Lightning's ``isolate_rng`` and draws nothing.
    """

    KEY = "vltr_random_state"

    @staticmethod
    def _train_dataset(trainer: L.Trainer) -> Any:
        datamodule = getattr(trainer, "datamodule", None)
        return getattr(datamodule, "train_set", None)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state: dict[str, Any] = {"global": _plain(_collect_rng_states(include_cuda=True))}
        # the dataset's generator exists only after its first draw, in the process that drew
        rng = getattr(self._train_dataset(trainer), "_rng", None)
        if isinstance(rng, np.random.Generator):
            state["train_set"] = rng.bit_generator.state
        checkpoint[self.KEY] = state

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(self.KEY)  # absent in checkpoints of older runs
        # Lightning also calls this when validate/test load a checkpoint: they draw nothing
        # that matters, so the process's generators are left alone there
        if state is None or trainer.state.fn != TrainerFn.FITTING:
            return
        _set_rng_states(_unplain(state["global"]))
        # datamodule.setup() has run (Lightning calls it before restoring the checkpoint)
        dataset = self._train_dataset(trainer)
        if "train_set" in state and dataset is not None and hasattr(dataset, "_rng"):
            rng = np.random.default_rng()
            rng.bit_generator.state = state["train_set"]
            dataset._rng = rng
