"""The shipped recipes build the models they describe."""

from __future__ import annotations

from pathlib import Path

from segkit.models.build import build_segmentor
from segkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fcn_r50_voc_has_sssegmentations_parameter_count():
    rec = load_recipe(REPO / "recipes/fcn_r50_voc.toml")
    assert rec.num_classes == 21 and rec.backbone["outstride"] == 8 and rec.scheduler.max_epochs == 60
    model = build_segmentor(rec, pretrained=False)
    assert count(model) == 40_066_954          # SSSegmentation's fcn_resnet50os8_voc
    assert count(model.backbone) == 23_527_264  # its ResNet-50 (3x3-conv stem) backbone


def test_quickstart_uses_the_synthetic_dataset():
    rec = load_recipe(REPO / "recipes/quickstart.toml")
    assert rec.dataset.type == "SyntheticDataset" and rec.num_classes == 5
