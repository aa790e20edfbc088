"""Optimizers with params_rules, and the per-iteration schedules (SSSegmentation's formulas)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segkit.engine.optim import build_optimizer, build_scheduler, param_groups
from segkit.errors import RecipeError
from segkit.recipe.schema import OptimizerCfg, SchedulerCfg, WarmupCfg


def test_poly_schedule_matches_formula():
    model = nn.Linear(2, 2)
    cfg = SchedulerCfg(max_epochs=2, power=0.9, optimizer=OptimizerCfg(type="SGD", lr=0.1))
    opt = build_optimizer(model, cfg.optimizer)
    sched = build_scheduler(opt, cfg, iters_per_epoch=5)
    min_lr = 0.1 * 0.01  # SSSegmentation's default min_lr: 1% of lr
    for it in (0, 3, 9):
        expected = (1 - it / 10) ** 0.9 * (0.1 - min_lr) + min_lr
        assert sched.update_lr(it) == pytest.approx(expected)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["constant", "linear", "exp"])
def test_warmup(kind):
    cfg = SchedulerCfg(max_epochs=1, min_lr=0.0, power=1.0, warmup_cfg=WarmupCfg(type=kind, ratio=0.1, iters=4),
                       optimizer=OptimizerCfg(type="SGD", lr=1.0))
    opt = build_optimizer(nn.Linear(1, 1), cfg.optimizer)
    sched = build_scheduler(opt, cfg, iters_per_epoch=100)
    base = 1 - 2 / 100
    expected = {"constant": base * 0.1, "linear": base * (1 - 0.5 * 0.9), "exp": base * 0.1 ** 0.5}[kind]
    assert sched.lr_at(2) == pytest.approx(expected)
    assert sched.lr_at(5) == pytest.approx(1 - 5 / 100)  # warm-up over


def test_cosine_by_epoch():
    cfg = SchedulerCfg(type="CosineScheduler", max_epochs=4, min_lr=0.0, optimizer=OptimizerCfg(lr=1.0))
    sched = build_scheduler(build_optimizer(nn.Linear(1, 1), cfg.optimizer), cfg, iters_per_epoch=10)
    assert sched.lr_at(25) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.decoder = nn.Conv2d(4, 2, 1)


class Named(nn.Module):
    """Tiny with segkit's module names (``backbone``, ``decoder``)."""

    def __init__(self):
        super().__init__()
        self.backbone = Tiny().backbone_net
        self.decoder = Tiny().decoder


def test_params_rules_longest_substring_wins_and_base_setting():
    rules = {"backbone": {"lr_multiplier": 0.1}, "backbone.0": {"lr_multiplier": 0.5, "wd_multiplier": 0.0}}
    groups = param_groups(Named(), lr=1.0, weight_decay=0.01, params_rules=rules,
                          base_setting={"norm_wd_multiplier": 0.0, "bias_lr_multiplier": 2.0}, filter_params=False)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone.0.weight"]["lr"] == 0.5 and by_name["backbone.0.weight"]["weight_decay"] == 0
    assert by_name["backbone.1.weight"]["lr"] == pytest.approx(0.1)
    assert by_name["decoder.bias"]["lr"] == 2.0          # base_setting: bias of a non-norm layer
    assert by_name["decoder.weight"]["weight_decay"] == 0.01


def test_ssseg_backbone_net_rules_are_translated_to_segkits_backbone():
    rules = {"backbone_net": {"lr_multiplier": 0.1}, "backbone_net.0": {"lr_multiplier": 0.5}}
    by_name = {g["name"]: g for g in param_groups(Named(), lr=1.0, weight_decay=None, params_rules=rules,
                                                  base_setting={}, filter_params=False)}
    assert by_name["backbone.0.weight"]["lr"] == 0.5 and by_name["backbone.1.weight"]["lr"] == pytest.approx(0.1)
    assert by_name["backbone.0.weight"]["rule_key"] == "backbone.0"


def test_a_rule_that_matches_no_parameter_is_an_error_naming_it():
    with pytest.raises(RecipeError, match=r"scheduler.optimizer.params_rules.query_embed: matches no parameter"):
        param_groups(Named(), lr=1.0, weight_decay=None, params_rules={"decoder": {}, "query_embed": {}},
                     base_setting={}, filter_params=False)


def test_scheduler_applies_group_multipliers():
    cfg = SchedulerCfg(max_epochs=1, optimizer=OptimizerCfg(type="AdamW", lr=1e-3, weight_decay=0.01,
                                                            params_rules={"decoder": {"lr_multiplier": 10.0}}))
    opt = build_optimizer(Tiny(), cfg.optimizer)
    assert isinstance(opt, torch.optim.AdamW)
    sched = build_scheduler(opt, cfg, iters_per_epoch=10)
    lr = sched.update_lr(0)
    dec = [g for g in opt.param_groups if g["name"].startswith("decoder")]
    assert all(g["lr"] == pytest.approx(10 * lr) for g in dec)


def test_layer_wise_lr_decay_through_params_rules():
    from segkit import BACKBONES

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = BACKBONES.build({"type": "VisionTransformer", "img_size": 32, "patch_size": 16,
                                             "embed_dims": 16, "num_layers": 2, "num_heads": 2,
                                             "out_indices": [1], "pretrained": False})

    rules = {"type": "LearningRateDecayParamsConstructor", "num_layers": 2, "decay_rate": 0.5,
             "decay_type": "layer_wise_vit"}
    cfg = SchedulerCfg(max_epochs=1, optimizer=OptimizerCfg(type="AdamW", lr=1.0, weight_decay=0.05,
                                                            params_rules=rules))
    opt = build_optimizer(Wrapper(), cfg.optimizer)
    multipliers = sorted({g["lr_multiplier"] for g in opt.param_groups})
    assert multipliers == pytest.approx([0.5 ** 3, 0.5 ** 2, 0.5])  # embeddings, block 0, block 1
    sched = build_scheduler(opt, cfg, iters_per_epoch=1)
    lr = sched.update_lr(0)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([m * lr for m in multipliers])


def test_module_declared_ssseg_aliases_translate_rule_keys():
    class Twinsish(nn.Module):
        ssseg_param_aliases = {"position_encodings": "pos_block"}

        def __init__(self):
            super().__init__()
            self.pos_block = nn.Linear(2, 2)
            self.norm = nn.LayerNorm(2)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Twinsish()

    rules = {"position_encodings": {"wd_multiplier": 0.0}, "norm": {"wd_multiplier": 0.0}}
    by_name = {g["name"]: g for g in param_groups(Model(), lr=1.0, weight_decay=0.01, params_rules=rules,
                                                  base_setting={}, filter_params=False)}
    assert by_name["backbone.pos_block.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.pos_block.weight"]["rule_key"] == "pos_block"


def test_swin_ssseg_rule_keys_reach_timms_names():
    from segkit import BACKBONES

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = BACKBONES.build({"type": "SwinTransformer", "embed_dims": 16, "depths": [1, 1, 1, 1],
                                             "num_heads": [1, 1, 2, 2], "window_size": 4, "pretrained": False})

    rules = {"backbone_net.stages.0.downsample.norm": {"wd_multiplier": 0.0},
             "backbone_net.stages.1.blocks.0.norm": {"wd_multiplier": 0.0}, "backbone_net": {}}
    by_name = {g["name"]: g for g in param_groups(Model(), lr=1.0, weight_decay=0.01, params_rules=rules,
                                                  base_setting={}, filter_params=False)}
    assert by_name["backbone.layers.1.downsample.norm.weight"]["weight_decay"] == 0.0  # merging after stage 0
    assert by_name["backbone.layers.1.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.layers.2.downsample.norm.weight"]["weight_decay"] == 0.01  # not chained to stage 1
