"""EMA, mixed precision on CPU (bfloat16 autocast) and --plugin components, end to end on the tiny recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from segkit import api


def test_ema_weights_are_saved_and_evaluable(tiny_recipe):
    api.train(tiny_recipe, ["ema_cfg.momentum=0.5", "scheduler.max_epochs=1"])
    run = tiny_recipe.parent / "run"
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["ema"].keys() == ckpt["model"].keys()
    key = next(k for k in ckpt["model"] if k.endswith("weight") and ckpt["model"][k].dim() == 4)
    assert not torch.equal(ckpt["ema"][key], ckpt["model"][key])  # averaged, not a copy
    metrics = api.evaluate(run, ema=True)
    assert 0.0 <= metrics["mIoU"] <= 1.0
    ssseg_style = run / "ssseg_style.pth"  # SSSegmentation 1.7 keeps the EMA weights under "model_ema"
    torch.save({"model": ckpt["model"], "model_ema": ckpt["ema"]}, ssseg_style)
    assert api.evaluate(run, checkpoint=ssseg_style, ema=True)["mIoU"] == metrics["mIoU"]


def test_fp16_cfg_pytorch_trains_on_cpu(tiny_recipe):
    metrics = api.train(tiny_recipe, ['fp16_cfg.type="pytorch"', "scheduler.max_epochs=1"])
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_fp16_apex_is_a_clear_error(tiny_recipe):
    from segkit.errors import RecipeError

    try:
        api.train(tiny_recipe, ['fp16_cfg.type="apex"'])
    except RecipeError as exc:
        assert exc.path == "fp16_cfg.type"
    else:
        raise AssertionError("apex should be refused")


PLUGIN = '''
from torch import nn
from segkit import BACKBONES

@BACKBONES.register("TwoLevelNet")
class TwoLevelNet(nn.Module):
    """A user backbone from a plugin."""

    def __init__(self, width: int = 8, pretrained: bool = False):
        super().__init__()
        self.a = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.b = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.feature_info = [{"num_chs": width, "reduction": 4, "module": "a"},
                             {"num_chs": 2 * width, "reduction": 8, "module": "b"}]

    def forward(self, x):
        a = self.a(x)
        return [a, self.b(a)]
'''


def test_plugin_registers_a_backbone_usable_from_a_recipe(tiny_recipe, tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    base = [sys.executable, "-m", "segkit", "--plugin", "my_plugin"]
    out = subprocess.run([*base, "list-registry", "backbones", "--json"], env=env, capture_output=True, text=True)
    assert "TwoLevelNet" in {r["name"] for r in json.loads(out.stdout)["backbones"]}
    head, rest = tiny_recipe.read_text().split("[backbone]")
    rest = rest[rest.index("\n["):]  # drop the ResNet table: a new `type` replaces the base's table whole
    tiny_recipe.write_text(head + '[backbone]\ntype = "TwoLevelNet"\nwidth = 8\nselected_indices = [0, 1]\n' + rest)
    out = subprocess.run([*base, "train", str(tiny_recipe), "--dry-run", "--json"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backbone"] == "TwoLevelNet"
