"""SSSegmentation 1.7 checkpoints: its layout converts to segkit's names, strictly, and `segkit eval --checkpoint`
takes one."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from torch import nn

import segkit
from segkit.cli import main
from segkit.engine.checkpoint import load_model_weights
from segkit.errors import CheckpointError
from segkit.models import build_segmentor
from segkit.models.ssseg_checkpoint import convert_ssseg_state_dict, looks_like_ssseg, unwrap_ssseg_checkpoint

from .helpers import images, make_recipe

SSSEG_NAMES: list[tuple[str, str]] = [
    # SSSeg's ResNet has segkit's parameter names (its Bottleneck registers `downsample` first, so the order differs)
    ("backbone.", "backbone_net."),
    # FCN decoder = nn.Sequential(conv, bn, act, conv, bn, act, Dropout2d, conv)
    ("head.convs.0.conv.", "decoder.0."),
    ("head.convs.0.norm.", "decoder.1."),
    ("head.convs.1.conv.", "decoder.3."),
    ("head.convs.1.norm.", "decoder.4."),
    ("head.classifier.", "decoder.7."),
    # DefaultAuxiliaryDecoder = nn.Sequential(conv, bn, act, Dropout2d, conv), not in a ModuleList when alone
    ("aux_heads.0.convs.0.conv.", "auxiliary_decoder.0."),
    ("aux_heads.0.convs.0.norm.", "auxiliary_decoder.1."),
    ("aux_heads.0.classifier.", "auxiliary_decoder.4."),
]
"""segkit prefix -> SSSegmentation prefix for the tiny FCN (two head convs, one auxiliary conv), written out by hand
from SSSeg's ``FCN.__init__`` and ``DefaultAuxiliaryDecoder`` (independently of the converter under test)."""


def ssseg_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (segkit names) as SSSegmentation 1.7 names the same tensors."""
    out = {}
    for key, value in state.items():
        prefix = next(p for p in SSSEG_NAMES if key.startswith(p[0]))
        out[prefix[1] + key[len(prefix[0]):]] = value
    assert len(out) == len(state)
    return out


@torch.no_grad()
def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            fresh = torch.randn(tensor.shape, generator=generator)
            tensor.copy_(fresh.abs() + 0.5 if name.endswith("running_var") else fresh * 0.1)
    return model


def tiny_fcn() -> nn.Module:
    return build_segmentor(make_recipe(), pretrained=False)


def test_the_hand_written_layout_is_sssegmentations():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    assert {"decoder.0.weight", "decoder.1.running_var", "decoder.3.weight", "decoder.4.num_batches_tracked",
            "decoder.7.weight", "decoder.7.bias", "auxiliary_decoder.0.weight", "auxiliary_decoder.4.bias",
            "backbone_net.conv1.weight", "backbone_net.layer4.1.bn2.running_mean"} <= set(ssseg)
    assert looks_like_ssseg(ssseg) and not looks_like_ssseg(tiny_fcn().state_dict())


def test_an_sssegmentation_state_dict_loads_strictly_and_computes_the_same():
    source = randomised(tiny_fcn()).eval()
    ssseg = ssseg_layout(source.state_dict())
    target = tiny_fcn()
    converted = convert_ssseg_state_dict(ssseg, target)
    assert list(converted) == list(target.state_dict())
    target.load_state_dict(converted, strict=True)
    target.eval()
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = images(1, 32)
    with torch.no_grad():
        assert torch.equal(target(x)["out"], source(x)["out"])


def test_tensors_are_matched_in_order_within_a_part():
    """The decoder's Sequential indices never appear in segkit's names: order and shapes decide."""
    source = randomised(tiny_fcn())
    ssseg = ssseg_layout(source.state_dict())
    converted = convert_ssseg_state_dict(ssseg, tiny_fcn())
    assert converted["head.convs.1.norm.running_var"] is ssseg["decoder.4.running_var"]
    assert converted["aux_heads.0.classifier.bias"] is ssseg["auxiliary_decoder.4.bias"]


def test_sssegmentations_checkpoint_container_is_accepted():
    source = randomised(tiny_fcn())
    checkpoint = {"cur_epoch": 60, "cur_iter": 1000, "model": ssseg_layout(source.state_dict()),
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}}
    assert unwrap_ssseg_checkpoint(checkpoint) == checkpoint["model"]
    converted = convert_ssseg_state_dict(checkpoint, tiny_fcn())
    assert torch.equal(converted["head.classifier.weight"], source.state_dict()["head.classifier.weight"])
    ddp = {f"module.{k}": v for k, v in checkpoint["model"].items()}
    assert set(convert_ssseg_state_dict(ddp, tiny_fcn())) == set(converted)


def test_a_wrong_shape_names_both_keys_and_shapes():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    ssseg["decoder.7.weight"] = torch.zeros(7, 16, 1, 1)  # 7 classes instead of 4
    with pytest.raises(CheckpointError) as info:
        convert_ssseg_state_dict(ssseg, tiny_fcn())
    message = str(info.value)
    assert "decoder. -> head." in message and "decoder.7.weight [7, 16, 1, 1]" in message
    assert "head.classifier.weight [4, 16, 1, 1]" in message
    assert "backbone" not in message.split("\n", 1)[1]  # only the part that does not fit is reported


def test_a_missing_tensor_is_listed():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    del ssseg["auxiliary_decoder.1.running_var"]
    with pytest.raises(CheckpointError, match=r"auxiliary_decoder. -> aux_heads. .*SSSegmentation has 7 tensors, "
                       r"segkit 8.*segkit tensors with no SSSegmentation counterpart: "
                       r"aux_heads.0.convs.0.norm.running_var \[16\]"):
        convert_ssseg_state_dict(ssseg, tiny_fcn())


def test_a_missing_backbone_tensor_is_listed_by_name():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    ssseg["backbone_net.layer4.1.bn2.extra"] = ssseg.pop("backbone_net.layer4.1.bn2.bias")
    with pytest.raises(CheckpointError) as info:
        convert_ssseg_state_dict(ssseg, tiny_fcn())
    assert "backbone_net. -> backbone." in str(info.value)
    assert "backbone.layer4.1.bn2.bias" in str(info.value) and "backbone_net.layer4.1.bn2.extra" in str(info.value)


def test_unknown_top_level_keys_are_errors_unless_the_segmentor_drops_them():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    ssseg["criterion.empty_weight"] = torch.ones(5)
    with pytest.raises(CheckpointError, match="SSSegmentation keys under no known prefix .*: criterion.empty_weight"):
        convert_ssseg_state_dict(ssseg, tiny_fcn())

    model = tiny_fcn()
    dropping = type("DroppingFCN", (type(model),), {"ssseg_dropped_keys": ("criterion.*",)})
    model.__class__ = dropping
    assert set(convert_ssseg_state_dict(ssseg, model)) == set(model.state_dict())


def test_derived_index_buffers_segkit_does_not_save_are_ignored():
    ssseg = ssseg_layout(tiny_fcn().state_dict())
    ssseg["backbone_net.layer4.0.attn.relative_position_index"] = torch.arange(16).view(4, 4)
    assert set(convert_ssseg_state_dict(ssseg, tiny_fcn())) == set(tiny_fcn().state_dict())
    ssseg["backbone_net.layer4.0.attn.relative_position_bias_table"] = torch.zeros(7, 2)  # learned: not ignored
    with pytest.raises(CheckpointError, match="relative_position_bias_table"):
        convert_ssseg_state_dict(ssseg, tiny_fcn())


class _Renamed(nn.Module):
    """A backbone in another library's names that converts SSSeg's layout itself."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 4, 1)

    @staticmethod
    def convert_ssseg_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k.replace("conv.", "proj."): v for k, v in state_dict.items()}


class _Toy(nn.Module):
    ssseg_prefixes: ClassVar[dict[str, str]] = {"backbone_net": "trunk", "decoder": "cls"}

    def __init__(self) -> None:
        super().__init__()
        self.trunk = _Renamed()
        self.cls = nn.Sequential(nn.Conv2d(4, 2, 1))


def test_prefixes_and_a_parts_own_converter_come_from_the_model():
    state = {"backbone_net.conv.weight": torch.ones(4, 3, 1, 1), "backbone_net.conv.bias": torch.ones(4),
             "decoder.weight": torch.ones(2, 4, 1, 1), "decoder.bias": torch.ones(2)}
    converted = convert_ssseg_state_dict(state, _Toy())
    assert list(converted) == ["trunk.proj.weight", "trunk.proj.bias", "cls.0.weight", "cls.0.bias"]
    _Toy().load_state_dict(converted, strict=True)


def test_load_model_weights_converts_and_says_so(capsys, tmp_path):
    source = randomised(tiny_fcn())
    model = tiny_fcn()
    load_model_weights(model, ssseg_layout(source.state_dict()), tmp_path / "ssseg.pth")
    assert torch.equal(model.state_dict()["head.convs.0.conv.weight"], source.state_dict()["head.convs.0.conv.weight"])
    err = capsys.readouterr().err
    assert "ssseg.pth: an SSSegmentation checkpoint; converted" in err and len(err.strip().splitlines()) == 1
    broken = ssseg_layout(source.state_dict())
    del broken["decoder.7.bias"]
    with pytest.raises(CheckpointError, match=r"^\S*ssseg.pth: the SSSegmentation state dict does not fit"):
        load_model_weights(tiny_fcn(), broken, tmp_path / "ssseg.pth")


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_segkit_eval_takes_an_sssegmentation_checkpoint(tiny_recipe, tmp_path, capsys):
    source = randomised(segkit.build_model(tiny_recipe, pretrained=False))
    segkit_ckpt, ssseg_ckpt = tmp_path / "segkit.pt", tmp_path / "ssseg.pth"
    torch.save({"model": source.state_dict()}, segkit_ckpt)
    # what SSSegmentation's train.py saves: scheduler.state() plus the model's state dict
    torch.save({"cur_epoch": 2, "cur_iter": 6, "model": ssseg_layout(source.state_dict()),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0]}]}},
               ssseg_ckpt)
    code, out, err = _run_cli(capsys, "eval", str(tiny_recipe), "--checkpoint", str(ssseg_ckpt), "--json")
    assert code == 0, err
    from_ssseg = json.loads(out)
    assert "an SSSegmentation checkpoint; converted" in err
    code, out, err = _run_cli(capsys, "eval", str(tiny_recipe), "--checkpoint", str(segkit_ckpt), "--json")
    assert code == 0, err
    from_segkit = json.loads(out)
    for key in ("mIoU", "IoU"):  # the recipe's inference.evaluate.metric_list
        assert from_ssseg[key] == from_segkit[key]


def test_segkit_eval_reports_an_sssegmentation_checkpoint_that_does_not_fit(tiny_recipe, tmp_path, capsys):
    state = ssseg_layout(segkit.build_model(tiny_recipe, pretrained=False).state_dict())
    state["decoder.7.weight"] = torch.zeros(21, 16, 1, 1)
    state["decoder.7.bias"] = torch.zeros(21)
    path = tmp_path / "ssseg.pth"
    torch.save({"model": state}, path)
    code, out, err = _run_cli(capsys, "eval", str(tiny_recipe), "--checkpoint", str(path))
    assert code == 2
    assert "does not fit" in err and "decoder.7.weight [21, 16, 1, 1]" in err and "Traceback" not in err


def _ssseg_unfold_reduction_order(x: torch.Tensor) -> torch.Tensor:
    """SSSegmentation's ``SwinTransformer.swinconvert.correctunfoldreductionorder`` (official -> SSSeg)."""
    out_channel, in_channel = x.shape
    x = x.reshape(out_channel, 4, in_channel // 4)
    return x[:, [0, 2, 1, 3], :].transpose(1, 2).reshape(out_channel, in_channel)


def _ssseg_unfold_norm_order(x: torch.Tensor) -> torch.Tensor:
    """SSSegmentation's ``correctunfoldnormorder``."""
    in_channel = x.shape[0]
    x = x.reshape(4, in_channel // 4)
    return x[[0, 2, 1, 3], :].transpose(0, 1).reshape(in_channel)


def test_swin_patch_merging_order_is_undone():
    from segkit.models.ssseg_checkpoint import _unfold_order

    reduction, norm = torch.randn(6, 12), torch.randn(12)
    assert torch.equal(_unfold_order(_ssseg_unfold_reduction_order(reduction)), reduction)
    assert torch.equal(_unfold_order(_ssseg_unfold_norm_order(norm)), norm)


def test_tensors_named_by_a_prefix_itself_convert():
    """IDRNet keeps four bare tensors on the segmentor (``class_relations_mean``...): a prefix names the tensor."""
    import torch

    from segkit.models import build_segmentor
    from segkit.models.ssseg_checkpoint import convert_ssseg_state_dict

    from .test_registry_models import small_recipe

    model = build_segmentor(small_recipe("IDRNet")[0], pretrained=False)
    inverse = sorted(((v, k) for k, v in type(model).ssseg_prefixes.items()), key=lambda kv: -len(kv[0]))
    state = {}
    for key, value in model.state_dict().items():
        dst, src = next((d, s) for d, s in inverse if key == d or key.startswith(d + "."))
        state[src + key[len(dst):]] = value + 1 if value.is_floating_point() else value
    assert "class_relations_mean" in state
    converted = convert_ssseg_state_dict(state, model)
    model.load_state_dict(converted, strict=True)
    assert torch.equal(model.head.class_relations_mean, state["class_relations_mean"])
