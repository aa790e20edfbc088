"""Experiment tracking and run pictures, as callbacks of the training loop.

``report_to`` in the recipe (or ``segkit train --report-to``) picks the trackers: ``tensorboard``
(``torch.utils.tensorboard``; the default when the ``tensorboard`` package is installed), ``wandb`` and ``mlflow``
(when their packages are installed). Each is a :class:`~segkit.engine.report.base.Reporter`: the loop's events
become scalars, images and the recipe text, and a backend only says how to write those. ``metrics.jsonl`` stays
the source of truth; trackers are views of it.

:class:`~segkit.engine.report.pictures.RunPictures` writes the run folder's pictures at each evaluation
(``plots/``, ``eval/confusion_matrix.{png,csv}``, ``eval/per_class.csv``, ``vis/epoch_N/``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import SegkitError, did_you_mean

if TYPE_CHECKING:
    from rich.console import Console

    from ..callbacks import Callback
    from ..trainer import Trainer

BACKENDS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", 'pip install "segkit[tensorboard]"'),
    "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow"),
}
"""Tracker name -> (the package it needs, how to install it)."""


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def resolve_report_to(value: Sequence[str] | None) -> list[str]:
    """The trackers to use: ``None`` means TensorBoard when installed (else none); ``[]`` or ``["none"]`` none.
    An unknown name or a tracker whose package is missing is an error saying what to install."""
    if value is None:
        return ["tensorboard"] if installed("tensorboard") else []
    names = [v.strip().lower() for v in value if v.strip()]
    if names in ([], ["none"]):
        return []
    for name in names:
        if name not in BACKENDS:
            raise SegkitError(f"report_to: unknown tracker '{name}'{did_you_mean(name, BACKENDS)}; "
                              f"known: {', '.join(BACKENDS)} (or \"none\")")
        package, hint = BACKENDS[name]
        if not installed(package):
            raise SegkitError(f"report_to: '{name}' needs the {package} package, which is not installed: {hint} "
                              "(or leave it out of report_to / --report-to)")
    return list(dict.fromkeys(names))


def build_reporters(trainer: Trainer, console: Console) -> list[Callback]:
    """The tracker callbacks of ``trainer.recipe.report_to`` plus the run pictures (rank 0 only)."""
    from .pictures import RunPictures
    from .samples import ValidationSamples

    recipe = trainer.recipe
    samples = ValidationSamples(getattr(recipe, "vis_samples", 4))
    callbacks: list[Callback] = [RunPictures(trainer.work_dir, samples, console)]
    interval = recipe.training_logging_manager_cfg.log_interval_iters or max(len(trainer.train_loader), 1)
    for name in resolve_report_to(getattr(recipe, "report_to", None)):
        if name == "tensorboard":
            from .tensorboard_backend import TensorBoardReporter as cls
        elif name == "wandb":
            from .wandb_backend import WandbReporter as cls
        else:
            from .mlflow_backend import MlflowReporter as cls
        callbacks.append(cls(trainer.work_dir, samples, interval))
    return callbacks
