"""The W&B and MLflow callbacks against recording doubles of their modules (neither package is a dependency):
what each is sent for a run, in the order the loop sends it."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from segkit.engine.report.mlflow_backend import MlflowReporter
from segkit.engine.report.samples import ValidationSamples
from segkit.engine.report.wandb_backend import WandbReporter


class FakeTrainer:
    """What a Reporter reads from the trainer at each event."""

    def __init__(self, recipe) -> None:
        self.recipe, self.iteration, self.max_iters, self.best_miou = recipe, 0, 2, -1.0
        self.last_eval_epoch, self.metrics = 0, {}


class Panels(ValidationSamples):
    def get(self, trainer):
        return [("val_00000", np.zeros((4, 6, 3), np.uint8))]


def drive(reporter, recipe):
    trainer = FakeTrainer(recipe)
    reporter.on_train_start(trainer)
    trainer.iteration = 1
    reporter.on_step_end(trainer, {"epoch": 1, "iter": 1, "lr": 0.1, "loss_cls": 1.5, "loss_total": 2.0,
                                   "imgs_per_s": 10.0, "eta_s": 1.0, "data_time_s": 0.01})
    trainer.iteration, trainer.last_eval_epoch, trainer.best_miou = 2, 1, 0.5
    trainer.metrics = {"mIoU": 0.5, "mAcc": 0.6, "aAcc": 0.7, "IoU": {"background": 0.9, "disc": None}}
    reporter.on_epoch_end(trainer, 1)
    reporter.on_train_end(trainer)


@pytest.fixture
def recipe(tiny_recipe):
    from segkit.recipe import load_recipe

    return load_recipe(tiny_recipe)


def test_wandb_reporter(recipe, tmp_path, monkeypatch):
    calls = []

    class Run:
        summary = {}

        def log(self, data, step):
            calls.append(("log", dict(data), step))

        def finish(self):
            calls.append(("finish",))

    module = types.ModuleType("wandb")
    module.init = lambda **kw: calls.append(("init", kw)) or Run()
    module.Image = lambda array: ("Image", array.shape)
    monkeypatch.setitem(sys.modules, "wandb", module)
    drive(WandbReporter(tmp_path, Panels(), interval=1), recipe)
    assert calls[0][0] == "init" and calls[0][1]["config"]["num_classes"] == 5
    assert calls[1] == ("log", {"train/loss_cls": 1.5, "train/loss_total": 2.0, "train/lr": 0.1,
                                "train/imgs_per_s": 10.0, "train/data_time_s": 0.01}, 1)
    evals = calls[2][1]
    assert evals["val/mIoU"] == 0.5 and evals["val/IoU/background"] == 0.9 and "val/IoU/disc" not in evals
    assert calls[3] == ("log", {"val_samples/val_00000": ("Image", (4, 6, 3))}, 2)
    assert calls[-1] == ("finish",)


def test_mlflow_reporter(recipe, tmp_path, monkeypatch):
    calls = []
    module = types.ModuleType("mlflow")
    module.start_run = lambda run_name: calls.append(("start", run_name))
    module.log_params = lambda params: calls.append(("params", len(params)))
    module.log_text = lambda text, name: calls.append(("text", name, "num_classes = 5" in text))
    module.log_metrics = lambda values, step: calls.append(("metrics", dict(values), step))
    module.log_image = lambda image, name: calls.append(("image", name, image.shape))
    module.end_run = lambda: calls.append(("end",))
    monkeypatch.setitem(sys.modules, "mlflow", module)
    drive(MlflowReporter(tmp_path, Panels(), interval=1), recipe)
    assert calls[0] == ("start", "run")
    assert all(0 < c[1] <= 100 for c in calls if c[0] == "params")  # MLflow's batch limit
    assert ("text", "recipe.toml", True) in calls
    assert ("image", "val_samples/val_00000_step2.png", (4, 6, 3)) in calls
    final = [c for c in calls if c[0] == "metrics"][-1]
    assert final == ("metrics", {"hparam/mIoU": 0.5, "hparam/best_mIoU": 0.5}, 2)
    assert calls[-1] == ("end",)
