"""From a recipe's ``dataset`` table to a dataset object (the only config -> dataset code)."""

from __future__ import annotations

from typing import Any

from ...errors import DataError, RecipeError
from ...registry import DATASETS
from ..transforms import build_pipeline

SECTIONS = {"TRAIN": "train", "TEST": "test"}


def build_dataset(dataset_cfg: dict[str, Any], mode: str, seed: int = 0, path: str = "dataset"):
    """Build the ``mode`` (``'TRAIN'`` or ``'TEST'``) dataset from an SSSegmentation-style table.

    ``dataset_cfg`` is ``{'type', 'rootdir', 'train': {'set', 'data_pipelines', ...}, 'test': {...}, ...}``: the
    ``train`` (or ``test``) table is merged over the top-level keys, as SSSegmentation's builder does, its
    ``data_pipelines`` become a :class:`~segkit.data.transforms.Compose`, and ``DATASETS`` builds the result.
    Errors name the recipe path of the offending key (``dataset.train.data_pipelines[2].prob``).
    """
    mode = mode.upper()
    if mode not in SECTIONS:
        raise ValueError(f"mode must be 'TRAIN' or 'TEST', got {mode!r}")
    section = SECTIONS[mode]
    if not isinstance(dataset_cfg, dict):
        raise RecipeError(path, "expected a table")
    top = {k: v for k, v in dataset_cfg.items() if k not in SECTIONS.values()}
    chosen = dataset_cfg.get(section) or {}
    if not isinstance(chosen, dict):
        raise RecipeError(f"{path}.{section}", "expected a table")
    merged = {**top, **chosen}
    pipeline_path = (
        f"{path}.{section}.data_pipelines" if "data_pipelines" in chosen else f"{path}.data_pipelines"
    )
    pipeline = build_pipeline(merged.pop("data_pipelines", None) or [], path=pipeline_path)
    for key in ("mode", "seed"):
        if key in merged:
            where = f"{path}.{section}.{key}" if key in chosen else f"{path}.{key}"
            raise RecipeError(where, f"'{key}' is set by segkit, not by the recipe")
    try:
        return DATASETS.build(merged, path=path, data_pipelines=pipeline, mode=mode, seed=seed)
    except RecipeError as exc:
        raise _locate(exc, path, section, chosen) from None
    except DataError as exc:
        message = str(exc)
        if " not found: " in message and "rootdir" in merged and "rootdir" not in message:  # name the recipe key
            where = f"{path}.{section}.rootdir" if "rootdir" in chosen else f"{path}.rootdir"
            message += f" (the recipe's {where} = {str(merged['rootdir'])!r}"
            message += ")" if "; run `" in message else "; point it at your data or --set it)"
            raise DataError(message) from None
        raise


def _locate(exc: RecipeError, path: str, section: str, chosen: dict) -> RecipeError:
    """Re-point an error on a merged key to the table it came from (``dataset.key`` -> ``dataset.train.key``)."""
    prefix = f"{path}."
    if not exc.path.startswith(prefix):
        return exc
    key = exc.path[len(prefix) :].split(".", 1)[0]
    if key not in chosen:
        return exc
    text = str(exc)[len(exc.source) + 2 :] if exc.source else str(exc)
    message = text[len(exc.path) + 2 :]
    return RecipeError(f"{path}.{section}.{exc.path[len(prefix) :]}", message, source=exc.source)
