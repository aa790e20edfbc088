"""The run folder's pictures, redrawn at each evaluation:

- ``plots/loss.png``, ``plots/lr.png``, ``plots/miou.png``: curves from ``metrics.jsonl`` (matplotlib);
- ``eval/confusion_matrix.png`` (raw and row-normalised, class names on the axes; matplotlib) and ``.csv``;
- ``eval/per_class.csv``: every per-class metric with the class's pixel counts;
- ``vis/epoch_N/<id>.png``: image | ground truth | prediction of the fixed validation samples (OpenCV + Pillow).

matplotlib is the optional extra ``plots``. Without it the CSV files and the sample panels are still written,
and a single line says how to get the plots: drawing axes, ticks and labels is matplotlib's job, and a
hand-made OpenCV imitation would be worse and more code to keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..callbacks import Callback

if TYPE_CHECKING:
    from rich.console import Console

    from ..trainer import Trainer
    from .samples import ValidationSamples


class RunPictures(Callback):
    def __init__(self, work_dir: Path, samples: ValidationSamples, console: Console | None = None) -> None:
        self.work_dir, self.samples, self.console = Path(work_dir), samples, console
        self.warned = False

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if trainer.last_eval_epoch != epoch or not trainer.metrics:
            return
        from ...viz import plots, tables
        from ...viz.draw import write_png

        eval_dir = self.work_dir / "eval"
        matrix = trainer.confusion.mat.cpu().numpy() if getattr(trainer, "confusion", None) is not None else None
        names = list(trainer.metrics["IoU"])
        if matrix is not None:
            tables.write_confusion_csv(eval_dir / "confusion_matrix.csv", matrix, names)
        tables.write_per_class_csv(eval_dir / "per_class.csv", trainer.metrics, matrix)
        for name, panel in self.samples.get(trainer):
            write_png(self.work_dir / "vis" / f"epoch_{epoch}" / f"{safe_name(name)}.png", panel)
        if not plots.have_matplotlib():
            self.warn(trainer)
            return
        plots.plot_run(self.work_dir)
        if matrix is not None:
            plots.plot_confusion(matrix, names, eval_dir / "confusion_matrix.png", title=f"epoch {epoch}")

    def warn(self, trainer: Trainer) -> None:
        if self.warned:
            return
        self.warned = True
        text = f"note: no plots or confusion_matrix.png ({plots_hint()}); the CSV files and vis/ are written"
        if self.console is not None:
            self.console.print(text, highlight=False, markup=False)
        with (self.work_dir / "log.txt").open("a") as fh:
            fh.write(text + "\n")


def plots_hint() -> str:
    from ...viz.plots import INSTALL_HINT

    return INSTALL_HINT


def safe_name(name: str) -> str:
    """A sample id as a file name (ids may hold folders: ``a/b`` -> ``a_b``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "sample"
