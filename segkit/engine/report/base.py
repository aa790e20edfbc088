"""The tracker callback: the loop's events as scalars, images and text; a backend says how to write them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..callbacks import Callback

if TYPE_CHECKING:
    from ..trainer import Trainer
    from .samples import ValidationSamples

TRAIN_KEYS = {"lr": "train/lr", "imgs_per_s": "train/imgs_per_s", "data_time_s": "train/data_time_s",
              "gpu_mem_mib": "train/gpu_mem_mib"}
"""Step log keys (besides the ``loss*`` terms) -> scalar tags."""


def train_scalars(logs: dict) -> dict[str, float]:
    """Every loss term, lr, img/s, data time and (CUDA) GPU memory of one logged step."""
    out = {f"train/{k}": float(v) for k, v in logs.items() if k.startswith("loss")}
    out.update({tag: float(logs[k]) for k, tag in TRAIN_KEYS.items() if k in logs})
    return {k: v for k, v in out.items() if math.isfinite(v)}


def eval_scalars(metrics: dict) -> dict[str, float]:
    """mIoU/mAcc/aAcc (and the other means) plus per-class IoU (``val/IoU/<class>``); undefined values dropped."""
    out = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, value in (metrics.get("IoU") or {}).items():
        out[f"val/IoU/{name}"] = value
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def flat_recipe(trainer: Trainer) -> dict[str, Any]:
    """The resolved recipe as ``{"a.b.c": scalar}`` (lists and ``None`` as text), for hyper-parameter tables."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    walk("", trainer.recipe.model_dump(mode="json"))
    return out


class Reporter(Callback):
    """Sends train scalars every ``interval`` iterations and, at each evaluation, the evaluation scalars and the
    validation sample panels; the recipe (TOML text and flat hyper-parameters) at the start.

    Backends implement :meth:`start`, :meth:`scalars`, :meth:`image`, :meth:`finish`."""

    def __init__(self, work_dir: Path, samples: ValidationSamples, interval: int) -> None:
        self.work_dir, self.samples, self.interval = Path(work_dir), samples, max(int(interval), 1)

    # ----------------------------------------------------------- backend interface
    def start(self, trainer: Trainer, recipe_toml: str, hparams: dict[str, Any]) -> None:
        raise NotImplementedError

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        raise NotImplementedError

    def finish(self, trainer: Trainer, final: dict[str, float]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------- loop events
    def on_train_start(self, trainer: Trainer) -> None:
        from ...recipe.toml_write import recipe_to_toml

        self.start(trainer, recipe_to_toml(trainer.recipe), flat_recipe(trainer))

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.iteration % self.interval == 0 or trainer.iteration == trainer.max_iters:
            self.scalars(train_scalars(logs), trainer.iteration)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if trainer.last_eval_epoch != epoch or not trainer.metrics:
            return
        self.scalars({**eval_scalars(trainer.metrics), "val/epoch": float(epoch)}, trainer.iteration)
        for name, panel in self.samples.get(trainer):
            self.image(f"val_samples/{name}", panel, trainer.iteration)

    def on_train_end(self, trainer: Trainer) -> None:
        final = {"hparam/mIoU": trainer.metrics.get("mIoU")} if trainer.metrics else {}
        if trainer.best_miou >= 0:
            final["hparam/best_mIoU"] = trainer.best_miou
        self.finish(trainer, {k: float(v) for k, v in final.items() if v is not None})

    def on_interrupt(self, trainer: Trainer) -> None:
        self.finish(trainer, {})
