"""PSPNet, Deeplabv3, Deeplabv3Plus, UPerNet, APCNet and DMNet: SSSegmentation's parameter counts, shapes, and what
each head and block does.

The reference counts were obtained by building SSSegmentation 1.7.0's own segmentors (``BuildSegmentor(cfg,
'TRAIN')`` from ``ssseg/configs/<dir>/<config>.py`` with ``backbone.pretrained = False``) in a separate script;
SSSeg is not a test dependency, so they are written out here, each with the config it came from. Loading that
SSSeg model's state dict into segkit's (``convert_ssseg_state_dict``) gave identical eval logits for every config.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segkit.errors import RecipeError
from segkit.models import build_segmentor
from segkit.models.heads.apc import APCHead
from segkit.models.heads.aspp import ASPPHead
from segkit.models.heads.deeplabv3plus import Deeplabv3PlusHead
from segkit.models.heads.dm import DMHead
from segkit.models.heads.psp import PSPHead
from segkit.models.heads.upernet import UPerNetHead
from segkit.models.layers import ConvNormAct, DepthwiseSeparableConv2d
from segkit.models.layers.acm import AdaptiveContextModule
from segkit.models.layers.aspp import ASPP
from segkit.models.layers.dcm import DynamicConvolutionalModule
from segkit.models.layers.ds_aspp import DepthwiseSeparableASPP
from segkit.models.layers.fpn_fusion import UPerFPNFusion
from segkit.models.layers.ppm import PPM

from .helpers import BN, count_parameters, images, make_recipe

R50_D8 = {"type": "ResNet", "structure_type": "resnet50conv3x3stem", "outstride": 8, "pretrained": False,
          "selected_indices": [2, 3]}
"""SSSegmentation's ``resnet50os8`` backbone table (ResNet-50-D8, 3x3 stem)."""
R50_D8_ALL = {**R50_D8, "selected_indices": [0, 1, 2, 3]}
AUX_R50 = {"in_channels": 1024, "out_channels": 512, "dropout": 0.1}


def ssseg_recipe(type_: str, head: dict, num_classes: int, backbone: dict = R50_D8, **fields):
    return make_recipe(type=type_, num_classes=num_classes, norm_cfg={"type": "SyncBatchNorm"},
                       backbone=dict(backbone), head=dict(head), auxiliary=dict(AUX_R50), **fields)


def _features(*shapes: tuple[int, int, int], batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *shape, generator=generator) for shape in shapes]


# ----------------------------------------------------------------------------------------------- PSPNet

PSP_HEAD = {"in_channels": 2048, "feats_channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 51_474_572),  # SSSeg pspnet/pspnet_resnet50os8_ade20k
    (21, 51_342_218),  # SSSeg pspnet/pspnet_resnet50os8_voc
])
def test_pspnet_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    segmentor = build_segmentor(ssseg_recipe("PSPNet", PSP_HEAD, num_classes), pretrained=False)
    assert count_parameters(segmentor) == expected
    # SSSeg: ppm_net 23,073,792; decoder 512*K + K; auxiliary decoder 4,796,566 (ADE20k)
    assert count_parameters(segmentor.head.ppm_net) == 23_073_792
    assert count_parameters(segmentor.head.decoder) == 513 * num_classes
    assert isinstance(segmentor.head, PSPHead)


def test_ppm_concatenates_the_input_and_one_upsampled_branch_per_scale():
    ppm = PPM(8, 4, (1, 2, 3), norm_cfg=BN, act_cfg={"type": "ReLU"}).eval()
    assert [branch[0].output_size for branch in ppm.branches] == [1, 2, 3]
    assert all(isinstance(branch[1], ConvNormAct) and branch[1].conv.kernel_size == (1, 1) for branch in ppm.branches)
    assert ppm.bottleneck.conv.in_channels == 8 + 3 * 4 and ppm.bottleneck.conv.kernel_size == (3, 3)
    x = torch.randn(2, 8, 7, 9)
    assert ppm(x).shape == (2, 4, 7, 9) and ppm.out_channels == 4
    plain = PPM(8, 4, (1, 2), bottleneck=False, norm_cfg=BN).eval()
    out = plain(x)
    assert out.shape == (2, 8 + 2 * 4, 7, 9) and plain.out_channels == 16 and plain.bottleneck is None
    assert torch.equal(out[:, :8], x)
    # the scale-1 branch is the image-level context: the same vector at every position
    assert torch.allclose(out[:, 8:12], out[:, 8:12, :1, :1].expand(-1, -1, 7, 9))


def test_ppm_branches_follow_align_corners():
    x = torch.randn(1, 4, 8, 8)
    outs = [PPM(4, 2, (2,), align_corners=a, bottleneck=False, norm_cfg=None).eval()(x) for a in (False, True)]
    assert not torch.allclose(outs[0], outs[1])


def test_ppm_rejects_bad_pool_scales():
    with pytest.raises(RecipeError, match="pool_scales"):
        PPM(8, 4, (1, 0))
    with pytest.raises(RecipeError, match=r"head\.pool_scales"):
        build_segmentor(make_recipe(type="PSPNet", head={"feats_channels": 8, "pool_scales": [1, -2]}))


def test_psp_head_logits_at_the_last_feature_resolution():
    head = PSPHead(16, 5, feats_channels=8, norm_cfg=BN).eval()
    features = _features((8, 16, 16), (16, 8, 8))
    assert head(features).shape == (2, 5, 8, 8)


# ----------------------------------------------------------------------------------------------- Deeplabv3

ASPP_HEAD = {"in_channels": 2048, "feats_channels": 512, "dilations": [1, 12, 24, 36], "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 70_612_108),  # SSSeg deeplabv3/deeplabv3_resnet50os8_ade20k (dilations 1, 12, 24, 36)
    (21, 70_479_754),  # SSSeg deeplabv3/deeplabv3_resnet50os8_voc
])
def test_deeplabv3_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    segmentor = build_segmentor(ssseg_recipe("Deeplabv3", ASPP_HEAD, num_classes), pretrained=False)
    assert count_parameters(segmentor) == expected
    assert count_parameters(segmentor.head.aspp_net) == 42_211_328  # SSSeg's aspp_net
    assert isinstance(segmentor.head, ASPPHead)


def test_aspp_branches_are_1x1_for_dilation_1_and_atrous_3x3_otherwise():
    aspp = ASPP(8, 4, (1, 2, 5), norm_cfg=BN).eval()
    convs = [branch.conv for branch in aspp.parallel_branches]
    assert [(c.kernel_size, c.dilation, c.padding) for c in convs] == [
        ((1, 1), (1, 1), (0, 0)), ((3, 3), (2, 2), (2, 2)), ((3, 3), (5, 5), (5, 5))]
    assert isinstance(aspp.global_branch[0], torch.nn.AdaptiveAvgPool2d)
    assert aspp.bottleneck.conv.in_channels == 4 * 4 and aspp.bottleneck.conv.kernel_size == (3, 3)
    assert aspp(torch.randn(2, 8, 9, 7)).shape == (2, 4, 9, 7)


def test_aspp_image_pooling_branch_is_constant_over_the_map():
    aspp = ASPP(6, 3, (1,), norm_cfg=None, act_cfg=None).eval()
    x = torch.randn(1, 6, 5, 5)
    pooled = aspp.global_branch(x)
    up = F.interpolate(pooled, size=(5, 5), mode="bilinear", align_corners=False)
    assert torch.allclose(up, pooled.expand(-1, -1, 5, 5))
    expected = aspp.bottleneck(torch.cat([aspp.parallel_branches[0](x), up], dim=1))
    assert torch.allclose(aspp(x), expected)


def test_aspp_head_logits_at_the_last_feature_resolution():
    head = ASPPHead(16, 3, feats_channels=8, dilations=(1, 2), norm_cfg=BN).eval()
    assert head(_features((8, 16, 16), (16, 8, 8))).shape == (2, 3, 8, 8)
    with pytest.raises(RecipeError, match="dilations"):
        ASPPHead(16, 3, dilations=(1, 0))


@pytest.mark.parametrize("type_", ["PSPNet", "Deeplabv3"])
def test_heads_read_the_last_selected_feature_and_aux_the_one_before(type_):
    segmentor = build_segmentor(make_recipe(type=type_, head={"feats_channels": 8}), pretrained=False)
    assert segmentor.head.in_index == -1 and segmentor.head.in_channels == 64
    assert segmentor.aux_heads[0].in_channels == 32
    outputs = segmentor.train()(images(2, 64))
    assert list(outputs) == ["out", "aux"] and outputs["out"].shape == (2, 4, 8, 8)


# ----------------------------------------------------------------------------------------------- Deeplabv3Plus

DEEPLABV3PLUS_HEAD = {"in_channels": [256, 2048], "feats_channels": 512, "shortcut_channels": 48,
                      "dilations": [1, 12, 24, 36], "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 46_088_956),  # SSSeg deeplabv3plus/deeplabv3plus_resnet50os8_ade20k
    (21, 45_956_602),  # SSSeg deeplabv3plus/deeplabv3plus_resnet50os8_voc
])
def test_deeplabv3plus_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    recipe = ssseg_recipe("Deeplabv3Plus", DEEPLABV3PLUS_HEAD, num_classes, backbone=R50_D8_ALL)
    segmentor = build_segmentor(recipe, pretrained=False)  # SSSeg's list-valued head.in_channels validates
    assert count_parameters(segmentor) == expected
    head = segmentor.head
    assert isinstance(head, Deeplabv3PlusHead) and head.in_index == [0, -1] and head.in_channels == [256, 2048]
    # SSSeg: aspp_net 17,113,088; shortcut 12,384; decoder 573,477 (VOC)
    assert [count_parameters(m) for m in (head.aspp_net, head.shortcut)] == [17_113_088, 12_384]
    assert count_parameters(head.decoder) == 573_477 + 513 * (num_classes - 21)
    assert segmentor.aux_heads[0].in_channels == 1024


def test_deeplabv3plus_in_channels_are_checked_against_the_features():
    recipe = ssseg_recipe("Deeplabv3Plus", {**DEEPLABV3PLUS_HEAD, "in_channels": [512, 2048]}, 21, backbone=R50_D8_ALL)
    with pytest.raises(RecipeError, match=r"head\.in_channels.*\[256, 2048\]"):
        build_segmentor(recipe, pretrained=False)


def test_deeplabv3plus_head_needs_two_inputs():
    with pytest.raises(RecipeError, match="in_index"):
        Deeplabv3PlusHead([8, 16], 3, in_index=-1)
    with pytest.raises(RecipeError, match="in_channels"):
        Deeplabv3PlusHead([8, 16, 32], 3)


def test_ds_aspp_uses_depthwise_separable_atrous_branches():
    aspp = DepthwiseSeparableASPP(8, 4, (1, 3), norm_cfg=BN).eval()
    first, second = aspp.parallel_branches
    assert isinstance(first, ConvNormAct) and first.conv.kernel_size == (1, 1)
    assert isinstance(second, DepthwiseSeparableConv2d)
    assert second.depthwise_conv.dilation == (3, 3) and second.depthwise_conv.padding == (3, 3)
    assert second.depthwise_conv.groups == 8
    assert aspp(torch.randn(1, 8, 6, 6)).shape == (1, 4, 6, 6)


def test_deeplabv3plus_head_decodes_at_the_shortcut_resolution():
    head = Deeplabv3PlusHead([4, 16], 3, feats_channels=8, shortcut_channels=6, dilations=(1, 2), norm_cfg=BN).eval()
    features = _features((4, 16, 16), (8, 8, 8), (16, 8, 8))
    assert head(features).shape == (2, 3, 16, 16)
    assert head.shortcut.conv.out_channels == 6 and head.decoder[0].in_channels == 8 + 6
    with torch.no_grad():
        changed = [features[0], features[1], features[2] + 1.0]
        assert not torch.allclose(head(features), head(changed))  # the deep feature reaches the logits
        changed = [features[0], features[1] + 1.0, features[2]]
        assert torch.equal(head(features), head(changed))  # features outside in_index are not read


def test_deeplabv3plus_segmentor_outputs_at_stride_4():
    recipe = make_recipe(type="Deeplabv3Plus", backbone={**make_recipe().backbone, "selected_indices": [0, 1, 2, 3]},
                         head={"feats_channels": 8, "shortcut_channels": 4, "dilations": [1, 2]})
    segmentor = build_segmentor(recipe, pretrained=False)
    assert segmentor.head.in_channels == [8, 64] and segmentor.aux_heads[0].in_channels == 32
    outputs = segmentor.train()(images(2, 64))
    assert outputs["out"].shape == (2, 4, 16, 16) and outputs["aux"].shape == (2, 4, 8, 8)


# ----------------------------------------------------------------------------------------------- UPerNet

UPERNET_HEAD = {"in_channels_list": [256, 512, 1024, 2048], "feats_channels": 512, "pool_scales": [1, 2, 3, 6],
                "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 68_914_316),  # SSSeg upernet/upernet_resnet50os8_ade20k
    (21, 68_781_962),  # SSSeg upernet/upernet_resnet50os8_voc
])
def test_upernet_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    # SSSeg's head table names the pyramid's channels in_channels_list: accepted and checked
    segmentor = build_segmentor(ssseg_recipe("UPerNet", UPERNET_HEAD, num_classes, backbone=R50_D8_ALL),
                                pretrained=False)
    assert count_parameters(segmentor) == expected
    head = segmentor.head
    assert isinstance(head, UPerNetHead) and head.in_index == [0, 1, 2, 3]
    assert head.in_channels == [256, 512, 1024, 2048]
    # SSSeg: ppm_net 23,073,792; lateral_convs 920,576; fpn_convs 7,080,960; decoder 9,448,981 (VOC)
    assert count_parameters(head.ppm_net) == 23_073_792
    assert count_parameters(head.fpn.lateral_convs) == 920_576
    assert count_parameters(head.fpn.fpn_convs) == 7_080_960
    assert count_parameters(head.decoder) == 9_448_981 + 513 * (num_classes - 21)


# SSSeg beit/upernet_beitbase_ade20k: backbone 86,554,176; feats_to_pyramid_net 7,081,728; ppm_net 14,554,112;
# lateral_convs 1,182,720; fpn_convs 7,080,960; decoder 9,515,158; auxiliary 3,616,918 -> 129,585,772.
# SSSeg mae/upernet_maevitbase_ade20k (feats_channels 768): 165,685,612.
@pytest.mark.parametrize(("backbone", "feats_channels", "expected"), [
    ({"type": "BEiT", "structure_type": "beit_base_patch16_224_pt22k_ft22k", "pretrained": False,
      "norm_cfg": {"type": "LayerNorm", "eps": 1e-6}}, 512, 129_585_772),
    ({"type": "MAE", "structure_type": "mae_pretrain_vit_base", "pretrained": False, "img_size": [512, 512],
      "patch_size": 16, "embed_dims": 768, "num_layers": 12, "num_heads": 12, "mlp_ratio": 4, "init_values": 1.0,
      "drop_path_rate": 0.1, "norm_cfg": {"type": "LayerNorm", "eps": 1e-6}}, 768, 165_685_612),
])
def test_upernet_on_beit_and_mae_with_the_feature2pyramid_neck_has_ssseg_parameter_count(
        backbone, feats_channels, expected):
    recipe = make_recipe(
        type="UPerNet", num_classes=150, norm_cfg={"type": "SyncBatchNorm"},
        backbone={**backbone, "selected_indices": [0, 1, 2, 3]},
        neck={"type": "Feature2Pyramid", "embed_dim": 768, "rescales": [4, 2, 1, 0.5]},
        head={"in_channels_list": [768] * 4, "feats_channels": feats_channels, "pool_scales": [1, 2, 3, 6],
              "dropout": 0.1},
        auxiliary={"in_channels": 768, "out_channels": 512, "dropout": 0.1},
    )
    segmentor = build_segmentor(recipe, pretrained=False)
    assert count_parameters(segmentor) == expected
    if feats_channels == 512:
        assert count_parameters(segmentor.neck) == 7_081_728
        assert count_parameters(segmentor.head.ppm_net) == 14_554_112
        assert count_parameters(segmentor.head.fpn.lateral_convs) == 1_182_720
        assert count_parameters(segmentor.aux_heads[0]) == 3_616_918


def test_upernet_in_channels_list_must_match_the_features():
    recipe = ssseg_recipe("UPerNet", {**UPERNET_HEAD, "in_channels_list": [256, 512, 1024, 1024]}, 21,
                          backbone=R50_D8_ALL)
    with pytest.raises(RecipeError, match=r"head\.in_channels_list.*\[256, 512, 1024, 2048\]"):
        build_segmentor(recipe, pretrained=False)
    with pytest.raises(RecipeError, match="in_index"):
        UPerNetHead([8], 3, in_index=[0])


def test_upernet_head_fuses_at_the_finest_input():
    head = UPerNetHead([4, 8, 16], 3, feats_channels=6, pool_scales=(1, 2), norm_cfg=BN, in_index=[0, 1, 2]).eval()
    assert [c.conv.in_channels for c in head.fpn.lateral_convs] == [4, 8]
    assert head.ppm_net.in_channels == 16 and head.decoder[0].conv.in_channels == 3 * 6
    features = _features((4, 16, 16), (8, 8, 8), (16, 4, 4))
    assert head(features).shape == (2, 3, 16, 16)


def _reference_fusion(fusion: UPerFPNFusion, inputs, top):
    """UPerNet's fusion written out: top-down sums of the laterals, 3x3 convs, all upsampled to the finest."""
    def up(x, like):
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
    laterals = [conv(x) for conv, x in zip(fusion.lateral_convs, inputs, strict=True)] + [top]
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + up(laterals[i], laterals[i - 1])
    outs = [fusion.fpn_convs[i](laterals[i]) for i in range(len(inputs))] + [laterals[-1]]
    return torch.cat([up(o, outs[0]) for o in outs], dim=1)


def test_fpn_fusion_is_lateral_top_down_then_3x3():
    fusion = UPerFPNFusion([3, 5], 4, norm_cfg=BN, act_cfg={"type": "ReLU", "inplace": True}).eval()
    assert all(not conv.act.inplace for conv in [*fusion.lateral_convs, *fusion.fpn_convs])
    inputs = _features((3, 12, 12), (5, 6, 6))
    top = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        levels = fusion(inputs, top)
        assert [tuple(x.shape[2:]) for x in levels] == [(12, 12), (6, 6), (3, 3)] and levels[-1] is top
        assert torch.allclose(fusion.concat(levels), _reference_fusion(fusion, inputs, top), atol=1e-6)
    with pytest.raises(ValueError, match="2 lateral inputs"):
        fusion(inputs[:1], top)


def test_fpn_fusion_cascade_feeds_each_output_to_the_next_finer_level():
    fusion = UPerFPNFusion([3, 5, 7], 4, norm_cfg=None, act_cfg=None, cascade=True).eval()
    inputs = _features((3, 16, 16), (5, 8, 8), (7, 4, 4))
    top = torch.randn(2, 4, 2, 2)

    def up(x, like):
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = [conv(x) for conv, x in zip(fusion.lateral_convs, inputs, strict=True)]
        out = fusion.fpn_convs[0](p[2] + up(top, p[2]))  # MaskFormer's order: fpn_convs[0] is the coarsest
        out = fusion.fpn_convs[1](p[1] + up(out, p[1]))
        out = fusion.fpn_convs[2](p[0] + up(out, p[0]))
        assert torch.allclose(fusion(inputs, top)[0], out, atol=1e-6)
    with pytest.raises(RecipeError, match="out_channels"):
        UPerFPNFusion([3], 4, out_channels=8, cascade=True)
    assert UPerFPNFusion([3], 4, out_channels=8, norm_cfg=None)(_features((3, 4, 4)), torch.randn(2, 4, 2, 2))[0] \
        .shape == (2, 8, 4, 4)


def test_upernet_aux_head_reads_the_second_to_last_pyramid_level():
    recipe = make_recipe(type="UPerNet", backbone={**make_recipe().backbone, "selected_indices": [0, 1, 2, 3]},
                         head={"feats_channels": 8, "pool_scales": [1, 2]})
    segmentor = build_segmentor(recipe, pretrained=False)
    assert segmentor.head.in_channels == [8, 16, 32, 64] and segmentor.aux_heads[0].in_channels == 32
    outputs = segmentor.train()(images(2, 64))
    assert outputs["out"].shape == (2, 4, 16, 16) and outputs["aux"].shape == (2, 4, 8, 8)


# ----------------------------------------------------------------------------------------------- APCNet

APC_HEAD = {"in_channels": 2048, "pool_scales": [1, 2, 3, 6], "feats_channels": 512, "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 58_856_638),  # SSSeg apcnet/apcnet_resnet50os8_ade20k
    (21, 58_724_284),  # SSSeg apcnet/apcnet_resnet50os8_voc
])
def test_apcnet_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    segmentor = build_segmentor(ssseg_recipe("APCNet", APC_HEAD, num_classes), pretrained=False)
    assert count_parameters(segmentor) == expected
    assert isinstance(segmentor.head, APCHead)
    assert count_parameters(segmentor.head.acm_modules) == 11_580_466  # SSSeg's acm_modules
    assert [m.gla.out_channels for m in segmentor.head.acm_modules] == [1, 4, 9, 36]


def test_acm_is_a_sigmoid_affinity_weighted_sum_of_pooled_regions():
    acm = AdaptiveContextModule(6, 4, 2, norm_cfg=BN, act_cfg={"type": "ReLU"}).eval()
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        regions = acm.pooled_redu_conv(F.adaptive_avg_pool2d(x, 2)).flatten(2)  # [B, C, 4]
        reduced = acm.input_redu_conv(x)
        global_context = acm.global_info(reduced.mean(dim=(2, 3), keepdim=True))
        affinity = torch.sigmoid(acm.gla(reduced + global_context))  # [B, 4, H, W]
        context = torch.einsum("bch,bhyx->bcyx", regions, affinity.flatten(1, 1))
        expected = acm.fusion_conv(torch.relu(acm.residual_conv(context) + reduced))
        assert torch.allclose(acm(x), expected, atol=1e-5)
    assert acm(x).shape == (2, 4, 5, 7)


def test_apc_head_concatenates_the_input_with_each_scale():
    head = APCHead(8, 3, feats_channels=4, pool_scales=(1, 3), norm_cfg=BN).eval()
    assert head.decoder[0].conv.in_channels == 8 + 2 * 4
    assert head(_features((8, 6, 6))).shape == (2, 3, 6, 6)
    with pytest.raises(RecipeError, match=r"head\.pool_scales"):
        build_segmentor(make_recipe(type="APCNet", head={"feats_channels": 8, "pool_scales": [1, 0]}))


# ----------------------------------------------------------------------------------------------- DMNet

DM_HEAD = {"in_channels": 2048, "feats_channels": 512, "filter_sizes": [1, 3, 5, 7], "is_fusion": False,
           "dropout": 0.1}


@pytest.mark.parametrize(("num_classes", "expected"), [
    (150, 55_675_020),  # SSSeg dmnet/dmnet_resnet50os8_ade20k
    (21, 55_542_666),  # SSSeg dmnet/dmnet_resnet50os8_voc
])
def test_dmnet_resnet50os8_has_ssseg_parameter_count(num_classes, expected):
    segmentor = build_segmentor(ssseg_recipe("DMNet", DM_HEAD, num_classes), pretrained=False)
    assert count_parameters(segmentor) == expected
    assert isinstance(segmentor.head, DMHead)
    assert count_parameters(segmentor.head.dcm_modules) == 8_398_848  # SSSeg's dcm_modules
    assert all(m.fusion_conv is None for m in segmentor.head.dcm_modules)


@pytest.mark.parametrize("filter_size", [1, 2, 3, 4, 5])
def test_dcm_convolves_each_image_with_its_own_generated_filters(filter_size):
    dcm = DynamicConvolutionalModule(filter_size, False, 6, 4, norm_cfg=BN, act_cfg={"type": "ReLU"}).eval()
    x = torch.randn(3, 6, 7, 9)
    with torch.no_grad():
        filters = dcm.filter_gen_conv(F.adaptive_avg_pool2d(x, filter_size))  # [B, C, k, k]
        reduced = dcm.input_redu_conv(x)
        pad, extra = (filter_size - 1) // 2, (filter_size - 1) % 2
        per_image = [F.conv2d(F.pad(reduced[i:i + 1], (pad + extra, pad, pad + extra, pad)), filters[i][:, None],
                              groups=4) for i in range(3)]
        expected = dcm.activate(dcm.norm(torch.cat(per_image)))
        out = dcm(x)
        assert out.shape == (3, 4, 7, 9) and torch.allclose(out, expected, atol=1e-5)
        # image 0's output does not depend on the other images (the batch is folded into groups, not mixed)
        alone = dcm(x[:1])
        assert torch.allclose(alone, out[:1], atol=1e-5)


def test_dcm_fusion_and_dm_head():
    dcm = DynamicConvolutionalModule(3, True, 6, 4, norm_cfg=BN)
    assert dcm.fusion_conv is not None and dcm.fusion_conv.conv.kernel_size == (1, 1)
    head = DMHead(8, 3, feats_channels=4, filter_sizes=(1, 2), is_fusion=True, norm_cfg=BN).eval()
    assert head.decoder[0].conv.in_channels == 8 + 2 * 4
    assert head(_features((8, 6, 6))).shape == (2, 3, 6, 6)
    with pytest.raises(RecipeError, match="filter_sizes"):
        DMHead(8, 3, filter_sizes=(3, 0))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("type_", ["PSPNet", "Deeplabv3", "APCNet", "DMNet"])
def test_traced_segmentor_matches_eager(type_):
    segmentor = build_segmentor(make_recipe(type=type_, head={"feats_channels": 8}), pretrained=False).eval()
    with torch.no_grad():
        traced = torch.jit.trace(segmentor, images(1, 64), strict=False)
        assert torch.allclose(traced(images(1, 64, seed=3))["out"], segmentor(images(1, 64, seed=3))["out"],
                              atol=1e-5)
