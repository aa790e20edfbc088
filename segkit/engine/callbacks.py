"""Small callbacks around the training loop: progress display, logs, evaluation, checkpoints.

Each has ``on_train_start``, ``on_step_end``, ``on_epoch_end``, ``on_train_end``; only rank 0 gets the ones that
write files or draw. Order matters at the end of an epoch: evaluation runs before checkpointing, so the best
checkpoint knows the latest metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.progress import Progress
from rich.text import Text

from .checkpoint import (
    atomic_write_bytes,
    check_finite_losses,
    describe_checkpoint,
    save_epoch_checkpoints,
    save_iteration_checkpoint,
)
from .report.display import (  # noqa: F401  (ImageProgress, RateColumn: part of this module's API)
    ImageProgress,
    PlainProgress,
    RateColumn,
    format_duration,
    progress_columns,
)

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Hooks of :meth:`Trainer.fit`; every one is optional. ``on_eval_*`` surround each evaluation (also the
    one inside an epoch), ``on_interrupt`` runs on Ctrl-C before the ``KeyboardInterrupt`` propagates."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: dict) -> None: ...
    def on_eval_start(self, trainer: Trainer, total: int) -> None: ...
    def on_eval_batch(self, trainer: Trainer, n: int) -> None: ...
    def on_eval_end(self, trainer: Trainer, metrics: dict) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...
    def on_interrupt(self, trainer: Trainer) -> None: ...


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write."""
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(data, indent=2) + "\n").encode()))


def format_logs(logs: dict) -> str:
    losses = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k.startswith("loss"))
    text = f"{losses} lr={logs['lr']:.3e} {logs['imgs_per_s']:.1f} img/s"
    if "data_time_s" in logs:
        text += f" data {logs['data_time_s'] * 1000:.0f}ms"
    if "gpu_mem_mib" in logs:
        text += f" mem {logs['gpu_mem_mib'] / 1024:.2f}G"
    return text


def reported_metrics(trainer: Trainer) -> dict:
    """The last evaluation's metrics that ``inference.evaluate.metric_list`` selects (what is printed and written;
    ``trainer.metrics`` keeps them all, for the best checkpoint, the trackers and the per-class tables)."""
    from ..evaluation.metrics import filter_metrics

    return filter_metrics(trainer.metrics, trainer.recipe.inference.evaluate.metric_list) if trainer.metrics else {}


def shows_best_miou(trainer: Trainer) -> bool:
    """Whether the best checkpoint's mIoU is printed: it is chosen by mIoU either way, but shown only when
    ``metric_list`` selects it."""
    from ..evaluation.metrics import filter_metrics, result_keys

    listed = filter_metrics(dict.fromkeys(result_keys()), trainer.recipe.inference.evaluate.metric_list)
    return trainer.best_miou >= 0 and "mIoU" in listed


def resume_command(trainer: Trainer) -> str:
    """The exact command that continues this run from ``checkpoints/last.pt``: the command line that started it
    with ``--resume`` (when it was ``segkit train``), else ``segkit train WORK_DIR/recipe.toml --resume``."""
    import shlex
    import sys

    args = list(sys.argv[1:])
    if args[:1] == ["train"]:
        kept, skip = [], False
        for i, tok in enumerate(args):
            if skip:
                skip = False
                continue
            if tok == "--resume":
                skip = i + 1 < len(args) and not args[i + 1].startswith("-")
                continue
            if tok.startswith("--resume="):
                continue
            kept.append(tok)
        return "segkit " + shlex.join([*kept, "--resume"])
    return "segkit " + shlex.join(["train", str(trainer.work_dir / "recipe.toml"), "--resume"])


def stop_message(trainer: Trainer) -> str:
    """Where an interrupted run stopped and how to continue it."""
    where = (f"interrupted in epoch {trainer.epoch}/{trainer.max_epochs} at iteration "
             f"{trainer.iteration}/{trainer.max_iters}")
    last = trainer.work_dir / "checkpoints" / "last.pt"
    held = describe_checkpoint(last)  # memory-mapped: only the small entries are read
    if held is None:
        return f"{where}; no checkpoint was written yet: start the same command again"
    return f"{where}; {last} holds {held}; continue with: {resume_command(trainer)}"


class RunLog(Callback):
    """``log.txt`` (human lines) and ``metrics.jsonl`` (one JSON object per logged step and per evaluation)."""

    def __init__(self, work_dir: Path, interval: int) -> None:
        self.log_path, self.jsonl_path, self.interval = work_dir / "log.txt", work_dir / "metrics.jsonl", interval

    def line(self, text: str) -> None:
        with self.log_path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} INFO  {text}\n")

    def record(self, data: dict) -> None:
        with self.jsonl_path.open("a") as fh:
            fh.write(json.dumps(data) + "\n")

    def on_train_start(self, trainer: Trainer) -> None:
        self.started = time.perf_counter()
        if getattr(trainer, "resumed", None):  # the log so far is the earlier attempt's; say where this one starts
            self.line(f"{trainer.resumed}; the lines above that come after iteration {trainer.iteration} are the "
                      "interrupted attempt's, run again from here")
        self.line(f"training {trainer.recipe.type} on {trainer.recipe.dataset.type}: {trainer.summary()}")
        self.line(trainer.cpu_plan.describe())

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.iteration % self.interval == 0 or trainer.iteration == trainer.max_iters:
            self.record({"kind": "train", **logs})
            self.line(f"epoch {logs['epoch']}/{trainer.max_epochs} iter {logs['iter']}/{trainer.max_iters} "
                      + format_logs(logs))

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if trainer.last_eval_epoch == epoch and trainer.metrics:
            from ..evaluation.metrics import metric_summary

            selected = reported_metrics(trainer)
            self.record({"kind": "eval", "epoch": epoch, "iter": trainer.iteration, **selected})
            self.line(f"eval epoch {epoch}: {metric_summary(selected)}")

    def on_train_end(self, trainer: Trainer) -> None:
        self.line(f"finished in {format_duration(time.perf_counter() - self.started)}")

    def on_interrupt(self, trainer: Trainer) -> None:
        self.line(stop_message(trainer))


class TrainProgress(Progress):
    """A progress display whose bar, M/N and ETA come first on one line (they fit 80 columns), with the task's
    ``logs`` field (losses, lr, memory) on the next line, cut with an ellipsis rather than wrapped."""

    def get_renderables(self):
        table = self.make_tasks_table(self.tasks)
        lines = [Text(str(t.fields.get("logs", "")), no_wrap=True, overflow="ellipsis")
                 for t in self.tasks if t.visible and t.fields.get("logs")]
        yield Group(table, *lines)


class ProgressDisplay(Callback):
    """A rich progress bar (terminal) or plain log lines (pipes, CI): epoch, iteration, losses, lr, speed, ETA;
    an evaluation bar (images, img/s, ETA); one summary line per epoch kept in the scrollback; the stop line on
    Ctrl-C and the total time at the end."""

    def __init__(self, console: Console, interval: int) -> None:
        self.console, self.interval = console, interval
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.eval_task = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.started = self.epoch_started = time.perf_counter()
        self.last_logs: dict = {}
        from rich.markup import escape

        # wrapped at word boundaries on a terminal (the CLI's console soft-wraps), one line in a file
        self.console.print(f"[bold]segkit train[/] {escape(trainer.summary())}", highlight=False,
                           soft_wrap=not self.live)
        self.console.print(trainer.cpu_plan.describe(), highlight=False, markup=False, soft_wrap=not self.live)
        if self.live:
            self.progress = TrainProgress(*progress_columns(), console=self.console, transient=False,
                                          expand=True)
            self.progress.start()
            self.task = self.progress.add_task(f"epoch {trainer.epoch}/{trainer.max_epochs}",
                                               total=trainer.max_iters, completed=trainer.iteration, logs="")

    def print(self, text: str) -> None:
        """A line kept in the scrollback: wrapped at word boundaries on a terminal, one line in a file."""
        with self._live_lock():
            (self.progress.console if self.progress is not None else self.console).print(
                text, highlight=False, markup=False, soft_wrap=not self.live)

    def _live_lock(self):
        """The live display's lock, held while this thread prints: rich's refresh thread could otherwise redraw
        between this print's cursor move (computed from the last drawn height) and its write, and the move would
        then erase the summary line above the bars (seen when the evaluation bar disappeared)."""
        import contextlib

        live = getattr(self.progress, "live", None)
        return getattr(live, "_lock", None) or contextlib.nullcontext()

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        self.last_logs = logs
        if self.progress is not None:
            self.progress.update(self.task, completed=trainer.iteration, logs=format_logs(logs),
                                 description=f"epoch {logs['epoch']}/{trainer.max_epochs}", rate=logs["imgs_per_s"])
        elif trainer.iteration % self.interval == 0 or trainer.iteration == trainer.max_iters:
            eta = logs["eta_s"]
            self.print(f"epoch {logs['epoch']}/{trainer.max_epochs} iter {trainer.iteration}/"
                       f"{trainer.max_iters} eta {format_duration(eta)} {format_logs(logs)}")

    def on_eval_start(self, trainer: Trainer, total: int) -> None:
        self.eval_total, self.eval_done, self.eval_started = total, 0, time.perf_counter()
        if self.progress is not None:
            self.eval_task = self.progress.add_task("eval", total=total, logs="")
        else:
            self.eval_lines = PlainProgress(self.print, "eval", total)

    def on_eval_batch(self, trainer: Trainer, n: int) -> None:
        self.eval_done = min(self.eval_done + n, self.eval_total)
        if self.eval_task is not None:
            self.progress.update(self.eval_task, completed=self.eval_done)
        else:
            self.eval_lines.advance(n)

    def on_eval_end(self, trainer: Trainer, metrics: dict) -> None:
        if self.eval_task is not None:
            with self._live_lock():
                self.progress.remove_task(self.eval_task)
                self.progress.refresh()  # drawn now, by this thread: the next print moves over the right height
            self.eval_task = None
        seconds = time.perf_counter() - self.eval_started
        self.eval_line = f"eval {format_duration(seconds)}, {self.eval_done / max(seconds, 1e-9):.1f} img/s"

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        now = time.perf_counter()
        logs = self.last_logs
        text = f"epoch {epoch}/{trainer.max_epochs} done in {format_duration(now - self.epoch_started)}"
        if logs:
            text += f": loss {logs.get('loss_total', float('nan')):.4f} lr {logs['lr']:.2e} " \
                    f"{logs['imgs_per_s']:.1f} img/s"
            if "gpu_mem_mib" in logs:
                text += f" mem {logs['gpu_mem_mib'] / 1024:.2f}G"
        if trainer.last_eval_epoch == epoch and trainer.metrics:
            from ..evaluation.metrics import metric_summary

            text += f" | {metric_summary(reported_metrics(trainer))}"
            if getattr(self, "eval_line", None):
                text += f" ({self.eval_line})"
        self.print(text)
        self.epoch_started = now

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
        best = f"; best mIoU {trainer.best_miou:.4f}" if shows_best_miou(trainer) else ""
        self.console.print(f"finished {trainer.max_epochs} epochs ({trainer.iteration} iterations) in "
                           f"{format_duration(time.perf_counter() - self.started)}{best}", highlight=False)

    def on_interrupt(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.console.print(Text(stop_message(trainer), style="yellow"), highlight=False, soft_wrap=True)


class Checkpointer(Callback):
    """``last.pt`` (full state) each epoch, and every ``save_interval_iters`` iterations inside an epoch when that is
    set; ``best.pt`` (weights and EMA) when the mIoU improves, ``epoch_N.pt`` every ``save_interval_epochs`` when
    that is set (the newest ``max_keep_ckpts`` kept); a non-finite loss stops training, keeping the last good
    checkpoint. See :mod:`segkit.engine.checkpoint`."""

    def __init__(self, ckpt_dir: Path, save_interval: int | None = None) -> None:
        self.dir, self.save_interval = ckpt_dir, save_interval

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        check_finite_losses(trainer, logs, self.dir)
        every = getattr(trainer.recipe, "save_interval_iters", None)
        if every and trainer.iteration % every == 0:
            save_iteration_checkpoint(trainer, self.dir)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        save_epoch_checkpoints(trainer, epoch, self.dir, self.save_interval,
                               getattr(trainer.recipe, "max_keep_ckpts", None))
