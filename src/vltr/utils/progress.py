"""Progress of long jobs without a training loop: is the output a terminal, durations, and
"N % (done/total), rate, ETA" lines every few percent for output that is not a terminal
(imports, bootstraps)."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def is_interactive(stderr: bool = False) -> bool:
    """Whether output goes to a terminal (or a notebook) that can redraw a bar, as rich sees it
    (``FORCE_TERMINAL`` / ``TTY_COMPATIBLE`` in the environment override the detection)."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return bool(console.is_terminal or console.is_jupyter)


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` (hours:minutes:seconds), ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PercentLines:
    """Progress of a long job as lines, every ``every`` percent::

        VideoLT: 25% (1,234/4,936 videos), 512 videos/s, elapsed 0:00:02, ETA 0:00:07

    For output that is not a terminal (a bar would print once, at the end). Call
    :meth:`update` with the number done so far; the last line is printed at 100 %.
    """

    def __init__(
        self,
        description: str,
        total: int,
        unit: str = "videos",
        every: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.description = description
        self.total = max(int(total), 0)
        self.unit = unit
        self.every = float(every)
        self.stream = stream
        self._start = time.perf_counter()
        self._next = self.every

    def update(self, done: int) -> None:
        if self.total <= 0:
            return
        percent = 100.0 * done / self.total
        if percent + 1e-9 < self._next and done < self.total:
            return
        while self._next <= percent + 1e-9:
            self._next += self.every
        elapsed = time.perf_counter() - self._start
        rate = done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - done) / rate if rate and math.isfinite(rate) and rate > 0 else None
        stream = self.stream or sys.stderr
        print(
            f"{self.description}: {percent:.0f}% ({done:,}/{self.total:,} {self.unit}), "
            f"{rate:,.0f} {self.unit}/s, elapsed {format_duration(elapsed)}, "
            f"ETA {format_duration(left)}",
            file=stream,
            flush=True,
        )
