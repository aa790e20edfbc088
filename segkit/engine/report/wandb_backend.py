"""Weights & Biases (when ``wandb`` is installed; it follows its own ``WANDB_MODE``/login settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Reporter

if TYPE_CHECKING:
    from ..trainer import Trainer


class WandbReporter(Reporter):
    run = None

    def start(self, trainer: Trainer, recipe_toml: str, hparams: dict[str, Any]) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="segkit", name=trainer.recipe.name, dir=str(self.work_dir),
                              config=trainer.recipe.model_dump(mode="json"), resume="allow")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(rgb)}, step=step)

    def finish(self, trainer: Trainer, final: dict[str, float]) -> None:
        if self.run is not None:
            self.run.summary.update(final)
            self.run.finish()
            self.run = None
