"""Segformer, SemanticFPN, LRASPPNet, SETRUP, SETRMLA and FastFCN: SSSegmentation parameter counts, shapes and
behaviour.

The SSSegmentation numbers were obtained by building SSSegmentation 1.7.0's own segmentor classes from its configs
(``ssseg/configs/<dir>/<config>.py``, backbone ``pretrained=False``) and counting ``model.parameters()``: the whole
segmentor, and everything outside ``backbone_net`` (the decoder side, which this family adds).
"""

from __future__ import annotations

import pytest
import torch

from segkit.errors import RecipeError
from segkit.models.build import ModelBuilder, segmentor_class

from .helpers import BN, CE, count_parameters, images, make_recipe

SYNC_BN = {"type": "SyncBatchNorm"}
LN = {"type": "LayerNorm", "eps": 1e-6}


def meta_segmentor(recipe):
    """The segmentor of ``recipe`` built on the meta device (no memory, no weights)."""
    return segmentor_class(recipe).from_recipe(ModelBuilder(recipe, pretrained=False, probe=True))


def counts(segmentor) -> tuple[int, int]:
    """(all parameters, parameters outside the backbone)."""
    total = count_parameters(segmentor)
    return total, total - count_parameters(segmentor.backbone)


def build(recipe):
    torch.manual_seed(0)
    return segmentor_class(recipe).from_recipe(ModelBuilder(recipe, pretrained=False))


# ----------------------------------------------------------------------------------------------- Segformer

MIT = {"type": "MixVisionTransformer", "pretrained": False, "selected_indices": [0, 1, 2, 3], "norm_cfg": LN}


def segformer_recipe(structure_type: str, num_classes: int = 150):
    """SSSeg's segformer_mit*_ade20k, with its head keys (``in_channels_list`` is checked against the MiT)."""
    channels = [32, 64, 160, 256] if structure_type == "mit-b0" else [64, 128, 320, 512]
    return make_recipe(type="Segformer", num_classes=num_classes, norm_cfg=SYNC_BN,
                       backbone={**MIT, "structure_type": structure_type},
                       head={"in_channels_list": channels, "feats_channels": 256, "dropout": 0.1}, auxiliary=[],
                       losses={"loss_cls": CE})


# segformer_mit{b0..b5}_ade20k: (whole segmentor, outside backbone_net) in SSSegmentation 1.7.0
SSSEG_SEGFORMER = {
    "mit-b0": (3_753_718, 434_326),
    "mit-b1": (13_716_822, 565_398),
    "mit-b2": (24_761_686, 565_398),
    "mit-b3": (44_637_526, 565_398),
    "mit-b4": (61_408_086, 565_398),
    "mit-b5": (82_008_406, 565_398),
}


@pytest.mark.parametrize("structure_type", sorted(SSSEG_SEGFORMER))
def test_segformer_parameter_counts_match_ssseg(structure_type):
    assert counts(meta_segmentor(segformer_recipe(structure_type))) == SSSEG_SEGFORMER[structure_type]


def test_segformer_keeps_ssseg_module_names_and_outputs_at_stride_4():
    recipe = make_recipe(type="Segformer", backbone={**MIT, "embed_dims": 8, "num_layers": [1, 1, 1, 1],
                                                     "num_heads": [1, 2, 2, 4]},
                         head={"feats_channels": 16}, auxiliary=[], losses={"loss_cls": CE})
    segmentor = build(recipe).eval()
    names = [n for n, _ in segmentor.head.named_parameters()]
    assert all(n.startswith(("convs.", "decoder.")) for n in names)  # SSSeg's params_rules keys
    assert len(segmentor.head.convs) == 4
    with torch.no_grad():
        out = segmentor(images(1, 64))["out"]
    assert out.shape == (1, 4, 16, 16)


# ----------------------------------------------------------------------------------------------- SemanticFPN

def semanticfpn_recipe(depth: int, num_classes: int):
    backbone = {"type": "ResNet", "depth": depth, "structure_type": f"resnet{depth}conv3x3stem", "pretrained": False,
                "outstride": 32, "use_conv3x3_stem": True, "selected_indices": [0, 1, 2, 3]}
    head = {"in_channels_list": [256, 512, 1024, 2048], "feats_channels": 256, "upsample_cfg": {"mode": "nearest"},
            "feature_stride_list": [4, 8, 16, 32],
            "scale_head_channels": 128, "dropout": 0.1}
    return make_recipe(type="SemanticFPN", num_classes=num_classes, norm_cfg=SYNC_BN, backbone=backbone, head=head,
                       auxiliary=[], losses={"loss_cls": CE})


# semanticfpn_resnet{50,101}os32_{ade20k,cityscapes,voc}: (whole segmentor, outside backbone_net)
SSSEG_SEMANTICFPN = {
    (50, 150): (28_516_854, 4_989_590),
    (50, 19): (28_499_955, 4_972_691),
    (50, 21): (28_500_213, 4_972_949),
    (101, 150): (47_508_982, 4_989_590),
    (101, 19): (47_492_083, 4_972_691),
    (101, 21): (47_492_341, 4_972_949),
}


@pytest.mark.parametrize(("depth", "num_classes"), sorted(SSSEG_SEMANTICFPN))
def test_semanticfpn_parameter_counts_match_ssseg(depth, num_classes):
    segmentor = meta_segmentor(semanticfpn_recipe(depth, num_classes))
    assert counts(segmentor) == SSSEG_SEMANTICFPN[(depth, num_classes)]
    head = segmentor.head
    # SSSeg: fpn_neck 3,346,432, scale_heads 1,623,808 (ResNet-50/101 default config)
    assert (count_parameters(head.fpn_neck), count_parameters(head.scale_heads)) == (3_346_432, 1_623_808)
    assert [len(h) for h in head.scale_heads] == [1, 2, 4, 6]  # conv / conv+up / 2x(conv+up) / 3x(conv+up)


def small_fpn_recipe(**head):
    return make_recipe(type="SemanticFPN", backbone={"type": "ResNet", "depth": 18, "base_channels": 8,
                                                     "stem_channels": 8, "outstride": 32, "pretrained": False,
                                                     "norm_cfg": BN, "selected_indices": [0, 1, 2, 3]},
                       head={"feats_channels": 16, "scale_head_channels": 8, **head}, auxiliary=[],
                       losses={"loss_cls": CE})


def test_semanticfpn_outputs_at_stride_4_and_derives_its_strides():
    segmentor = build(small_fpn_recipe()).eval()
    assert segmentor.head.feature_stride_list == [4, 8, 16, 32]
    with torch.no_grad():
        assert segmentor(images(1, 64))["out"].shape == (1, 4, 16, 16)
        assert segmentor(images(1, 96))["out"].shape == (1, 4, 24, 24)


def test_semanticfpn_rejects_strides_that_are_not_the_features():
    with pytest.raises(RecipeError, match=r"head\.feature_stride_list.*does not match"):
        build(small_fpn_recipe(feature_stride_list=[4, 8, 16, 16]))


def test_fpn_top_down_is_nearest_and_keeps_the_input_act_cfg():
    from segkit.models.layers.fpn import FPN

    act = {"type": "ReLU", "inplace": True}
    fpn = FPN([4, 8], 6, norm_cfg=None, act_cfg=act).eval()
    assert act == {"type": "ReLU", "inplace": True}  # not mutated (SSSeg mutates it)
    assert not fpn.lateral_convs[0].act.inplace
    x = [torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)]
    lateral = [conv(t) for conv, t in zip(fpn.lateral_convs, x, strict=True)]
    expected_fine = lateral[0] + lateral[1].repeat_interleave(2, 2).repeat_interleave(2, 3)
    out = fpn(x)
    torch.testing.assert_close(out[0], fpn.fpn_convs[0](expected_fine))
    torch.testing.assert_close(out[1], fpn.fpn_convs[1](lateral[1]))


# ----------------------------------------------------------------------------------------------- LRASPPNet

def lraspp_recipe(arch: str, num_classes: int):
    backbone = {"type": "MobileNetV3", "structure_type": f"mobilenetv3_{arch}", "pretrained": False, "outstride": 8,
                "arch_type": arch, "selected_indices": [0, 1, 2]}
    if arch == "small":
        backbone["out_indices"] = [0, 1, 12]
    return make_recipe(type="LRASPPNet", num_classes=num_classes, norm_cfg={"type": "SyncBatchNorm", "eps": 0.001},
                       backbone=backbone, auxiliary=[], losses={"loss_cls": CE},
                       head={"in_channels_list": [16, 24, 960] if arch == "large" else [16, 16, 576],
                             "branch_channels_list": [32, 64], "feats_channels": 128, "dropout": 0.1})


# lrasppnet_mobilenetv3{l,s}os8_{ade20k,cityscapes,voc}: (whole segmentor, outside backbone_net)
SSSEG_LRASPP = {
    ("large", 150): (3_301_574, 329_622),
    ("large", 19): (3_284_675, 312_723),
    ("large", 21): (3_284_933, 312_981),
    ("small", 150): (1_157_814, 230_806),
    ("small", 19): (1_140_915, 213_907),
    ("small", 21): (1_141_173, 214_165),
}


@pytest.mark.parametrize(("arch", "num_classes"), sorted(SSSEG_LRASPP))
def test_lraspp_parameter_counts_match_ssseg(arch, num_classes):
    segmentor = meta_segmentor(lraspp_recipe(arch, num_classes))
    assert counts(segmentor) == SSSEG_LRASPP[(arch, num_classes)]
    assert [m.in_channels for m in segmentor.head.branch_convs] == ([16, 24] if arch == "large" else [16, 16])


def small_lraspp_recipe(**head):
    return make_recipe(type="LRASPPNet", backbone={"type": "MobileNetV3", "arch_type": "small", "pretrained": False,
                                                   "norm_cfg": BN, "selected_indices": [0, 1, 2]},
                       head={"branch_channels_list": [8, 8], "feats_channels": 16, **head}, auxiliary=[],
                       losses={"loss_cls": CE})


def test_lraspp_default_pooling_rejects_small_inputs_with_the_minimum_size():
    from segkit.errors import SegkitError
    from segkit.models.heads.lraspp import InputTooSmallError

    segmentor = build(small_lraspp_recipe()).eval()
    assert segmentor.head.image_pool[0].kernel_size == (49, 49)
    assert segmentor.head.image_pool[0].stride == (16, 20)
    with torch.no_grad(), pytest.raises(InputTooSmallError, match=r"at least 49x49 \(inputs of at least 392x392 at "
                                        r"output stride 8\); got a 8x8 feature map"):
        segmentor(images(1, 64))
    assert issubclass(InputTooSmallError, SegkitError)
    with torch.no_grad():  # 392 is the smallest input that fits; logits at stride 2 (the first feature read)
        assert segmentor(images(1, 392))["out"].shape == (1, 4, 196, 196)
        assert segmentor(torch.randn(1, 3, 400, 784))["out"].shape == (1, 4, 200, 392)


def test_lraspp_pooling_is_configurable_and_branch_count_is_checked():
    segmentor = build(small_lraspp_recipe(pool_kernel=4, pool_stride=2)).eval()
    with torch.no_grad():
        assert segmentor(images(1, 64))["out"].shape == (1, 4, 32, 32)
    with pytest.raises(RecipeError, match=r"head\.in_index.*3 features"):
        build(small_lraspp_recipe(in_index=[0, 2]))
    with pytest.raises(RecipeError, match=r"head\.pool_stride"):
        build(small_lraspp_recipe(pool_stride=[2, 2, 2]))


# ----------------------------------------------------------------------------------------------- SETR

VIT_LARGE = {
    "type": "VisionTransformer", "structure_type": "jx_vit_large_p16_384", "img_size": [512, 512],
    "out_indices": [9, 14, 19, 23], "norm_cfg": LN, "pretrained": False, "selected_indices": [0, 1, 2, 3],
    "patch_size": 16, "embed_dims": 1024, "num_layers": 24, "num_heads": 16, "mlp_ratio": 4, "qkv_bias": True,
    "drop_rate": 0.1, "attn_drop_rate": 0.0, "drop_path_rate": 0.0, "with_cls_token": True,
    "output_cls_token": False, "patch_norm": False, "final_norm": False, "num_fcs": 2,
}
SETR_LOSSES = {"loss_cls": CE, **{f"loss_aux{i}": {**CE, "scale_factor": 0.4} for i in (1, 2, 3)}}


def setr_aux(in_channels: int, num_convs: int) -> list[dict]:
    return [{"in_channels": in_channels, "out_channels": 256, "dropout": 0, "num_convs": num_convs,
             "scale_factor": 4, "kernel_size": 3} for _ in range(3)]


def setr_recipe(variant: str):
    """SSSeg's setr{naive,pup,mla}_vitlarge_ade20k, with its head keys (head.norm_cfg: the token LayerNorm, moved
    to the neck with head.mla_feats_channels; head.in_channels_list checked against the ViT levels)."""
    ssseg_keys = {"in_channels_list": [1024] * 4, "norm_cfg": LN}
    if variant == "mla":
        return make_recipe(type="SETRMLA", num_classes=150, norm_cfg=SYNC_BN, backbone=dict(VIT_LARGE),
                           head={**ssseg_keys, "mla_feats_channels": 256, "mla_up_channels": 128,
                                 "feats_channels": 512, "scale_factor": 4, "dropout": 0},
                           auxiliary=setr_aux(256, 2), losses=SETR_LOSSES)
    head = {**ssseg_keys, "feats_channels": 256, "dropout": 0, "kernel_size": 3,
            **({"num_convs": 2, "scale_factor": 4} if variant == "naive" else {"num_convs": 4, "scale_factor": 2})}
    return make_recipe(type="SETRUP", num_classes=150, norm_cfg=SYNC_BN, backbone=dict(VIT_LARGE), head=head,
                       auxiliary=setr_aux(1024, 2), losses=SETR_LOSSES)


# setr{naive,pup,mla}_vitlarge_ade20k: (whole segmentor, outside backbone_net) and per SSSeg module group
SSSEG_SETR = {
    "naive": ((316_110_424, 11_962_968), {"neck": 8_192, "head": 2_988_694, "aux_heads": 8_966_082}),
    "pup": ((317_291_096, 13_143_640), {"neck": 8_192, "head": 4_169_366, "aux_heads": 8_966_082}),
    "mla": ((313_073_752, 8_926_296), {"neck": 3_420_160, "head": 1_771_520 + 76_950, "aux_heads": 3_657_666}),
}


@pytest.mark.parametrize("variant", sorted(SSSEG_SETR))
def test_setr_parameter_counts_match_ssseg(variant):
    segmentor = meta_segmentor(setr_recipe(variant))
    totals, groups = SSSEG_SETR[variant]
    assert counts(segmentor) == totals
    assert {name: count_parameters(getattr(segmentor, name)) for name in groups} == groups


def small_setr_recipe(kind: str = "SETRUP", **fields):
    backbone = {"type": "VisionTransformer", "img_size": 64, "patch_size": 16, "embed_dims": 16, "num_layers": 4,
                "num_heads": 2, "out_indices": [0, 1, 2, 3], "norm_cfg": LN, "pretrained": False}
    aux = [{"out_channels": 8}] * 3
    losses = {"loss_cls": CE, **{f"loss_aux{i}": CE for i in (1, 2, 3)}}
    head = {"feats_channels": 16, "num_convs": 2, "scale_factor": 2} if kind == "SETRUP" else {"mla_up_channels": 8}
    neck = {} if kind == "SETRUP" else {"out_channels": 16}
    return make_recipe(**{"type": kind, "backbone": backbone, "neck": neck, "head": head, "auxiliary": aux,
                          "losses": losses, **fields})


def test_setrup_heads_read_token_normalised_features():
    segmentor = build(small_setr_recipe()).train()
    assert type(segmentor.neck).__name__ == "SequenceNorm"
    assert [type(h).__name__ for h in segmentor.aux_heads] == ["SETRAuxiliaryHead"] * 3
    assert [h.in_index for h in segmentor.aux_heads] == [0, 1, 2]  # SSSeg: zip(features[:-1], aux decoders)
    x = images(2, 64)
    raw = segmentor.backbone(x)
    normed = segmentor.extract_features(x)
    for feature, norm, out in zip(raw, segmentor.neck.norm_layers, normed, strict=True):
        expected = torch.nn.functional.layer_norm(feature.permute(0, 2, 3, 1), (16,), norm.weight, norm.bias, 1e-6)
        torch.testing.assert_close(out, expected.permute(0, 3, 1, 2))
    torch.manual_seed(0)
    outputs = segmentor(x)
    assert list(outputs) == ["out", "aux1", "aux2", "aux3"]
    assert outputs["out"].shape == (2, 4, 16, 16)  # 2 x (conv, x2) on stride 16 -> stride 4
    assert outputs["aux1"].shape == (2, 4, 16, 16)  # 1 x (conv, x4)
    for i, head in enumerate(segmentor.aux_heads):  # aux head i reads normalised level i
        torch.testing.assert_close(outputs[f"aux{i + 1}"], head.decoder(normed[i]))


def test_setrmla_aux_heads_read_the_last_mla_outputs_and_outputs_keep_ssseg_order():
    from segkit.models.necks.mla import MLANeck

    segmentor = build(small_setr_recipe("SETRMLA")).eval()
    assert isinstance(segmentor.neck, MLANeck)
    assert [h.in_index for h in segmentor.aux_heads] == [-3, -2, -1]  # SSSeg: feats_list[-3:]
    neck = segmentor.neck
    x = [torch.randn(1, 16, 4, 4) for _ in range(4)]
    with torch.no_grad():
        proj = [conv(norm(t.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(1, 16, 4, 4))
                for conv, norm, t in zip(neck.mla.channel_proj, neck.norm_layers, x, strict=True)]
        outs = neck(x)
        # output 0: the deepest level alone; output 3: all levels summed
        torch.testing.assert_close(outs[0], neck.mla.feat_extract[0](proj[3]))
        torch.testing.assert_close(outs[3], neck.mla.feat_extract[3](proj[0] + proj[1] + proj[2] + proj[3]))
        assert segmentor(images(1, 64))["out"].shape == (1, 4, 16, 16)  # x4 on stride 16


def test_setr_recipe_errors():
    with pytest.raises(RecipeError, match=r"head\.feats_channels.*mla_up_channels x 4 = 32"):
        build(small_setr_recipe("SETRMLA", head={"mla_up_channels": 8, "feats_channels": 64}))
    with pytest.raises(RecipeError, match=r"neck\.token_norm_cfg.*BatchNorm2d does not fit"):
        build(small_setr_recipe(neck={"token_norm_cfg": BN}))
    with pytest.raises(RecipeError, match=r"auxiliary: 4 auxiliary heads"):
        build(small_setr_recipe(auxiliary=[{"out_channels": 8}] * 4))
    head = {"feats_channels": 16, "num_convs": 2, "scale_factor": 2}
    with pytest.raises(RecipeError, match=r"head\.in_channels_list: \[16, 16, 16\] does not match"):
        build(small_setr_recipe(head={**head, "in_channels_list": [16] * 3}))
    with pytest.raises(RecipeError, match=r"head\.norm_cfg: SETR's head\.norm_cfg is the per-level token norm"):
        build(small_setr_recipe(head={**head, "norm_cfg": BN}))
    with pytest.raises(RecipeError, match=r"head\.norm_cfg: .* conflicts with neck\.token_norm_cfg"):
        build(small_setr_recipe(head={**head, "norm_cfg": LN}, neck={"token_norm_cfg": {"type": "LayerNorm"}}))


def test_setr_takes_ssseg_head_keys_for_its_neck():
    """SSSeg's head.norm_cfg configures the token norm; the decoder convs keep the top-level norm_cfg."""
    head = {"feats_channels": 16, "num_convs": 2, "scale_factor": 2, "in_channels_list": [16] * 4,
            "norm_cfg": {"type": "LayerNorm", "eps": 1e-5}}
    segmentor = build(small_setr_recipe(head=head, neck=None))
    assert all(n.eps == 1e-5 for n in segmentor.neck.norm_layers)
    assert isinstance(segmentor.head.decoder[0].norm, torch.nn.BatchNorm2d)
    mla = build(small_setr_recipe("SETRMLA", head={"mla_up_channels": 8, "mla_feats_channels": 12,
                                                   "norm_cfg": LN}, neck=None,
                                  auxiliary=[{"in_channels": 12, "out_channels": 8}] * 3))
    assert mla.neck.out_channels == 12 and mla.head.up_convs[0][0].in_channels == 12


# ----------------------------------------------------------------------------------------------- FastFCN

R50_OS32 = {"type": "ResNet", "depth": 50, "structure_type": "resnet50conv3x3stem", "pretrained": False,
            "outstride": 32, "use_conv3x3_stem": True, "selected_indices": [1, 2, 3]}
FASTFCN_HEADS = {
    "Deeplabv3": {"feats_channels": 512, "dilations": [1, 12, 24, 36], "dropout": 0.1},
    "PSPNet": {"feats_channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1},
    "ENCNet": {"feats_channels": 512, "num_codes": 32, "dropout": 0.1,
               "extra": {"use_se_loss": True, "add_lateral": False}},
}


def fastfcn_recipe(inner: str):
    """SSSeg's fastfcn_{deeplabv3,encnet,pspnet}_resnet50os32_cityscapes (head.jpu -> neck)."""
    losses = {"loss_cls": CE, "loss_aux": {**CE, "scale_factor": 0.4}}
    if inner == "ENCNet":
        losses["loss_se"] = {"type": "CrossEntropyLoss", "scale_factor": 0.2, "use_sigmoid": True}
    return make_recipe(type="FastFCN", num_classes=19, norm_cfg=SYNC_BN, backbone=dict(R50_OS32),
                       neck={"in_channels_list": [512, 1024, 2048], "mid_channels": 512, "dilations": [1, 2, 4, 8]},
                       head={"segmentor": inner, **FASTFCN_HEADS[inner]},
                       auxiliary={"in_channels": 1024, "out_channels": 512, "dropout": 0.1}, losses=losses)


# (whole segmentor, outside backbone_net); SSSeg groups: jpu_neck 19,735,552, auxiliary_decoder 4,729,363
SSSEG_FASTFCN = {
    "Deeplabv3": (90_213_254, 66_685_990),
    "ENCNet": (57_992_185, 34_464_921),
    "PSPNet": (71_075_718, 47_548_454),
}


@pytest.mark.parametrize("inner", sorted(SSSEG_FASTFCN))
def test_fastfcn_parameter_counts_match_ssseg(inner):
    segmentor = meta_segmentor(fastfcn_recipe(inner))
    assert counts(segmentor) == SSSEG_FASTFCN[inner]
    assert count_parameters(segmentor.neck) == 19_735_552
    assert count_parameters(segmentor.aux_heads) == 4_729_363
    assert type(segmentor).__name__ == "FastFCN" and type(segmentor).inner_type == inner


def small_fastfcn_recipe(inner: str = "FCN", **fields):
    backbone = {"type": "ResNet", "depth": 18, "base_channels": 8, "stem_channels": 8, "outstride": 32,
                "pretrained": False, "norm_cfg": BN, "selected_indices": [1, 2, 3]}
    return make_recipe(**{"type": "FastFCN", "backbone": backbone, "neck": {"mid_channels": 8},
                          "head": {"segmentor": inner, "feats_channels": 16}, **fields})


def test_fastfcn_jpu_gives_the_head_a_stride_8_map_and_the_aux_head_raw_layer3():
    from segkit.models.necks.jpu import JPU

    segmentor = build(small_fastfcn_recipe()).train()
    assert isinstance(segmentor.neck, JPU)
    assert [(f["num_chs"], f["reduction"]) for f in segmentor.neck.feature_info] == [(16, 8), (32, 16), (32, 8)]
    assert type(segmentor.head).__name__ == "FCNHead" and segmentor.head.in_channels == 32
    assert segmentor.aux_heads[0].in_channels == 32
    x = images(2, 64)
    raw = [segmentor.backbone(x)[i] for i in (1, 2, 3)]
    features = segmentor.extract_features(x)
    assert [tuple(f.shape[1:]) for f in features] == [(16, 8, 8), (32, 4, 4), (32, 8, 8)]
    torch.testing.assert_close(features[0], raw[0])
    torch.testing.assert_close(features[1], raw[1])
    outputs = segmentor(x)
    assert outputs["out"].shape == (2, 4, 8, 8) and outputs["aux"].shape == (2, 4, 4, 4)


def test_fastfcn_takes_ssseg_prefixes_of_its_inner_segmentor():
    segmentor = build(small_fastfcn_recipe("PSPNet"))
    prefixes = type(segmentor).ssseg_prefixes
    assert prefixes["segmentor.backbone_net"] == "backbone" and prefixes["jpu_neck"] == "neck"
    assert prefixes["segmentor.ppm_net"] == "head.ppm_net" and prefixes["segmentor.auxiliary_decoder"] == "aux_heads"
    assert type(build(small_fastfcn_recipe("PSPNet"))) is type(segmentor)  # one class per inner type


def test_ssseg_in_channels_list_is_checked():
    with pytest.raises(RecipeError, match=r"head\.in_channels_list: \[8, 16, 16, 64\] does not match"):
        build(make_recipe(type="Segformer", backbone={**MIT, "embed_dims": 8, "num_layers": [1, 1, 1, 1],
                                                      "num_heads": [1, 2, 2, 4]},
                          head={"feats_channels": 16, "in_channels_list": [8, 16, 16, 64]}, auxiliary=[],
                          losses={"loss_cls": CE}))
    with pytest.raises(RecipeError, match=r"head\.in_channels_list"):
        build(small_fpn_recipe(in_channels_list=[8, 16, 32, 32]))
    with pytest.raises(RecipeError, match=r"head\.in_channels_list"):
        build(small_lraspp_recipe(in_channels_list=[16, 16, 16]))
    with pytest.raises(RecipeError, match=r"neck\.in_channels_list: \[16, 32, 32\] does not match"):
        build(small_fastfcn_recipe(neck={"mid_channels": 8, "in_channels_list": [16, 32, 32]}))


def test_fastfcn_recipe_errors():
    with pytest.raises(RecipeError, match=r"head\.segmentor: name the segmentor"):
        build(small_fastfcn_recipe(head={"feats_channels": 16}))
    with pytest.raises(RecipeError, match=r"head\.segmentor: unknown segmentor 'PSPNett'.*did you mean 'PSPNet'"):
        build(small_fastfcn_recipe("PSPNett"))
    with pytest.raises(RecipeError, match=r"head\.segmentor: FastFCN is not a plain"):
        build(small_fastfcn_recipe("FastFCN"))
    with pytest.raises(RecipeError, match=r"head\.pool_scale"):
        build(small_fastfcn_recipe("PSPNet", head={"segmentor": "PSPNet", "pool_scale": [1, 2]}))
    with pytest.raises(RecipeError, match=r"neck\.end_level"):
        build(small_fastfcn_recipe(neck={"mid_channels": 8, "end_level": 5}))
