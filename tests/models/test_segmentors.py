"""Every registered backbone and segmentor: build, forward shapes, finite gradients; FCN specifics and training."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
import torch
import torch.nn.functional as F
from torch import nn

from segkit import BACKBONES
from segkit.models import build_criterion, build_segmentor
from segkit.models.heads import AuxiliaryHead, FCNHead
from segkit.models.segmentors import FCN, EncoderDecoder

from .helpers import BN, count_parameters, fcn_r50_voc_recipe, images, make_recipe


def _small_configs() -> dict[str, dict]:
    """Every ``small_configs/*.toml`` table: a small configuration per registered backbone."""
    configs: dict[str, dict] = {}
    for path in sorted((Path(__file__).parent / "small_configs").glob("*.toml")):
        for name, table in tomllib.loads(path.read_text()).items():
            assert name not in configs, f"{name} is configured twice ({path.name})"
            configs[name] = table
    return configs


SMALL_BACKBONES = _small_configs()


def _finite_grads(module: nn.Module) -> None:
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{name} has non-finite gradients"


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_forwards_as_declared_and_backpropagates(name):
    assert name in SMALL_BACKBONES, f"add a small configuration for the backbone {name} to small_configs/*.toml"
    args = dict(SMALL_BACKBONES[name])
    size = args.pop("_input_size", 64)
    backbone = BACKBONES.build({"type": name, **args}, path="backbone")
    info = backbone.feature_info
    assert info and all(set(i) == {"num_chs", "reduction", "module"} for i in info)
    assert [i["reduction"] for i in info] == sorted(i["reduction"] for i in info)
    outputs = backbone(images(2, size))
    assert isinstance(outputs, list) and len(outputs) == len(info)
    for output, declared in zip(outputs, info, strict=True):
        side = size // declared["reduction"]
        assert output.shape == (2, declared["num_chs"], side, side)
    sum(o.square().mean() for o in outputs).backward()
    _finite_grads(backbone)


def _total(losses: dict) -> torch.Tensor:
    return torch.stack(list(losses.values())).sum()


def test_fcn_resnet50os8_voc_has_ssseg_parameter_count():
    segmentor = build_segmentor(fcn_r50_voc_recipe())
    assert isinstance(segmentor, FCN) and segmentor.head_type == "FCNHead"
    assert count_parameters(segmentor) == 40_066_954
    assert count_parameters(segmentor.backbone) == 23_527_264
    assert isinstance(segmentor.head, FCNHead) and isinstance(segmentor.aux_heads[0], AuxiliaryHead)
    with torch.no_grad():
        outputs = segmentor.train()(images(1, 64))
    assert outputs["out"].shape == outputs["aux"].shape == (1, 21, 8, 8)


def test_a_list_of_auxiliary_heads_uses_the_features_before_the_last():
    recipe = make_recipe(
        backbone={**make_recipe().backbone, "selected_indices": [1, 2, 3]},
        auxiliary=[{"out_channels": 8}, {"out_channels": 8, "num_convs": 0}],
        losses={"loss_cls": {"type": "CrossEntropyLoss"}, "loss_aux1": {"type": "CrossEntropyLoss"},
                "loss_aux2": [{"type": "CrossEntropyLoss"}, {"type": "CrossEntropyLoss", "use_sigmoid": True}]},
    )
    segmentor = build_segmentor(recipe)
    assert [h.in_channels for h in segmentor.aux_heads] == [16, 32]  # layer2 and layer3 of the slim ResNet-18
    outputs = segmentor.train()(images(2, 64))
    assert list(outputs) == ["out", "aux1", "aux2"]
    losses = build_criterion(recipe, segmentor)(outputs, {"seg_target": torch.randint(0, 4, (2, 64, 64))})
    assert set(losses) == {"loss_cls", "loss_aux1", "loss_aux2"}


def test_segmentor_without_auxiliary_and_selection():
    backbone = BACKBONES.build({"type": "ResNet", **SMALL_BACKBONES["ResNet"]})
    segmentor = EncoderDecoder(backbone, FCNHead(64, 3, feats_channels=8, norm_cfg=BN))
    assert segmentor.output_names() == ["out"] and list(segmentor.train()(images(1, 32))) == ["out"]


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_traced_segmentor_matches_eager():
    segmentor = build_segmentor(make_recipe()).eval()
    x = images(1, 64)
    with torch.no_grad():
        traced = torch.jit.trace(segmentor, x, strict=False)
        assert torch.allclose(traced(images(1, 64, seed=3))["out"], segmentor(images(1, 64, seed=3))["out"],
                              atol=1e-5)


def test_freeze_norm_keeps_batch_norms_frozen_in_training():
    segmentor = build_segmentor(make_recipe(is_freeze_norm=True))
    norms = [m for m in segmentor.modules() if isinstance(m, nn.BatchNorm2d)]
    segmentor.train()
    assert norms and all(not m.training for m in norms)
    assert all(not p.requires_grad for m in norms for p in m.parameters())
    assert segmentor.head.convs[0].conv.weight.requires_grad and segmentor.training
    before = norms[0].running_mean.clone()
    segmentor(images(2, 64))
    assert torch.equal(norms[0].running_mean, before)


def test_fcn_learns_a_tiny_fixed_batch():
    torch.manual_seed(0)
    recipe = make_recipe(num_classes=3, head={"feats_channels": 16, "dropout": 0.0},
                         auxiliary={"out_channels": 8, "dropout": 0.0})
    segmentor = build_segmentor(recipe).train()
    criterion = build_criterion(recipe, segmentor)
    blocks = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    target = blocks.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)  # 8x8-pixel blocks of one class
    x = 0.5 * images(2, 64, seed=1) + F.one_hot(target, 3).permute(0, 3, 1, 2).float()  # noisy class colours
    optimizer = torch.optim.Adam(segmentor.parameters(), lr=1e-2)
    history = []
    for _ in range(15):
        total = _total(criterion(segmentor(x), {"seg_target": target}))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert history[-1] < 0.6 * history[0], history
    assert sum(history[-3:]) < sum(history[:3]), history
