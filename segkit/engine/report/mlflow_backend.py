"""MLflow (when ``mlflow`` is installed; it follows ``MLFLOW_TRACKING_URI``, by default ``./mlruns``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Reporter

if TYPE_CHECKING:
    from ..trainer import Trainer


class MlflowReporter(Reporter):
    active = False

    def start(self, trainer: Trainer, recipe_toml: str, hparams: dict[str, Any]) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.start_run(run_name=trainer.recipe.name)
        self.active = True
        items = [(k, str(v)[:500]) for k, v in hparams.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            mlflow.log_params(dict(items[i : i + 100]))
        mlflow.log_text(recipe_toml, "recipe.toml")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        self.mlflow.log_image(rgb, f"{tag}_step{step}.png")

    def finish(self, trainer: Trainer, final: dict[str, float]) -> None:
        if self.active:
            if final:
                self.mlflow.log_metrics(final, step=trainer.iteration)
            self.mlflow.end_run()
            self.active = False
