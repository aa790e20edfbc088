"""Every ``recipes/_base/datasets/*.toml`` validates when combined with a segmentor base, and names a preparer."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from segkit.recipe.check import check_components
from segkit.recipe.load import resolve_raw
from segkit.recipe.schema import Recipe
from segkit.registry import DATASETS, PREPARERS, TRANSFORMS

REPO = Path(__file__).resolve().parents[2]
BASES = sorted((REPO / "recipes" / "_base" / "datasets").glob("*.toml"))
SSSEG_CONFIGS = {  # SSSegmentation's ssseg/configs/_base_/datasets (vocaug_512x512 is voc_aug_512x512 here)
    "ade20k_512x512", "ade20k_640x640", "atr_473x473", "chasedb1_128x128", "cihp_473x473", "cityscapes_1024x1024",
    "cityscapes_512x1024", "cityscapes_768x768", "cityscapes_769x769", "cityscapes_832x832", "cocostuff10k_512x512",
    "cocostuff10k_640x640", "cocovocsub_512x512", "cocovocsub_mobilevit_512x512", "drive_64x64", "hrf_256x256",
    "lip_473x473", "pascalcontext59_480x480", "pascalcontext59_640x640", "pascalcontext_480x480", "stare_128x128",
    "voc_aug_512x512", "voc_aug_mobilevit_512x512", "vspw_512x512",
}


def combined(tmp_path: Path, base: Path) -> tuple[dict, list]:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'extends = ["{REPO}/recipes/_base/segmentors/fcn.toml", "{base}"]\n'
        "num_classes = 2\n[backbone]\nstructure_type = \"resnet18\"\npretrained = false\n"
    )
    return resolve_raw(recipe)


def leaf_datasets(dataset: dict) -> list[tuple[str, dict]]:
    """``(mode, table)`` of every concrete dataset: the base itself, or each part of a MultipleDataset."""
    if dataset["type"] != "MultipleDataset":
        return [(mode, {**dataset, **dataset[mode]}) for mode in ("train", "test")]
    return [(mode, {**part, **part.get(mode, {})}) for mode in ("train", "test")
            for part in dataset[mode].values() if isinstance(part, dict) and "type" in part]


def pipeline_steps(dataset: dict) -> list[dict]:
    return [step for _, table in leaf_datasets(dataset) for step in table.get("data_pipelines", [])]


def fully_checkable(raw: dict) -> bool:
    """The dataset class and every transform the base names are registered (others are still being written)."""
    return raw["dataset"]["type"] in DATASETS.names() and all(
        s["type"] in TRANSFORMS.names() for s in pipeline_steps(raw["dataset"]))


def test_every_sssegmentation_dataset_config_has_a_base():
    assert {b.stem for b in BASES} >= SSSEG_CONFIGS | {"synthetic"}


@pytest.mark.parametrize("base", BASES, ids=lambda p: p.stem)
def test_base_validates_with_a_segmentor(tmp_path, base):
    raw, _ = combined(tmp_path, base)
    try:
        recipe = Recipe.model_validate(raw)
    except pydantic.ValidationError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"{base.name}: {exc}")
    for mode, table in leaf_datasets(recipe.dataset.model_dump()):
        assert table["set"], f"{base.name}: dataset.{mode}.set"
    if fully_checkable(raw):
        check_components(recipe)  # arguments of the dataset class and of every pipeline step
    elif base.stem in {"voc_aug_512x512", "synthetic"}:
        pytest.fail(f"{base.name}: VOCDataset/SyntheticDataset and the standard transforms are always registered")


@pytest.mark.parametrize("base", [b for b in BASES if b.stem != "synthetic"], ids=lambda p: p.stem)
def test_base_names_its_preparer_and_its_default_folder(tmp_path, base):
    """``# Data: segkit prepare-data NAME`` names a preparer whose folder is the base's ``rootdir``."""
    text = base.read_text()
    names = re.findall(r"segkit prepare-data (\w+) --root data", text)
    assert names and all(n in PREPARERS.names() for n in names), base.name
    raw, _ = combined(tmp_path, base)
    folders = {f"data/{PREPARERS.get(n).dirname}" for n in names}
    if raw["dataset"]["type"] == "MultipleDataset":  # parts' rootdirs are relative to the top one
        parts = {f"{raw['dataset']['rootdir']}/{t['rootdir']}" for _, t in leaf_datasets(raw["dataset"])}
        assert parts <= folders, (parts, folders)
    else:
        assert raw["dataset"]["rootdir"] in folders


def test_test_pipelines_do_not_rescale_randomly(tmp_path):
    """SSSegmentation's test Resize has scale_range=None; TOML has no null, so the bases give [1.0, 1.0]."""
    for base in BASES:
        raw, _ = combined(tmp_path, base)
        tests = [t for mode, t in leaf_datasets(raw["dataset"]) if mode == "test"]
        for step in [step for table in tests for step in table.get("data_pipelines", [])]:
            if step["type"] == "Resize":
                assert step.get("scale_range") == [1.0, 1.0], base.name
