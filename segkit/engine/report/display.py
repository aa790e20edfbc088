"""Progress displays that never leave a screen (or a log) blank, for training, evaluation, downloads and
data checks. Only rich is imported here, so the CLI can draw a download or a data check without torch.

On a terminal each is a rich bar (description, bar, M/N, elapsed, ETA, rate); in a pipe or a file, a plain line at
every tenth of the work and at the end.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column
from rich.text import Text


def format_duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class RateColumn(ProgressColumn):
    """Items per second of a task (``12.3 img/s``)."""

    def __init__(self, unit: str) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.fields.get("rate") or task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} {self.unit}", style="progress.data.speed")


class PlainProgress:
    """Progress for pipes and log files: a line at each tenth of the work, at most one every ``min_interval``
    seconds, and always at the end, with the count, the rate and the ETA, so a log never stays silent for long
    and a quick loop does not flood it."""

    def __init__(self, emit, label: str, total: int, unit: str = "images", min_interval: float = 2.0) -> None:
        self.emit, self.label, self.total, self.unit = emit, label, max(int(total), 0), unit
        self.done, self.started, self.next_tenth = 0, time.perf_counter(), 1
        self.min_interval, self.last_line = min_interval, float("-inf")

    def advance(self, n: int) -> None:
        self.done = min(self.done + int(n), self.total) if self.total else self.done + int(n)
        finished = self.total and self.done >= self.total
        if self.total and self.done * 10 < self.next_tenth * self.total and not finished:
            return
        while self.total and self.next_tenth * self.total <= self.done * 10:
            self.next_tenth += 1
        now = time.perf_counter()
        if now - self.last_line < self.min_interval and not finished:
            return
        self.last_line = now
        seconds = now - self.started
        rate = self.done / max(seconds, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        self.emit(f"{self.label} {self.done}/{self.total} {self.unit} {rate:.1f}/s "
                  f"elapsed {format_duration(seconds)} eta {format_duration(eta)}")


class ByteProgress:
    """Bytes of a download: ``with ByteProgress(console, "voc") as bar: download(..., progress=bar)``; the bar
    learns the total from the first call (``bar(done, total_or_None)``)."""

    def __init__(self, console: Console, label: str) -> None:
        self.console, self.label = console, label
        self.progress: Progress | None = None
        self.next_tenth, self.last_line = 1, 0.0

    def __enter__(self) -> ByteProgress:
        self.started = time.perf_counter()
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(bar_width=None),
                                     DownloadColumn(), TransferSpeedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=self.console, transient=False, expand=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if done < getattr(self, "last_done", 0):  # the next file
            self.next_tenth, self.started = 1, time.perf_counter()
        self.last_done = done
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)
            return
        now = time.perf_counter()
        if total:  # a line at each tenth
            if done * 10 < self.next_tenth * total and done < total:
                return
            while self.next_tenth * total <= done * 10:
                self.next_tenth += 1
        elif now - self.last_line < 10:  # unknown size: a line every 10 seconds
            return
        self.last_line = now
        rate = done / max(now - self.started, 1e-9)
        size = f"{format_bytes(done)}/{format_bytes(total)}" if total else format_bytes(done)
        eta = f" eta {format_duration((total - done) / rate)}" if total and rate > 0 else ""
        self.console.print(f"{self.label} {size} {format_bytes(rate)}/s{eta}", highlight=False, markup=False)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


class ImageProgress:
    """A bar with images done / total, img/s and ETA (terminal) or :class:`PlainProgress` lines (pipes), for
    ``segkit eval`` and other loops over images: ``with ImageProgress(console, n, "eval") as bar: bar.advance(k)``."""

    def __init__(self, console: Console, total: int, label: str = "eval", unit: str = "img/s",
                 noun: str = "images") -> None:
        self.console, self.total, self.label, self.unit, self.noun = console, total, label, unit, noun

    def __enter__(self) -> ImageProgress:
        if self.console.is_terminal:
            self.progress = Progress(*progress_columns(self.unit), console=self.console, transient=True,
                                     expand=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total)
            self.plain = None
        else:
            self.progress = None
            self.plain = PlainProgress(lambda t: self.console.print(t, highlight=False, markup=False),
                                       self.label, self.total, unit=self.noun)
        return self

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)
        else:
            self.plain.advance(n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def progress_columns(unit: str = "img/s") -> list[ProgressColumn]:
    return [TextColumn("[bold blue]{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)), TextColumn("ETA", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True)), RateColumn(unit)]




class SplitProgress:
    """``progress(split, done, total)`` (``segkit check-data``) drawn as one :class:`ImageProgress` per split."""

    def __init__(self, console: Console, verb: str = "check") -> None:
        self.console, self.verb = console, verb
        self.split, self.bar, self.done = None, None, 0

    def __call__(self, split: str, done: int, total: int) -> None:
        if split != self.split:
            self.close()
            self.bar = ImageProgress(self.console, total, f"{self.verb} {split}", unit="samples/s",
                                     noun="samples").__enter__()
            self.split, self.done = split, 0
        self.bar.advance(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> SplitProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
