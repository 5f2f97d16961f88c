"""Progress you can see: a bar only on a terminal, log lines otherwise, and
trainer.enable_progress_bar=false working with the bar in the callbacks config."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from vltr.training.progress import MetricsProgressBar, ProgressLog, configure_progress
from vltr.utils.progress import PercentLines

from conftest import train_tiny


def test_bar_only_on_a_terminal_log_lines_otherwise() -> None:
    bar, lines, other = MetricsProgressBar(), ProgressLog(), object()
    kept, show = configure_progress([bar, lines, other], True, interactive=True)
    assert show and kept == [bar, other]
    kept, show = configure_progress([bar, lines, other], True, interactive=False)
    assert not show and kept == [lines, other]
    plain = RichProgressBar()  # any ProgressBar, not only vltr's
    kept, show = configure_progress([plain, lines], False, interactive=True)
    assert not show and kept == [lines]
    always = ProgressLog(always=True)
    assert configure_progress([bar, always], True, interactive=True)[0] == [bar, always]


def test_enable_progress_bar_false_with_the_bar_configured(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    # the default callbacks config holds the rich bar: Lightning refused the combination
    cfg, _ = train_tiny(compose_cfg, "trainer.max_epochs=1", "trainer.enable_progress_bar=false")
    assert cfg.callbacks.rich_progress_bar._target_ == "vltr.training.progress.MetricsProgressBar"


def test_percent_lines_every_few_percent() -> None:
    out = io.StringIO()
    lines = PercentLines("VideoLT", 200, every=25, stream=out)
    for done in range(0, 201, 10):
        lines.update(done)
    text = out.getvalue().splitlines()
    assert [re.match(r"VideoLT: (\d+)%", t).group(1) for t in text] == ["25", "50", "75", "100"]
    assert "(50/200 videos)" in text[0] and "videos/s" in text[0] and "ETA" in text[0]
