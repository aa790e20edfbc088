"""Checking every component table of a recipe against its registered class, before anything is built."""

from __future__ import annotations

from ..errors import RecipeError
from ..registry import DATASETS, OPTIMIZERS, SCHEDULERS, TRANSFORMS
from .schema import Recipe

# keys the dataset builder supplies itself
DATASET_PROVIDED = ("mode", "seed", "set", "rootdir")


def dataset_split_cfg(recipe: Recipe, mode: str) -> dict:
    """SSSegmentation's rule: the ``train`` (or ``test``) table is merged into the top level for that mode."""
    cfg = recipe.dataset.model_dump()
    train, test = cfg.pop("train"), cfg.pop("test")
    return {**cfg, **(train if mode == "TRAIN" else test)}


def check_dataset(recipe: Recipe) -> None:
    for mode, split in (("TRAIN", "train"), ("TEST", "test")):
        cfg = dataset_split_cfg(recipe, mode)
        pipelines = cfg.get("data_pipelines", [])
        if not isinstance(pipelines, list):
            raise RecipeError(f"dataset.{split}.data_pipelines", "expected an array of tables")
        for i, step in enumerate(pipelines):
            TRANSFORMS.validate(step, path=f"dataset.{split}.data_pipelines[{i}]")
        shallow = {k: v for k, v in cfg.items() if k != "data_pipelines"}
        try:
            DATASETS.validate(shallow, path="dataset", provided=DATASET_PROVIDED)
        except RecipeError as exc:  # a key of the split table is reported where it is, not merged
            key = exc.path.removeprefix("dataset.").split(".")[0].split("[")[0]
            if exc.path.startswith("dataset.") and key in getattr(recipe.dataset, split) and \
                    key not in (recipe.dataset.model_extra or {}):
                raise RecipeError(f"dataset.{split}." + exc.path.removeprefix("dataset."), exc.message) from None
            raise


def check_optim(recipe: Recipe) -> None:
    opt = recipe.scheduler.optimizer.model_dump()
    for key in ("params_rules", "filter_params", "base_setting"):
        opt.pop(key)
    OPTIMIZERS.validate(opt, path="scheduler.optimizer", provided=("params",))
    SCHEDULERS.get(recipe.scheduler.type, path="scheduler.type")


def check_metrics(recipe: Recipe) -> None:
    """``inference.evaluate.metric_list`` names metrics that exist (every metric is computed; these are reported)."""
    from ..errors import SegkitError
    from ..evaluation.metrics import filter_metrics, result_keys

    try:
        filter_metrics(dict.fromkeys(result_keys()), recipe.inference.evaluate.metric_list)
    except SegkitError as exc:
        raise RecipeError("inference.evaluate.metric_list", str(exc)) from None


def check_components(recipe: Recipe) -> None:
    """Raise a path-qualified :class:`RecipeError` for the first bad component table."""
    from ..models.build import validate_model

    validate_model(recipe)
    check_dataset(recipe)
    check_optim(recipe)
    check_metrics(recipe)
