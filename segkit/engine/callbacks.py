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

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .checkpoint import atomic_write_bytes, save_checkpoint

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: dict) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write."""
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(data, indent=2) + "\n").encode()))


def format_logs(logs: dict) -> str:
    losses = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k.startswith("loss"))
    return f"{losses} lr={logs['lr']:.3e} {logs['imgs_per_s']:.1f} img/s"


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
        self.line(f"training {trainer.recipe.type} on {trainer.recipe.dataset.type}: {trainer.summary()}")

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.iteration % self.interval == 0 or trainer.iteration == trainer.max_iters:
            self.record({"kind": "train", **logs})
            self.line(f"epoch {logs['epoch']}/{trainer.max_epochs} iter {logs['iter']}/{trainer.max_iters} "
                      + format_logs(logs))

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if trainer.last_eval_epoch == epoch and trainer.metrics:
            self.record({"kind": "eval", "epoch": epoch, "iter": trainer.iteration, **trainer.metrics})
            self.line(f"eval epoch {epoch}: mIoU={trainer.metrics['mIoU']:.4f} aAcc={trainer.metrics['aAcc']:.4f}")


class ProgressDisplay(Callback):
    """A rich progress bar (terminal) or plain log lines (pipes, CI): epoch, iteration, losses, lr, speed, ETA."""

    def __init__(self, console: Console, interval: int) -> None:
        self.console, self.interval = console, interval
        self.live = console.is_terminal
        self.progress: Progress | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.console.print(f"[bold]segkit train[/] {trainer.summary()}")
        if self.live:
            self.progress = Progress(
                TextColumn("[bold blue]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[logs]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=trainer.max_iters, completed=trainer.iteration,
                                               epoch=f"{trainer.epoch}/{trainer.max_epochs}", logs="")

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=trainer.iteration, logs=format_logs(logs),
                                 epoch=f"{logs['epoch']}/{trainer.max_epochs}")
        elif trainer.iteration % self.interval == 0 or trainer.iteration == trainer.max_iters:
            eta = logs["eta_s"]
            self.console.print(f"epoch {logs['epoch']}/{trainer.max_epochs} iter {trainer.iteration}/"
                               f"{trainer.max_iters} {format_logs(logs)} eta {eta // 60:.0f}m{eta % 60:02.0f}s",
                               highlight=False, soft_wrap=True)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if trainer.last_eval_epoch == epoch and trainer.metrics:
            m = trainer.metrics
            self.console.print(f"[green]eval[/] epoch {epoch}: mIoU {m['mIoU']:.4f}  mAcc {m['mAcc']:.4f}  "
                               f"aAcc {m['aAcc']:.4f}", highlight=False)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()


class Checkpointer(Callback):
    """``checkpoints/epoch_N.pt`` every ``save_interval_epochs`` and at the end, ``last.pt`` each epoch,
    ``best.pt`` when the mIoU improves."""

    def __init__(self, ckpt_dir: Path, save_interval: int) -> None:
        self.dir, self.save_interval = ckpt_dir, save_interval

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        state = trainer.state_dict()
        if epoch % self.save_interval == 0 or epoch == trainer.max_epochs:
            save_checkpoint(state, self.dir / f"epoch_{epoch}.pt")
        if trainer.last_eval_epoch == epoch and trainer.metrics:
            miou = trainer.metrics.get("mIoU") or 0.0
            if miou >= trainer.best_miou:
                trainer.best_miou = miou
                state["best_miou"] = miou
                save_checkpoint(state, self.dir / "best.pt")
        state["best_miou"] = trainer.best_miou
        save_checkpoint(state, self.dir / "last.pt")
