"""The attention / context family: SelfAttentionBlock, Scale, NonLocal2d and the segmentors built on them (OCRNet,
DANet, NonLocalNet, DNLNet, GCNet, ISANet, ANNNet).

SSSegmentation parameter counts below were obtained by building SSSegmentation 1.7.0's own modules
(``ssseg.modules.BuildSegmentor`` on the named config, ``pretrained=False``, mode TRAIN) and summing
``parameters()``; they are hard-coded so that these tests do not need SSSegmentation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.errors import RecipeError
from segkit.models import build_criterion, build_segmentor, validate_model
from segkit.models.heads.ann import ANNHead, PPMConcat
from segkit.models.heads.auxiliary import AuxiliaryHead
from segkit.models.heads.da import ChannelAttentionModule, PositionAttentionModule
from segkit.models.heads.isa import ISAHead
from segkit.models.heads.ocr import OCRHead, SpatialGatherModule
from segkit.models.layers.context_block import ContextBlock
from segkit.models.layers.disentangled_non_local import DisentangledNonLocal2d
from segkit.models.layers.non_local import NonLocal2d
from segkit.models.layers.scale import Scale
from segkit.models.layers.self_attention import SelfAttentionBlock

from .helpers import BN, FCN_R50_VOC_BACKBONE, count_parameters, images, make_recipe

RELU = {"type": "ReLU", "inplace": True}
AUX_R50 = {"in_channels": 1024, "out_channels": 512, "dropout": 0.1}
"""SSSeg's auxiliary table of every ResNet config of this family."""
R101_BACKBONE = {**FCN_R50_VOC_BACKBONE, "depth": 101, "structure_type": "resnet101conv3x3stem"}
HRNET_W18 = {"type": "HRNet", "structure_type": "hrnetv2_w18", "arch": "hrnetv2_w18", "pretrained": False,
             "selected_indices": [0, 0]}


def ssseg_recipe(type_: str, head: dict, num_classes: int = 21, backbone: dict | None = None,
                 auxiliary: dict | None = AUX_R50, losses: dict | None = None):
    """An SSSeg default config as a segkit recipe (ResNet-50-D8 with the 3x3 stem unless ``backbone`` is given)."""
    fields = {"type": type_, "num_classes": num_classes, "norm_cfg": {"type": "SyncBatchNorm"},
              "backbone": dict(backbone or FCN_R50_VOC_BACKBONE), "head": head, "auxiliary": auxiliary}
    if losses is not None:
        fields["losses"] = losses
    return make_recipe(**fields)


def tiny_recipe(type_: str, head: dict, **fields):
    """A small recipe on the slim ResNet-18-D8 of the helpers (selected features: 32 and 64 channels)."""
    fields.setdefault("auxiliary", {"out_channels": 16, "dropout": 0.0})
    return make_recipe(type=type_, head=head, **fields)


def _block(**flags) -> SelfAttentionBlock:
    args = {"key_in_channels": 12, "query_in_channels": 12, "transform_channels": 8, "out_channels": 10,
            "query_downsample": None, "key_downsample": None, "norm_cfg": BN, "act_cfg": RELU}
    return SelfAttentionBlock(**{**args, **flags})


OCR_FLAGS = {"share_key_query": False, "key_query_num_convs": 2, "value_out_num_convs": 1, "key_query_norm": True,
             "value_out_norm": True, "matmul_norm": True, "with_out_project": True}
PAM_FLAGS = {"share_key_query": False, "key_query_num_convs": 1, "value_out_num_convs": 1, "key_query_norm": False,
             "value_out_norm": False, "matmul_norm": False, "with_out_project": False}
APN_FLAGS = {"share_key_query": True, "key_query_num_convs": 1, "value_out_num_convs": 1, "key_query_norm": True,
             "value_out_norm": False, "matmul_norm": True, "with_out_project": True}


# ----------------------------------------------------------------------------------------------- layers


def test_self_attention_block_parameters_and_layout_match_ssseg():
    # SSSeg's SelfAttentionBlock(12, 12, 8, 10, ...) with each flag set: 596 (OCR's), 312 (PAM's), 288 (APNB's)
    ocr, pam, apn = _block(**OCR_FLAGS), _block(**PAM_FLAGS, norm_cfg=None, act_cfg=None), _block(**APN_FLAGS)
    assert (count_parameters(ocr), count_parameters(pam), count_parameters(apn)) == (596, 312, 288)
    assert len(ocr.state_dict()) == 36  # as SSSeg: key/query 2x(conv, BN), value and out (conv, BN)
    assert list(pam.state_dict()) == ["key_project.weight", "query_project.weight", "value_project.weight"]
    # shared key/query: one module under both names (both in the state dict, counted once)
    assert apn.query_project is apn.key_project
    assert [k.split(".")[0] for k in apn.state_dict()].count("query_project") == 6


def test_self_attention_block_computes_scaled_dot_product_attention():
    torch.manual_seed(0)
    block = _block(**{**PAM_FLAGS, "matmul_norm": True, "with_out_project": True}).eval()
    query, key = torch.randn(2, 12, 5, 6), torch.randn(2, 12, 4, 3)
    q = block.query_project(query).flatten(2)
    k = block.key_project(key).flatten(2)
    v = block.value_project(key).flatten(2)
    weights = torch.einsum("bcn,bcm->bnm", q, k).mul(8 ** -0.5).softmax(-1)
    expected = block.out_project(torch.einsum("bnm,bcm->bcn", weights, v).reshape(2, 8, 5, 6))
    torch.testing.assert_close(block(query, key), expected)


def test_self_attention_block_downsamples_queries_and_pooled_keys():
    class Flatten(nn.Module):  # keys already flattened by the downsample (ANNNet's pyramid pooling)
        def forward(self, x):
            return torch.cat([nn.functional.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 2)], dim=2)

    block = _block(**{**OCR_FLAGS, "query_downsample": nn.MaxPool2d(2), "key_downsample": Flatten()})
    out = block(torch.randn(2, 12, 8, 6), torch.randn(2, 12, 7, 7))
    assert out.shape == (2, 10, 4, 3)


def test_scale_is_a_learnable_scalar():
    scale = Scale(0)
    assert list(dict(scale.named_parameters())) == ["scale"] and scale.scale.shape == ()
    x = torch.randn(2, 3)
    assert torch.equal(scale(x), torch.zeros_like(x))
    scale = Scale(2.5)
    scale(x).sum().backward()
    torch.testing.assert_close(scale.scale.grad, x.sum())


# ----------------------------------------------------------------------------------------------- OCRNet

OCR_HEAD = {"feats_channels": 512, "transform_channels": 256, "scale": 1, "dropout": 0}
OCR_AUX = {"out_channels": 512, "dropout": 0}
TINY_OCR = {"feats_channels": 16, "transform_channels": 8, "dropout": 0.0}


@pytest.mark.parametrize(("config", "backbone", "num_classes", "ssseg_count"), [
    # ssseg/configs/ocrnet/ocrnet_resnet50os8_voc.py: 43,085,194
    ("ocrnet_resnet50os8_voc", FCN_R50_VOC_BACKBONE, 21, 43_085_194),
    # ssseg/configs/ocrnet/ocrnet_hrnetv2w18_ade20k.py: 17,585,088 (SSSeg 1.7.0's HRModule reads use_checkpoint
    # before setting it; counted with that attribute patched to False)
    ("ocrnet_hrnetv2w18_ade20k", HRNET_W18, 150, 17_585_088),
])
def test_ocrnet_parameters_match_ssseg(config, backbone, num_classes, ssseg_count):
    channels = 1024 if backbone is FCN_R50_VOC_BACKBONE else 270
    head_channels = 2048 if backbone is FCN_R50_VOC_BACKBONE else 270
    recipe = ssseg_recipe("OCRNet", {"in_channels": head_channels, **OCR_HEAD}, num_classes, backbone,
                          auxiliary={"in_channels": channels, **OCR_AUX})
    plan = validate_model(recipe, pretrained=False)
    assert plan.parameters == ssseg_count
    assert plan.output_names == ["out", "aux"]


def test_ocrnet_head_owns_the_auxiliary_decoder_and_runs_it_at_test_time():
    segmentor = build_segmentor(tiny_recipe("OCRNet", TINY_OCR), pretrained=False)
    assert segmentor.aux_heads is None and isinstance(segmentor.head.auxiliary_decoder, AuxiliaryHead)
    assert [n for n, _ in segmentor.head.named_children()] == [
        "auxiliary_decoder", "bottleneck", "spatial_gather_module", "object_context_block", "decoder"]
    calls = []
    segmentor.head.auxiliary_decoder.register_forward_hook(lambda *_: calls.append(1))
    segmentor.eval()
    with torch.no_grad():
        assert list(segmentor(images())) == ["out"]
    assert calls == [1]
    segmentor.train()
    outputs = segmentor(images())
    assert list(outputs) == ["out", "aux"] and outputs["aux"].shape == outputs["out"].shape == (2, 4, 8, 8)
    recipe = tiny_recipe("OCRNet", TINY_OCR)
    losses = build_criterion(recipe, segmentor)(outputs, {"seg_target": torch.zeros(2, 64, 64, dtype=torch.long)})
    assert set(losses) == {"loss_cls", "loss_aux"}


def test_ocrnet_auxiliary_table_errors_are_reported_at_auxiliary():
    with pytest.raises(RecipeError, match=r"^auxiliary: OCRNet needs exactly one auxiliary table"):
        validate_model(tiny_recipe("OCRNet", TINY_OCR, auxiliary=None))
    with pytest.raises(RecipeError, match=r"^auxiliary: OCRNet needs exactly one auxiliary table"):
        validate_model(tiny_recipe("OCRNet", TINY_OCR, auxiliary=[{"out_channels": 16}]))
    with pytest.raises(RecipeError, match=r"^auxiliary\.out_chanels:"):
        validate_model(tiny_recipe("OCRNet", TINY_OCR, auxiliary={"out_chanels": 16}))
    with pytest.raises(RecipeError, match=r"^auxiliary\.in_channels: 999 does not match"):
        validate_model(tiny_recipe("OCRNet", TINY_OCR, auxiliary={"in_channels": 999}))


def test_spatial_gather_is_a_softmax_weighted_average_over_pixels():
    features, probs = torch.randn(2, 5, 3, 4), torch.randn(2, 6, 3, 4)
    weights = (2.0 * probs).flatten(2).softmax(-1)
    expected = torch.einsum("bkn,bcn->bck", weights, features.flatten(2)).unsqueeze(3)
    torch.testing.assert_close(SpatialGatherModule(2.0)(features, probs), expected)


def _ocr_head(resize: bool, aux_in_index: int) -> OCRHead:
    aux = AuxiliaryHead(in_channels=6, num_classes=3, out_channels=8, dropout=0.0, norm_cfg=BN,
                        in_index=aux_in_index)
    return OCRHead(in_channels=6, num_classes=3, auxiliary_decoder=aux, feats_channels=8, transform_channels=4,
                   resize_aux_logits=resize, norm_cfg=BN).eval()


def test_ocr_aux_logits_are_resized_before_the_gather_unless_ssseg_170_behaviour_is_asked():
    torch.manual_seed(0)
    small, large = torch.randn(1, 6, 4, 4), torch.randn(1, 6, 8, 8)
    fixed = _ocr_head(True, 0)
    legacy = _ocr_head(False, 0)
    legacy.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fixed([small, small]), legacy([small, small]))  # equal sizes: the same
        assert fixed([large, small]).shape == (1, 3, 4, 4)  # aux logits 8x8 resized to the 4x4 features
        with pytest.raises(RuntimeError, match="resize_aux_logits"):
            legacy([large, small])
        # the gather sees the resized logits
        aux = F.interpolate(fixed.auxiliary_decoder([large]), size=(4, 4), mode="bilinear", align_corners=False)
        feats = fixed.bottleneck(small)
        expected = fixed.decoder(fixed.object_context_block(feats, fixed.spatial_gather_module(feats, aux)))
        torch.testing.assert_close(fixed([large, small]), expected)


def test_ocr_head_needs_its_auxiliary_decoder():
    from segkit.models.layers import ArgumentError

    with pytest.raises(ArgumentError, match="auxiliary"):
        OCRHead(in_channels=6, num_classes=3)


# ----------------------------------------------------------------------------------------------- DANet

DA_HEAD = {"in_channels": 2048, "feats_channels": 512, "transform_channels": 64, "dropout": 0.1}
DA_LOSSES = {name: {"type": "CrossEntropyLoss", "scale_factor": 0.4 if name == "loss_aux" else 1.0}
             for name in ("loss_aux", "loss_cls_pam", "loss_cls_cam", "loss_cls_pamcam")}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 52_214_710),  # ssseg/configs/danet/danet_resnet50os8_voc.py
    (R101_BACKBONE, 150, 71_471_546),  # ssseg/configs/danet/danet_resnet101os8_ade20k.py
])
def test_danet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("DANet", DA_HEAD, num_classes, backbone, losses=DA_LOSSES), pretrained=False)
    assert plan.parameters == ssseg_count
    assert plan.output_names == ["out", "pam", "cam", "aux"]


def test_danet_routes_ssseg_loss_names_and_runs_branch_classifiers_only_in_training():
    recipe = tiny_recipe("DANet", {"feats_channels": 16, "transform_channels": 8, "dropout": 0.0},
                         losses=DA_LOSSES)
    segmentor = build_segmentor(recipe, pretrained=False)
    calls = []
    for name in ("decoder_pam", "decoder_cam"):
        getattr(segmentor.head, name).register_forward_hook(lambda *_, n=name: calls.append(n))
    segmentor.eval()
    with torch.no_grad():
        assert list(segmentor(images())) == ["out"]
    assert calls == []
    outputs = segmentor.train()(images())
    assert list(outputs) == ["out", "pam", "cam", "aux"] and calls == ["decoder_pam", "decoder_cam"]
    target = torch.randint(0, 4, (2, 64, 64))
    criterion = build_criterion(recipe, segmentor)
    losses = criterion(outputs, {"seg_target": target})
    assert set(losses) == set(DA_LOSSES)
    for loss_name, output in (("loss_cls_pamcam", "out"), ("loss_cls_pam", "pam"), ("loss_cls_cam", "cam")):
        logits = F.interpolate(outputs[output], size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(losses[loss_name], F.cross_entropy(logits, target))


def test_danet_attention_modules_start_as_identity_and_follow_the_paper():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4, 5)
    pam, cam = PositionAttentionModule(6, 3), ChannelAttentionModule()
    assert torch.equal(pam(x), x) and torch.equal(cam(x), x)  # gamma = Scale(0)
    assert count_parameters(pam) == 3 * 6 + 3 * 6 + 6 * 6 + 1 and count_parameters(cam) == 1
    with torch.no_grad():
        pam.gamma.scale.fill_(0.5)
        cam.gamma.scale.fill_(2.0)
    q, k, v = (proj(x).flatten(2) for proj in (pam.query_project, pam.key_project, pam.value_project))
    attention = torch.einsum("bcn,bcm->bnm", q, k).softmax(-1)
    torch.testing.assert_close(pam(x), x + 0.5 * torch.einsum("bnm,bcm->bcn", attention, v).reshape(x.shape))
    flat = x.flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attention = (energy.max(-1, keepdim=True).values - energy).softmax(-1)
    torch.testing.assert_close(cam(x), x + 2.0 * (attention @ flat).reshape(x.shape))


# ----------------------------------------------------------------------------------------------- NonLocalNet

R101_OS16 = {**R101_BACKBONE, "outstride": 16}
NL_HEAD = {"in_channels": 2048, "feats_channels": 512, "use_scale": True, "mode": "embeddedgaussian", "reduction": 2,
           "dropout": 0.1}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 52_390_538),  # ssseg/configs/nonlocalnet/nonlocalnet_resnet50os8_voc.py
    (R101_OS16, 150, 71_515_020),  # ssseg/configs/nonlocalnet/nonlocalnet_resnet101os16_ade20k.py
])
def test_nonlocalnet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("NonLocalNet", NL_HEAD, num_classes, backbone), pretrained=False)
    assert plan.parameters == ssseg_count


def _nl_reference(block: NonLocal2d, x: torch.Tensor) -> torch.Tensor:
    """The paper's formulas, written out position by position in einsum form."""
    n, c, h, w = x.shape
    pool = (lambda t: F.max_pool2d(t, 2)) if block.sub_sample else (lambda t: t)
    g = pool(block.g(x)).flatten(2)
    if block.mode == "gaussian":
        theta, phi = x.flatten(2), pool(x).flatten(2)
    else:
        theta, phi = block.theta(x).flatten(2), pool(block.phi(x)).flatten(2)
    if block.mode == "concatenation":
        pairs = torch.cat([theta.unsqueeze(3).expand(-1, -1, -1, phi.shape[2]),
                           phi.unsqueeze(2).expand(-1, -1, theta.shape[2], -1)], dim=1)
        f = torch.relu(torch.einsum("oc,bcnm->bnm", block.concat_project[0].weight[:, :, 0, 0], pairs))
        weights = f / phi.shape[2]
    else:
        f = torch.einsum("bcn,bcm->bnm", theta, phi)
        if block.mode == "dotproduct":
            weights = f / phi.shape[2]
        else:
            scale = theta.shape[1] ** -0.5 if block.mode == "embeddedgaussian" and block.use_scale else 1.0
            weights = (f * scale).softmax(-1)
    y = torch.einsum("bnm,bcm->bcn", weights, g).reshape(n, block.inter_channels, h, w)
    return x + block.conv_out(y)


@pytest.mark.parametrize("mode", ["embeddedgaussian", "gaussian", "dotproduct", "concatenation"])
@pytest.mark.parametrize("sub_sample", [False, True])
def test_non_local_block_follows_the_paper(mode, sub_sample):
    torch.manual_seed(0)
    block = NonLocal2d(12, reduction=4, mode=mode, sub_sample=sub_sample, norm_cfg=BN, act_cfg=RELU).eval()
    assert block.inter_channels == 3
    x = torch.randn(2, 12, 6, 8)
    torch.testing.assert_close(block(x), _nl_reference(block, x))
    # SSSeg's layout: g, conv_out (conv + norm), theta, phi (+ concat_project)
    names = [n for n, _ in block.named_children()]
    assert names == ["g", "conv_out"] + ([] if mode == "gaussian" else ["theta", "phi"]) + (
        ["concat_project"] if mode == "concatenation" else [])


def test_nonlocal_head_mode_is_checked_at_its_recipe_path():
    with pytest.raises(RecipeError, match=r"^head\.mode:"):
        validate_model(tiny_recipe("NonLocalNet", {"feats_channels": 16, "mode": "embedded_gaussian"}))


# ----------------------------------------------------------------------------------------------- DNLNet

DNL_HEAD = {**NL_HEAD, "temperature": 0.05}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 52_391_051),  # ssseg/configs/dnlnet/dnlnet_resnet50os8_voc.py
    (R101_OS16, 19, 71_381_127),  # ssseg/configs/dnlnet/dnlnet_resnet101os16_cityscapes.py
])
def test_dnlnet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("DNLNet", DNL_HEAD, num_classes, backbone), pretrained=False)
    assert plan.parameters == ssseg_count


@pytest.mark.parametrize("use_scale", [True, False])
def test_disentangled_non_local_is_whitened_pairwise_plus_unary(use_scale):
    torch.manual_seed(0)
    block = DisentangledNonLocal2d(12, temperature=0.5, reduction=4, use_scale=use_scale, norm_cfg=BN).eval()
    assert [n for n, _ in block.named_children()] == ["g", "conv_out", "theta", "phi", "conv_mask"]
    x = torch.randn(2, 12, 5, 6)
    theta, phi, g = (proj(x).flatten(2) for proj in (block.theta, block.phi, block.g))
    theta = theta - theta.mean(dim=2, keepdim=True)
    phi = phi - phi.mean(dim=2, keepdim=True)
    logits = torch.einsum("bcn,bcm->bnm", theta, phi) / 0.5
    if use_scale:
        logits = logits / 3 ** 0.5
    pairwise = torch.einsum("bnm,bcm->bcn", logits.softmax(-1), g).reshape(2, 3, 5, 6)
    unary = torch.einsum("bn,bcn->bc", block.conv_mask(x).flatten(1).softmax(-1), g)[:, :, None, None]
    torch.testing.assert_close(block(x), x + block.conv_out(pairwise + unary))


def test_disentangled_non_local_refuses_sub_sampling_and_bad_temperatures():
    with pytest.raises(ValueError, match="sub_sample"):
        DisentangledNonLocal2d(8, sub_sample=True)
    with pytest.raises(RecipeError, match=r"^head\.temperature: temperature must be > 0"):
        validate_model(tiny_recipe("DNLNet", {"feats_channels": 16, "temperature": 0.0}))


# ----------------------------------------------------------------------------------------------- GCNet

GC_HEAD = {"in_channels": 2048, "feats_channels": 512, "ratio": 0.25, "pooling_type": "att",
           "fusion_types": ["channel_add"], "norm_cfg": {"type": "LayerNorm"}, "dropout": 0.1}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 51_996_939),  # ssseg/configs/gcnet/gcnet_resnet50os8_voc.py
    (R101_BACKBONE, 150, 71_121_421),  # ssseg/configs/gcnet/gcnet_resnet101os8_ade20k.py
])
def test_gcnet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("GCNet", GC_HEAD, num_classes, backbone), pretrained=False)
    assert plan.parameters == ssseg_count


def test_gcnet_head_norm_cfg_is_the_context_blocks_and_the_convs_take_the_recipes():
    head = {"feats_channels": 16, "norm_cfg": {"type": "LayerNorm", "eps": 1e-6}}
    segmentor = build_segmentor(tiny_recipe("GCNet", head), pretrained=False).head
    norm = segmentor.contextblock_net.channel_add_conv[1]
    assert type(norm) is nn.LayerNorm and norm.normalized_shape == (4, 1, 1) and norm.eps == 1e-6
    assert type(segmentor.conv_before_cb.norm) is nn.BatchNorm2d  # the recipe's top-level norm_cfg
    assert type(segmentor.decoder[0].norm) is nn.BatchNorm2d
    head = {**head, "convs_norm_cfg": {"type": "GroupNorm", "num_groups": 4}}
    segmentor = build_segmentor(tiny_recipe("GCNet", head), pretrained=False).head
    assert type(segmentor.conv_after_cb.norm) is nn.GroupNorm
    # without a head norm_cfg the block takes the recipe's (SSSeg: head_cfg.get('norm_cfg', norm_cfg))
    segmentor = build_segmentor(tiny_recipe("GCNet", {"feats_channels": 16}), pretrained=False).head
    assert type(segmentor.contextblock_net.channel_add_conv[1]) is nn.BatchNorm2d


@pytest.mark.parametrize("pooling_type", ["att", "avg"])
def test_context_block_pools_one_context_per_image_and_fuses_it(pooling_type):
    torch.manual_seed(0)
    block = ContextBlock(8, 0.5, pooling_type=pooling_type, fusion_types=["channel_add", "channel_mul"],
                         norm_cfg={"type": "LayerNorm"}, act_cfg=RELU).eval()
    x = torch.randn(2, 8, 5, 6)
    if pooling_type == "att":
        weights = block.conv_mask(x).flatten(1).softmax(-1)
        context = torch.einsum("bn,bcn->bc", weights, x.flatten(2))[:, :, None, None]
    else:
        context = x.mean(dim=(2, 3), keepdim=True)
    expected = x * torch.sigmoid(block.channel_mul_conv(context)) + block.channel_add_conv(context)
    torch.testing.assert_close(block(x), expected)
    assert count_parameters(block) == (9 if pooling_type == "att" else 0) + 2 * (8 * 4 + 4 + 2 * 4 + 4 * 8 + 8)


# ----------------------------------------------------------------------------------------------- ISANet

ISA_HEAD = {"down_factor": [8, 8], "in_channels": 2048, "feats_channels": 512, "isa_channels": 256, "dropout": 0.1}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 44_267_402),  # ssseg/configs/isanet/isanet_resnet50os8_voc.py
    (R101_BACKBONE, 19, 63_257_478),  # ssseg/configs/isanet/isanet_resnet101os8_cityscapes.py
])
def test_isanet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("ISANet", ISA_HEAD, num_classes, backbone), pretrained=False)
    assert plan.parameters == ssseg_count


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        return x


def test_isa_groups_are_interlaced_then_local_with_symmetric_padding():
    head = ISAHead(in_channels=4, num_classes=2, down_factor=(2, 3), feats_channels=4, isa_channels=2, norm_cfg=BN)
    head.global_relation, head.local_relation = _Recorder(), _Recorder()
    feats = torch.randn(1, 4, 5, 7)  # padded to 6x9: rows (0, 1), columns (1, 1)
    torch.testing.assert_close(head.interlaced_attention(feats), feats)  # the permutations invert exactly
    padded = F.pad(feats, (1, 1, 0, 1))
    long_range, short_range = head.global_relation.seen[0], head.local_relation.seen[0]
    assert long_range.shape == (2 * 3, 4, 3, 3) and short_range.shape == (3 * 3, 4, 2, 3)
    for i in range(2):
        for j in range(3):  # group (i, j): the pixel at offset (i, j) of every 2x3 block
            torch.testing.assert_close(long_range[i * 3 + j], padded[0, :, i::2, j::3])
    for bi in range(3):
        for bj in range(3):  # block (bi, bj): its 2x3 neighbourhood
            torch.testing.assert_close(short_range[bi * 3 + bj], padded[0, :, 2 * bi:2 * bi + 2, 3 * bj:3 * bj + 3])


def test_isa_down_factor_is_checked():
    with pytest.raises(RecipeError, match=r"^head\.down_factor"):
        validate_model(tiny_recipe("ISANet", {"feats_channels": 16, "down_factor": [0, 8]}))


# ----------------------------------------------------------------------------------------------- ANNNet

ANN_HEAD = {"in_channels_list": [1024, 2048], "transform_channels": 256, "query_scales": [1], "feats_channels": 512,
            "key_pool_scales": [1, 3, 6, 8], "dropout": 0.1}


@pytest.mark.parametrize(("backbone", "num_classes", "ssseg_count"), [
    (FCN_R50_VOC_BACKBONE, 21, 48_592_266),  # ssseg/configs/annnet/annnet_resnet50os8_voc.py
    (R101_OS16, 150, 67_716_748),  # ssseg/configs/annnet/annnet_resnet101os16_ade20k.py
])
def test_annnet_parameters_match_ssseg(backbone, num_classes, ssseg_count):
    plan = validate_model(ssseg_recipe("ANNNet", ANN_HEAD, num_classes, backbone), pretrained=False)
    assert plan.parameters == ssseg_count


def test_ann_dropout_sits_after_afnb_as_in_ssseg():
    head = build_segmentor(tiny_recipe("ANNNet", {"feats_channels": 16, "transform_channels": 8}),
                           pretrained=False).head
    order = []
    for name in ("afn_block", "bottleneck", "apn_block"):
        getattr(head, name).register_forward_hook(lambda *_, n=name: order.append(n))
    head.decoder[0].register_forward_hook(lambda *_: order.append("dropout"))
    head.decoder[1].register_forward_hook(lambda *_: order.append("classifier"))
    head.eval()([torch.randn(1, 32, 8, 8), torch.randn(1, 64, 8, 8)])
    assert order == ["afn_block", "dropout", "bottleneck", "apn_block", "classifier"]
    # APNB shares its key/query projection; AFNB does not (queries and keys come from different features)
    assert head.apn_block.stages[0].query_project is head.apn_block.stages[0].key_project
    assert head.afn_block.stages[0].query_project is not head.afn_block.stages[0].key_project
    assert type(head.afn_block.bottleneck.act) is nn.Identity  # AFNB fuses with conv + norm only


def test_ann_in_channels_list_is_sssegs_spelling_and_is_checked():
    head = {"feats_channels": 16, "transform_channels": 8}
    validate_model(tiny_recipe("ANNNet", {**head, "in_channels_list": [32, 64]}))
    with pytest.raises(RecipeError, match=r"^head\.in_channels_list: \[1024, 2048\] does not match"):
        validate_model(tiny_recipe("ANNNet", {**head, "in_channels_list": [1024, 2048]}))


def test_ppm_concat_flattens_the_key_pyramid_and_multi_scale_queries_work():
    x = torch.randn(2, 5, 8, 8)
    pooled = PPMConcat((1, 3, 6, 8))(x)
    assert pooled.shape == (2, 5, 1 + 9 + 36 + 64)
    torch.testing.assert_close(pooled[:, :, 0], x.mean(dim=(2, 3)))
    head = ANNHead(in_channels=[6, 8], num_classes=3, query_scales=(1, 2), feats_channels=8, transform_channels=4,
                   norm_cfg=BN).eval()
    assert len(head.afn_block.stages) == len(head.apn_block.stages) == 2
    assert head([torch.randn(1, 6, 8, 8), torch.randn(1, 8, 8, 8)]).shape == (1, 3, 8, 8)
