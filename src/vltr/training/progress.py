"""Progress you can see: on a terminal a rich bar, in a log file one line per epoch.

* :class:`MetricsProgressBar` (``callbacks.rich_progress_bar``): Lightning's rich bar showing
  the epoch, the train loss, the last ``val/mAP`` and tail mAP, and videos/s;
* :class:`ProgressLog` (``callbacks.progress_log``): without a terminal (a cluster job,
  ``nohup``, output redirected), one log line per epoch with the same numbers, the time per
  epoch and an ETA, plus a line every ``every_n_steps`` steps inside long epochs; it goes to
  the console and to the run's ``train.log`` through Hydra's logging;
* :func:`configure_progress`: picks between them for a run. A bar is shown only when
  ``trainer.enable_progress_bar`` is true *and* the output is a terminal; otherwise every
  progress-bar callback is dropped (so ``trainer.enable_progress_bar=false`` works with the
  bar in the callbacks config) and the log lines take over;
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from vltr.utils.progress import format_duration, is_interactive

log = logging.getLogger("vltr.training.progress")

# (logged key, short name) shown by the bar and the log lines, in this order
SHOWN = (("train/loss", "train/loss"), ("val/mAP", "val/mAP"), ("val/mAP_tail", "val/mAP_tail"))


def _value(metrics: Mapping[str, Any], key: str, step: bool = False) -> float | None:
    """``key``'s value in ``metrics``, also when logged per step and epoch (``key_step``,
    ``key_epoch``: ``step`` picks which comes first)."""
    suffixes = ("_step", "_epoch") if step else ("_epoch", "_step")
    for name in (key, *(key + s for s in suffixes)):
        if name in metrics:
            try:
                return float(metrics[name])
            except (TypeError, ValueError):
                return None
    return None


def _batch_size(batch: Any) -> int:
    try:
        return len(batch)
    except TypeError:
        return 0


class _Throughput:
    """Videos per second over the current training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.videos = 0
        self.seconds = 0.0
        self._last: float | None = None

    def start(self) -> None:
        self.videos, self.seconds, self._last = 0, 0.0, time.perf_counter()

    def add(self, videos: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds += now - self._last
        self._last = now
        self.videos += videos

    def resume(self) -> None:  # after a validation inside the epoch: do not count its time
        self._last = time.perf_counter()

    @property
    def rate(self) -> float | None:
        return self.videos / self.seconds if self.seconds > 0 else None


class MetricsProgressBar(RichProgressBar):
    """Lightning's rich progress bar showing train loss, the last val mAP and tail mAP, and
    videos/s (the epoch is in the bar's description)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._throughput = _Throughput()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput.start()
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._throughput.add(_batch_size(batch))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._throughput.resume()

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        # the method's own prog_bar values stay; the step and epoch loss become one entry
        shown: dict[str, Any] = {k: v for k, v in items.items() if not k.startswith("train/loss")}
        loss = _value(items, "train/loss", step=True)
        if loss is not None:
            shown["train/loss"] = loss
        for key, name in SHOWN[1:]:
            value = _value(trainer.callback_metrics, key)
            if value is not None:
                shown[name] = value
        if self._throughput.rate is not None:
            shown["videos/s"] = f"{self._throughput.rate:,.0f}"
        return shown


class ProgressLog(L.Callback):
    """One log line per training epoch (and every ``every_n_steps`` steps inside an epoch),
    for runs whose output is not a terminal::

        epoch 3/20 | train/loss 0.4123 | val/mAP 0.3510 | val/mAP_tail 0.1204 |
        1,234 videos/s | epoch 0:00:12 | elapsed 0:00:36 | ETA 0:03:24

    (one line). The ETA is the mean time per epoch so far (validation included) times the
    epochs left to ``max_epochs``. ``always``: log even when a progress bar is shown. Rank 0
    only.
    """

    def __init__(self, every_n_steps: int = 500, always: bool = False) -> None:
        if every_n_steps < 0:
            raise ValueError(
                f"every_n_steps must be >= 0 (0: epoch lines only), got {every_n_steps}"
            )
        self.every_n_steps = int(every_n_steps)
        self.always = bool(always)
        self._throughput = _Throughput()
        self._fit_start: float | None = None
        self._epoch_start = 0.0
        self._epochs_done = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._epochs_done = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput.start()
        self._epoch_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput.resume()

    def _epoch_text(self, trainer: L.Trainer) -> str:
        total = trainer.max_epochs
        epoch = trainer.current_epoch + 1
        return f"epoch {epoch}/{total}" if total and total > 0 else f"epoch {epoch}"

    def _values(
        self, metrics: Mapping[str, Any], keys: Iterable[tuple[str, str]], step: bool = False
    ) -> list[str]:
        out = []
        for key, name in keys:
            value = _value(metrics, key, step)
            if value is not None:  # NaN: a group without classes (no tail at this ratio)
                out.append(f"{name} {value:.4f}" if math.isfinite(value) else f"{name} n/a")
        return out

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._throughput.add(_batch_size(batch))
        step = batch_idx + 1
        total = trainer.num_training_batches
        if not self.every_n_steps or step % self.every_n_steps or not trainer.is_global_zero:
            return
        if isinstance(total, (int, float)) and math.isfinite(total) and step >= total:
            return  # the epoch line follows
        elapsed = time.perf_counter() - self._epoch_start
        left = (
            elapsed / step * (total - step)
            if isinstance(total, (int, float)) and math.isfinite(total)
            else None
        )
        parts = [
            f"{self._epoch_text(trainer)} step {step}/{total}",
            *self._values(trainer.callback_metrics, SHOWN[:1], step=True),
        ]
        if self._throughput.rate is not None:
            parts.append(f"{self._throughput.rate:,.0f} videos/s")
        parts.append(f"epoch ETA {format_duration(left)}")
        log.info(" | ".join(parts))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epochs_done += 1
        if not trainer.is_global_zero:
            return
        now = time.perf_counter()
        elapsed = now - (self._fit_start or self._epoch_start)
        parts = [self._epoch_text(trainer), *self._values(trainer.callback_metrics, SHOWN)]
        if self._throughput.rate is not None:
            parts.append(f"{self._throughput.rate:,.0f} videos/s")
        parts += [
            f"epoch {format_duration(now - self._epoch_start)}",
            f"elapsed {format_duration(elapsed)}",
        ]
        total = trainer.max_epochs
        if total and total > 0:
            left = total - (trainer.current_epoch + 1)
            parts.append(f"ETA {format_duration(elapsed / self._epochs_done * left)}")
        log.info(" | ".join(parts))


def configure_progress(
    callbacks: list[L.Callback], enable_progress_bar: bool, interactive: bool | None = None
) -> tuple[list[L.Callback], bool]:
    """``(callbacks, enable_progress_bar)`` for the Trainer: a bar only on a terminal.

    With the bar disabled or no terminal (``interactive``; default: detected), every
    :class:`~lightning.pytorch.callbacks.progress.ProgressBar` callback is dropped and the
    Trainer's own bar is off; :class:`ProgressLog` callbacks are kept then, and dropped when a
    bar is shown (unless their ``always`` is set).
    """
    if interactive is None:
        interactive = is_interactive()
    show_bar = bool(enable_progress_bar) and interactive
    kept = []
    for cb in callbacks:
        if isinstance(cb, ProgressBar) and not show_bar:
            continue
        if isinstance(cb, ProgressLog) and show_bar and not cb.always:
            continue
        kept.append(cb)
    return kept, show_bar
