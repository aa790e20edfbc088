"""TensorBoard through ``torch.utils.tensorboard`` (the ``tensorboard`` extra): event files in ``work_dir/tb``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Reporter

if TYPE_CHECKING:
    from ..trainer import Trainer


class TensorBoardReporter(Reporter):
    """``tensorboard --logdir WORK_DIR/tb``: scalars, validation panels (HWC images), the recipe as text and,
    at the end, as hyper-parameters with the final and best mIoU."""

    writer = None

    def start(self, trainer: Trainer, recipe_toml: str, hparams: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.hparams = hparams
        self.writer = SummaryWriter(log_dir=str(self.work_dir / "tb"))
        fenced = "\n".join("    " + line for line in recipe_toml.splitlines())  # markdown code block
        self.writer.add_text("recipe", fenced, global_step=trainer.iteration)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, rgb, global_step=step, dataformats="HWC")

    def finish(self, trainer: Trainer, final: dict[str, float]) -> None:
        if self.writer is None:
            return
        if final:
            self.writer.add_hparams(self.hparams, final, run_name=".", global_step=trainer.iteration)
        self.writer.close()
        self.writer = None
