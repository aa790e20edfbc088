"""Query-based segmentation (MaskFormer, Mask2Former): multi-scale deformable attention against a loop written from
its definition, the Hungarian matcher against brute force, SetCriterion's terms against formulas, parameter counts of
SSSegmentation's default configs, and SSSegmentation checkpoint layouts."""

from __future__ import annotations

import hashlib
import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from segkit.errors import CheckpointError, RecipeError
from segkit.models import build_criterion, build_segmentor
from segkit.models.criteria import HungarianMatcher, SetCriterion, format_targets
from segkit.models.heads.mask2former import Mask2FormerHead
from segkit.models.heads.maskformer import MaskFormerHead, query_output_names
from segkit.models.layers import ArgumentError
from segkit.models.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from segkit.models.layers.point_sample import point_sample
from segkit.models.segmentors.mask2former import Mask2Former
from segkit.models.segmentors.maskformer import MaskFormer
from segkit.models.ssseg_checkpoint import convert_ssseg_state_dict

# ----------------------------------------------------------------------------------------------- deformable attention


def bilinear_at(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``image`` ``[D, H, W]`` read at normalised ``(x, y)`` (0-d tensors; pixel ``(i, j)`` centred at
    ``((j+.5)/W, (i+.5)/H)``), bilinearly, zero outside: the definition, one corner at a time."""
    _, height, width = image.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px.item()), math.floor(py.item())
    value = torch.zeros(image.shape[0], dtype=image.dtype)
    for xi, yi in itertools.product((x0, x0 + 1), (y0, y0 + 1)):
        if 0 <= xi < width and 0 <= yi < height:
            value = value + (1 - abs(px - xi)) * (1 - abs(py - yi)) * image[:, yi, xi]
    return value


def deform_attn_loop(value, shapes, locations, weights):
    """Multi-scale deformable attention by its definition: for every image, query and head, the weighted sum over
    levels and points of the level's value map read bilinearly at the location."""
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads * channels, dtype=value.dtype)
    for n, q, m in itertools.product(range(batch), range(queries), range(heads)):
        total = torch.zeros(channels, dtype=value.dtype)
        for level, (h, w) in enumerate(shapes):
            image = value[n, starts[level]:starts[level + 1], m].T.reshape(channels, h, w)
            for p in range(points):
                x, y = locations[n, q, m, level, p]
                total = total + weights[n, q, m, level, p] * bilinear_at(image, x, y)
        out[n, q, m * channels:(m + 1) * channels] = total
    return out


SHAPES = [(5, 7), (3, 4), (2, 2)]


def _deform_inputs(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    batch, heads, channels, queries, points = 2, 2, 3, 4, 3
    positions = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, positions, heads, channels, generator=g, dtype=dtype)
    # locations beyond [0, 1] too: the zero padding is part of the definition
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=g, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, locations, weights


def test_deformable_attention_equals_its_definition_values_and_gradients():
    value, locations, weights = (t.requires_grad_() for t in _deform_inputs())
    fast = ms_deform_attn_core(value, SHAPES, locations, weights)
    slow = deform_attn_loop(value, SHAPES, locations, weights)
    assert fast.shape == (2, 4, 2 * 3)
    assert (fast - slow).abs().max().item() < 1e-12
    probe = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * probe).sum(), (value, locations, weights))
    grads_slow = torch.autograd.grad((slow * probe).sum(), (value, locations, weights))
    for fast_grad, slow_grad in zip(grads_fast, grads_slow, strict=True):
        assert (fast_grad - slow_grad).abs().max().item() < 1e-10


def test_deformable_attention_passes_gradcheck():
    value, locations, weights = _deform_inputs(seed=1)
    # keep the locations away from pixel centres, where bilinear interpolation is not differentiable
    assert torch.autograd.gradcheck(lambda v, lo, w: ms_deform_attn_core(v, SHAPES, lo, w),
                                    (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_()),
                                    eps=1e-6, atol=1e-5)


def test_msdeformattn_module_shapes_init_and_float32():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    # the initial offsets point each head in its own direction at distances 1..n_points (pixels)
    bias = attn.sampling_offsets.bias.view(4, 3, 2, 2)
    assert torch.equal(bias[:, :, 1], 2 * bias[:, :, 0]) and torch.equal(bias[:, 0], bias[:, 2])
    assert bias[:, 0, 0].abs().max(-1).values.eq(1).all()
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.sampling_offsets.weight.abs().sum() == 0
    positions = sum(h * w for h, w in SHAPES)
    src = torch.randn(2, positions, 16)
    reference = torch.rand(1, positions, 1, 2)
    out = attn(src, reference, src, SHAPES)
    assert out.shape == (2, positions, 16) and out.dtype == torch.float32
    # in float64 the module is the projections around the core
    attn64 = attn.double()
    src64, ref64 = src.double(), reference.double()
    value = attn64.value_proj(src64).view(2, positions, 4, 4)
    offsets = attn64.sampling_offsets(src64).view(2, positions, 4, 3, 2, 2)
    weights = attn64.attention_weights(src64).view(2, positions, 4, 6).softmax(-1).view(2, positions, 4, 3, 2)
    normaliser = torch.tensor([[w, h] for h, w in SHAPES], dtype=torch.float64)
    locations = ref64[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
    expected = attn64.output_proj(deform_attn_loop(value.detach(), SHAPES, locations.detach(), weights.detach()))
    assert (attn64(src64, ref64, src64, SHAPES) - expected).abs().max().item() < 1e-10


def test_deformable_attention_rejects_mismatched_shapes():
    value, locations, weights = _deform_inputs()
    with pytest.raises(ValueError, match="positions"):
        ms_deform_attn_core(value, [(5, 7), (3, 4), (2, 3)], locations, weights)
    with pytest.raises(ValueError, match="levels"):
        ms_deform_attn_core(value, SHAPES[:2], locations, weights)


# ----------------------------------------------------------------------------------------------- matcher


def dice_formula(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = logit.sigmoid().flatten()
    target = target.flatten()
    return 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)


def pair_costs(logits, masks, labels, target_masks, matcher: HungarianMatcher) -> torch.Tensor:
    """The matcher's cost matrix, one pair at a time from written-out losses (torchvision's focal loss, torch's BCE),
    on every pixel (targets resized to the predictions by nearest neighbour)."""
    targets = torch.nn.functional.interpolate(target_masks[:, None].double(), size=masks.shape[-2:],
                                              mode="nearest")[:, 0]
    cost = torch.zeros(len(logits), len(labels), dtype=torch.float64)
    for q, t in itertools.product(range(len(logits)), range(len(labels))):
        if matcher.mask_cost == "focal":
            mask = sigmoid_focal_loss(masks[q].double(), targets[t], alpha=0.25, gamma=2.0, reduction="mean")
        else:
            mask = torch.nn.functional.binary_cross_entropy_with_logits(masks[q].double(), targets[t])
        cost[q, t] = (matcher.cost_class * -logits[q].double().softmax(-1)[labels[t]] + matcher.cost_mask * mask
                      + matcher.cost_dice * dice_formula(masks[q].double(), targets[t]))
    return cost


def brute_force(cost: torch.Tensor) -> tuple[float, set]:
    """The cheapest one-to-one assignment of the targets (columns) to distinct queries (rows), by enumeration."""
    queries, targets = cost.shape
    best = min(itertools.permutations(range(queries), targets),
               key=lambda rows: sum(cost[r, t].item() for t, r in enumerate(rows)))
    return sum(cost[r, t].item() for t, r in enumerate(best)), {(r, t) for t, r in enumerate(best)}


def _image(seed: int, queries: int, targets: int, classes: int = 5, size: int = 6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(queries, classes + 1, generator=g)
    masks = torch.randn(queries, size, size, generator=g) * 3
    labels = torch.randperm(classes, generator=g)[:targets]
    target_masks = torch.rand(targets, 2 * size, 2 * size, generator=g) > 0.5
    return logits, masks, labels, target_masks


@pytest.mark.parametrize("mask_cost", ["focal", "bce"])
@pytest.mark.parametrize("queries,targets", [(5, 3), (4, 4), (6, 1), (3, 5)])
def test_matcher_equals_brute_force(mask_cost, queries, targets):
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=3.0, num_points=0, mask_cost=mask_cost)
    for seed in range(4):
        logits, masks, labels, target_masks = _image(seed, queries, targets)
        cost = pair_costs(logits, masks, labels, target_masks, matcher)
        assert torch.allclose(matcher.cost_matrix(logits, masks, labels, target_masks).double(), cost, atol=1e-5)
        (rows, cols), = matcher(logits[None], masks[None], [(labels, target_masks)])
        assert len(rows) == min(queries, targets) and rows.tolist() == sorted(rows.tolist())
        if targets <= queries:
            total, pairs = brute_force(cost)
            assert {(int(r), int(c)) for r, c in zip(rows, cols, strict=True)} == pairs
        else:  # more targets than queries: every query is used, the cheapest subset of targets is matched
            total, pairs = brute_force(cost.T)
            assert {(int(c), int(r)) for r, c in zip(rows, cols, strict=True)} == pairs
        assert math.isclose(cost[rows, cols].sum().item(), total, rel_tol=1e-9)


def test_matcher_is_deterministic_and_handles_empty_targets():
    logits, masks, labels, target_masks = _image(0, 6, 3)
    dense = HungarianMatcher(cost_class=1.0, cost_mask=20.0, cost_dice=1.0, num_points=0, mask_cost="focal")
    first = dense(logits[None], masks[None], [(labels, target_masks)])
    assert all(torch.equal(a, b) for a, b in zip(first[0], dense(logits[None], masks[None],
                                                                [(labels, target_masks)])[0], strict=True))
    points = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16, mask_cost="bce")
    batch = (torch.stack([logits, logits.flip(0)]), torch.stack([masks, masks.flip(0)]),
             [(labels, target_masks), (labels[:0], target_masks[:0])])
    runs = [points(*batch, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert all(torch.equal(a, b) for image_a, image_b in zip(*runs, strict=True)
               for a, b in zip(image_a, image_b, strict=True))
    assert runs[0][1][0].numel() == 0 and runs[0][1][1].numel() == 0
    # the shared points: the cost at points equals the formula on the sampled pixels
    g = torch.Generator().manual_seed(3)
    cost = points.cost_matrix(logits, masks, labels, target_masks, generator=g)
    coords = torch.rand(1, 16, 2, generator=torch.Generator().manual_seed(3))
    sampled = point_sample(masks[None], coords)[0]
    wanted = point_sample(target_masks[None].float(), coords)[0]
    expected = torch.zeros(6, 3)
    for q, t in itertools.product(range(6), range(3)):
        expected[q, t] = (2.0 * -logits[q].softmax(-1)[labels[t]]
                          + 5.0 * torch.nn.functional.binary_cross_entropy_with_logits(sampled[q], wanted[t])
                          + 5.0 * dice_formula(sampled[q], wanted[t]))
    assert torch.allclose(cost, expected, atol=1e-5)


def test_matcher_rejects_bad_arguments():
    with pytest.raises(ArgumentError, match="cannot all be 0"):
        HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0)
    with pytest.raises(ArgumentError, match="num_points"):
        HungarianMatcher(num_points=-1)


# ----------------------------------------------------------------------------------------------- criterion


def _seg_targets() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    seg = torch.randint(0, 3, (2, 8, 8), generator=g)
    seg[0, :2] = -100  # ignored pixels
    seg[1, 4:] = 3
    seg[1, 0, 0] = 255  # dropped like -100 by default
    return seg


def _predictions(num_aux: int, classes: int = 4, queries: int = 5, size: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    outputs = {}
    for suffix in [""] + [f"_{i}" for i in range(num_aux)]:
        outputs[f"pred_logits{suffix}"] = torch.randn(2, queries, classes + 1, generator=g).requires_grad_()
        outputs[f"pred_masks{suffix}"] = (torch.randn(2, queries, size, size, generator=g) * 2).requires_grad_()
    return outputs


def test_format_targets_drops_ignored_labels_and_rejects_unknown_ones():
    (labels0, masks0), (labels1, masks1) = format_targets(_seg_targets(), num_classes=4)
    assert labels0.tolist() == sorted(set(_seg_targets()[0].flatten().tolist()) - {-100})
    assert labels1.tolist() == [0, 1, 2, 3]
    assert masks0.dtype == torch.bool and masks0.shape == (len(labels0), 8, 8)
    assert torch.equal(masks1.sum(0), (~torch.isin(_seg_targets()[1], torch.tensor([-100, 255]))).long())
    assert format_targets(torch.full((1, 4, 4), -100), num_classes=4)[0][0].numel() == 0
    with pytest.raises(ValueError, match=r"labels \[7\]"):
        format_targets(torch.full((1, 4, 4), 7), num_classes=4)


def test_set_criterion_dense_terms_equal_the_formulas():
    """MaskFormer's settings: focal mask loss on every target pixel; each term checked against its formula."""
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=20.0, cost_dice=1.0, num_points=0, mask_cost="focal")
    weights = {"loss_ce": 1.5, "loss_mask": 20.0, "loss_dice": 0.5}
    criterion = SetCriterion(4, matcher, weights, eos_coef=0.1, mask_loss="focal", num_aux=1)
    outputs, seg = _predictions(num_aux=1), _seg_targets()
    terms = criterion(outputs, {"seg_target": seg})
    assert list(terms) == ["loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"]
    assert list(terms) == criterion.term_names()
    targets = format_targets(seg, 4)
    num_masks = sum(len(labels) for labels, _ in targets)
    for suffix in ("", "_0"):
        logits, masks = outputs[f"pred_logits{suffix}"].detach(), outputs[f"pred_masks{suffix}"].detach()
        ce_num = ce_den = focal = dice = 0.0
        for image, (labels, target_masks) in enumerate(targets):
            cost = pair_costs(logits[image], masks[image], labels, target_masks, matcher)
            _, pairs = brute_force(cost)
            classes = torch.full((5,), 4)
            for q, t in pairs:
                classes[q] = labels[t]
                up = torch.nn.functional.interpolate(masks[image, q][None, None].double(), size=(8, 8),
                                                     mode="bilinear", align_corners=False)[0, 0]
                focal += sigmoid_focal_loss(up, target_masks[t].double(), alpha=0.25, gamma=2.0, reduction="mean")
                dice += dice_formula(up, target_masks[t].double())
            for q in range(5):
                w = 0.1 if classes[q] == 4 else 1.0
                ce_num += -w * logits[image, q].double().log_softmax(-1)[classes[q]]
                ce_den += w
        assert math.isclose(terms[f"loss_ce{suffix}"].item(), 1.5 * ce_num / ce_den, rel_tol=1e-5)
        assert math.isclose(terms[f"loss_mask{suffix}"].item(), 20.0 * focal / num_masks, rel_tol=1e-5)
        assert math.isclose(terms[f"loss_dice{suffix}"].item(), 0.5 * dice / num_masks, rel_tol=1e-5)
    torch.stack(list(terms.values())).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in outputs.values())


def test_set_criterion_point_losses_approach_the_dense_ones_and_are_reproducible():
    """Mask2Former's settings: BCE and dice at random points. With uniform points (importance ratio 0) and many
    of them they estimate the every-pixel losses of the same matching (targets are read bilinearly at the points,
    so large regions keep the soft border small); a generator makes them reproducible."""
    outputs = _predictions(num_aux=0, size=8)
    seg = torch.zeros(2, 64, 64, dtype=torch.long)
    seg[:, 32:] = 1
    seg[0, :, 40:] = 2
    seg[1, :20, :20] = 3
    dense = SetCriterion(4, HungarianMatcher(2.0, 5.0, 5.0, num_points=0), {"loss_ce": 2, "loss_mask": 5,
                                                                           "loss_dice": 5}, mask_loss="bce")
    sampled = SetCriterion(4, HungarianMatcher(2.0, 5.0, 5.0, num_points=0),
                           {"loss_ce": 2, "loss_mask": 5, "loss_dice": 5}, mask_loss="bce",
                           point_sampling={"num_points": 40000, "oversample_ratio": 1.0,
                                           "importance_sample_ratio": 0.0})
    exact = dense(outputs, seg)
    estimate = sampled(outputs, seg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(exact["loss_ce"], estimate["loss_ce"])
    for name in ("loss_mask", "loss_dice"):
        assert math.isclose(estimate[name].item(), exact[name].item(), rel_tol=0.03), name
    m2f = SetCriterion(4, HungarianMatcher(2.0, 5.0, 5.0, num_points=64), {"loss_ce": 2, "loss_mask": 5,
                                                                          "loss_dice": 5},
                       point_sampling={"num_points": 64, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75})
    runs = [m2f(outputs, seg, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_set_criterion_empty_images_and_all_ignored_batches():
    criterion = SetCriterion(4, HungarianMatcher(1.0, 20.0, 1.0, mask_cost="focal"),
                             {"loss_ce": 1.0, "loss_mask": 20.0, "loss_dice": 1.0}, mask_loss="focal")
    outputs = _predictions(num_aux=0)
    seg = _seg_targets()
    seg[1] = -100
    terms = criterion(outputs, seg)
    assert all(torch.isfinite(v) for v in terms.values())
    terms = criterion(outputs, torch.full_like(seg, -100))
    assert terms["loss_mask"].item() == 0 and terms["loss_dice"].item() == 0
    # every query is "no object": the weighted cross-entropy is the plain mean
    expected = -outputs["pred_logits"].detach().log_softmax(-1)[..., -1].mean()
    assert math.isclose(terms["loss_ce"].item(), expected.item(), rel_tol=1e-6)
    torch.stack(list(terms.values())).sum().backward()


# ----------------------------------------------------------------------------------------------- SSSeg parity

SSSEG_HEADS = {
    # SSSegmentation 1.7.0's configs built with its own modules (/work/ssseg, fvcore's init stubbed, pretrained off):
    # parameters outside backbone_net, and the sha256 (first 16 hex digits) of its non-backbone state-dict layout,
    # "key [shape]" per line in state-dict order, criterion.empty_weight left out. Whole models: MaskFormer Swin-B
    # 121,858,319 and Swin-T 60,614,481; Mask2Former Swin-B ADE20k 106,922,191 and Swin-T Cityscapes 47,405,966.
    "maskformer_swinbase_ade20k": (34_977_943, "fbc10191fe5e3c5a"),
    "maskformer_swintiny_ade20k": (33_093_783, "3c00d261a3d85bcb"),
    "mask2former_swinbase_ade20k": (20_041_815, "6bbeb062130ace0d"),
    "mask2former_swintiny_cityscapes": (19_885_268, "8e92ee4b7f935481"),
}


def ssseg_layout_digest(segmentor_cls, head: torch.nn.Module) -> str:
    """The head's state-dict layout under SSSegmentation's names (the class's ``ssseg_prefixes`` reversed)."""
    reverse = {dst: src for src, dst in segmentor_cls.ssseg_prefixes.items() if dst.startswith("head.")}
    rows = []
    for key, tensor in head.state_dict().items():
        full = f"head.{key}"
        prefix = next(p for p in sorted(reverse, key=len, reverse=True) if full.startswith(p + "."))
        rows.append(f"{reverse[prefix]}{full[len(prefix):]} {list(tensor.shape)}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


MASKFORMER_PREDICTOR = {"mask_classification": True, "hidden_dim": 256, "num_queries": 100, "nheads": 8,
                        "dropout": 0.1, "dim_feedforward": 2048, "enc_layers": 0, "dec_layers": 6, "pre_norm": False,
                        "deep_supervision": True, "enforce_input_project": False,
                        "norm_cfg": {"type": "LayerNorm"}, "act_cfg": {"type": "ReLU", "inplace": True}}


@pytest.mark.parametrize("config,channels", [("maskformer_swinbase_ade20k", [128, 256, 512, 1024]),
                                             ("maskformer_swintiny_ade20k", [96, 192, 384, 768])])
def test_maskformer_head_matches_ssseg_parameters_and_layout(config, channels):
    with torch.device("meta"):
        head = MaskFormerHead(in_channels=channels, num_classes=150, feats_channels=512, pool_scales=(1, 2, 3, 6),
                              mask_feats_channels=256, predictor=dict(MASKFORMER_PREDICTOR),
                              norm_cfg={"type": "SyncBatchNorm"})
    parameters, digest = SSSEG_HEADS[config]
    assert sum(p.numel() for p in head.parameters()) == parameters
    assert ssseg_layout_digest(MaskFormer, head) == digest


MASK2FORMER_PIXEL_DECODER = {"common_stride": 4, "transformer_dropout": 0.0, "transformer_nheads": 8,
                             "transformer_dim_feedforward": 1024, "transformer_enc_layers": 6, "conv_dim": 256,
                             "mask_dim": 256, "transformer_in_features": ["res3", "res4", "res5"],
                             "norm_cfg": {"type": "GroupNorm", "num_groups": 32},
                             "act_cfg": {"type": "ReLU", "inplace": True}}
MASK2FORMER_PREDICTOR = {"in_channels": 256, "hidden_dim": 256, "num_queries": 100, "nheads": 8,
                         "dim_feedforward": 2048, "dec_layers": 10, "pre_norm": False, "mask_dim": 256,
                         "enforce_input_project": False, "mask_classification": True}


@pytest.mark.parametrize("config,channels,classes", [("mask2former_swinbase_ade20k", [128, 256, 512, 1024], 150),
                                                     ("mask2former_swintiny_cityscapes", [96, 192, 384, 768], 19)])
def test_mask2former_head_matches_ssseg_parameters_and_layout(config, channels, classes):
    """SSSegmentation's MSDeformAttn needs mmcv only to run, not to build: these are its own modules' counts."""
    with torch.device("meta"):
        head = Mask2FormerHead(in_channels=channels, in_strides=[4, 8, 16, 32], num_classes=classes,
                               pixel_decoder={**MASK2FORMER_PIXEL_DECODER,
                                              "input_shape": {"in_channels": channels, "strides": [4, 8, 16, 32]}},
                               predictor=dict(MASK2FORMER_PREDICTOR))
    parameters, digest = SSSEG_HEADS[config]
    assert sum(p.numel() for p in head.parameters()) == parameters
    assert ssseg_layout_digest(Mask2Former, head) == digest
    assert head.predictor.num_layers == 9 and head.num_aux == 9
    # the deformable-attention parameters by formula: per encoder layer, value/output projections C*C + C each,
    # attention weights C*(h*l*p) + h*l*p, sampling offsets twice that (C = 256, h = 8 heads, l = 3 levels, p = 4)
    attn = head.pixel_decoder.transformer.encoder.layers[0].self_attn
    assert sum(p.numel() for p in attn.parameters()) == 2 * (256 * 256 + 256) + 3 * (256 * 96 + 96)


def test_mask2former_default_criterion_has_ssseg_terms():
    with torch.device("meta"):
        head = Mask2FormerHead(in_channels=[96, 192, 384, 768], in_strides=[4, 8, 16, 32], num_classes=19,
                               pixel_decoder=dict(MASK2FORMER_PIXEL_DECODER), predictor=dict(MASK2FORMER_PREDICTOR))

    class DefaultMask2Former:  # SSSeg's default Mask2Former, without building its backbone
        set_criterion_defaults = Mask2Former.set_criterion_defaults

        def output_names(self, training: bool = True) -> list[str]:
            return head.training_outputs()

    recipe = SimpleNamespace(type="Mask2Former", num_classes=19, losses={})
    criterion = SetCriterion.from_recipe(recipe, DefaultMask2Former(), {})
    names = criterion.term_names()
    assert len(names) == 30 and names[:3] == ["loss_ce", "loss_mask", "loss_dice"] and names[-1] == "loss_dice_8"
    assert criterion.weights == {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    assert criterion.sampler.num_points == 12544 and criterion.matcher.num_points == 12544
    assert criterion.sampler.oversample_ratio == 3.0 and criterion.sampler.importance_sample_ratio == 0.75
    assert criterion.mask_loss == "bce" and criterion.eos_coef == 0.1


def test_mask2former_pixel_decoder_runs_in_float32_under_autocast():
    _, size, segmentor = _small("Mask2Former")
    seen = {}
    segmentor.head.pixel_decoder.register_forward_hook(
        lambda module, args, output: seen.update(inputs=args[0][0].dtype, mask_features=output[0].dtype))
    attn = segmentor.head.pixel_decoder.transformer.encoder.layers[0].self_attn
    attn.register_forward_hook(lambda module, args, output: seen.update(attn=output.dtype))
    images = torch.randn(2, 3, size, size)
    segmentor.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = segmentor(images)
    assert seen == {"inputs": torch.float32, "mask_features": torch.float32, "attn": torch.float32}
    assert outputs["pred_masks"].dtype == torch.bfloat16  # the transformer decoder runs under autocast
    recipe, _ = _small_recipe("Mask2Former")
    criterion = build_criterion(recipe, segmentor)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = criterion(outputs, torch.randint(0, 4, (2, size, size)))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    # a float64 model stays in float64 (the cast is to at least float32) and computes what float32 does
    segmentor.eval()
    with torch.no_grad():
        out32 = segmentor(images)["out"]
        out64 = segmentor.double()(images.double())["out"]
    assert seen == {"inputs": torch.float64, "mask_features": torch.float64, "attn": torch.float64}
    assert out64.dtype == torch.float64 and torch.allclose(out64.float(), out32, rtol=1e-4, atol=1e-5)


def _small_recipe(name: str):
    from .test_registry_models import small_recipe

    return small_recipe(name)


def _small(name: str):
    from .test_registry_models import small_recipe

    recipe, size = small_recipe(name)
    torch.manual_seed(0)
    return recipe, size, build_segmentor(recipe, pretrained=False)


def to_ssseg_layout(segmentor) -> dict[str, torch.Tensor]:
    """A segkit state dict renamed to SSSegmentation's layout, with the criterion's buffer SSSegmentation keeps."""
    reverse = {dst: src for src, dst in type(segmentor).ssseg_prefixes.items()}
    state = {}
    for key, tensor in segmentor.state_dict().items():
        prefix = next(p for p in sorted(reverse, key=len, reverse=True) if key.startswith(p + "."))
        state[reverse[prefix] + key[len(prefix):]] = tensor.clone()
    state["criterion.empty_weight"] = torch.tensor([1.0] * segmentor.head.num_classes + [0.1])
    return state


@pytest.mark.parametrize("name", ["MaskFormer", "Mask2Former"])
def test_ssseg_checkpoint_with_criterion_buffer_loads(name):
    _, _, segmentor = _small(name)
    state = to_ssseg_layout(segmentor)
    assert "criterion.empty_weight" in state and not any(k.startswith("head.") for k in state)
    converted = convert_ssseg_state_dict({"model": state}, segmentor)
    assert list(converted) == list(segmentor.state_dict())
    assert all(torch.equal(converted[k], v) for k, v in segmentor.state_dict().items())
    segmentor.load_state_dict(converted, strict=True)
    # an unknown extra key is still an error: only the declared buffer is dropped
    with pytest.raises(CheckpointError, match="criterion.other"):
        convert_ssseg_state_dict({**state, "criterion.other": torch.ones(1)}, segmentor)


# ----------------------------------------------------------------------------------------------- segmentors


@pytest.mark.parametrize("name", ["MaskFormer", "Mask2Former"])
def test_query_segmentor_outputs_and_semantic_inference(name):
    recipe, size, segmentor = _small(name)
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    segmentor.train()
    outputs = segmentor(images)
    num_aux = segmentor.head.num_aux
    assert num_aux == {"MaskFormer": 1, "Mask2Former": 2}[name] and list(outputs) == query_output_names(num_aux) == segmentor.output_names(training=True)
    queries = outputs["pred_logits"].shape[1]
    assert outputs["pred_logits"].shape == (2, queries, recipe.num_classes + 1)
    assert outputs["pred_masks"].shape == (2, queries, size // 4, size // 4)
    segmentor.eval()
    with torch.no_grad():
        predictions = segmentor.head(segmentor.extract_features(images))
        out = segmentor(images)["out"]
    assert list(predictions) == ["pred_logits", "pred_masks"] and segmentor.output_names(False) == ["out"]
    masks = torch.nn.functional.interpolate(predictions["pred_masks"], size=(size, size), mode="bilinear",
                                            align_corners=False).sigmoid()
    probs = predictions["pred_logits"].softmax(-1)[..., :-1]
    expected = (probs[:, :, :, None, None] * masks[:, :, None]).sum(1)  # sum over queries
    assert out.shape == (2, recipe.num_classes, size, size)
    assert torch.allclose(out, expected, atol=1e-6) and out.min() >= 0


@pytest.mark.parametrize("name", ["MaskFormer", "Mask2Former"])
def test_query_criterion_from_recipe_defaults_reduce_mean_and_errors(name):
    recipe, size, segmentor = _small(name)
    criterion = build_criterion(recipe, segmentor)
    assert isinstance(criterion, SetCriterion) and criterion.num_aux == segmentor.head.num_aux
    defaults = type(segmentor).set_criterion_defaults
    assert criterion.eos_coef == defaults["eos_coef"] and criterion.mask_loss == defaults["mask_loss"]
    assert criterion.weights == {"loss_ce": defaults["matcher"]["cost_class"],
                                 "loss_mask": defaults["matcher"]["cost_mask"],
                                 "loss_dice": defaults["matcher"]["cost_dice"]}
    assert "empty_weight" not in criterion.state_dict()  # not persistent: SSSegmentation's copy is dropped on import
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    seg = torch.randint(0, recipe.num_classes, (2, size, size), generator=torch.Generator().manual_seed(1))
    segmentor.train()
    outputs = {k: v.detach() for k, v in segmentor(images).items()}
    plain = criterion(outputs, {"seg_target": seg}, generator=torch.Generator().manual_seed(0))
    seen = []
    segmentor.reduce_mean = lambda t: seen.append(t.clone()) or t * 2  # as the engine sets it after building
    doubled = criterion(outputs, {"seg_target": seg}, generator=torch.Generator().manual_seed(0))
    assert seen and seen[0].item() == sum(len(torch.unique(s)) for s in seg)
    for term in plain:
        factor = 1.0 if term.startswith("loss_ce") else 0.5
        assert math.isclose(doubled[term].item(), factor * plain[term].item(), rel_tol=1e-5), term
    # the recipe's tables override the segmentor's defaults; weights default to the matcher costs
    recipe.criterion = {"eos_coef": 0.2, "matcher": {"type": "HungarianMatcher", "cost_class": 3.0},
                        "weights": {"loss_dice": 7.0}}
    custom = build_criterion(recipe, segmentor)
    assert custom.eos_coef == 0.2 and custom.empty_weight[-1].item() == pytest.approx(0.2)
    assert custom.weights["loss_ce"] == 3.0 and custom.weights["loss_dice"] == 7.0
    assert custom.matcher.cost_mask == defaults["matcher"]["cost_mask"]
    for table, path in [({"eos_cof": 0.1}, "criterion.eos_cof"), ({"matcher": {"cost_clas": 1.0}},
                                                                    "criterion.matcher.cost_clas"),
                        ({"weights": {"loss_cee": 1.0}}, "criterion.weights.loss_cee"),
                        ({"point_sampling": {"num_point": 4}}, "criterion.point_sampling.num_point"),
                        ({"matcher": {"type": "Greedy"}}, "criterion.matcher.type"),
                        ({"matcher": {"num_points": -1}}, "criterion.matcher.num_points"),
                        ({"mask_loss": "dice"}, "criterion.mask_loss"),
                        ({"losses": ["labels", "boxes"]}, "criterion.losses[1]")]:
        recipe.criterion = table
        with pytest.raises(RecipeError) as info:
            build_criterion(recipe, segmentor)
        assert info.value.path == path, (table, str(info.value))
    recipe.criterion = None
    recipe.losses = {"loss_cls": {"type": "CrossEntropyLoss"}}
    with pytest.raises(RecipeError, match="weights live in"):
        build_criterion(recipe, segmentor)


@pytest.mark.parametrize("name", ["MaskFormer", "Mask2Former"])
def test_query_recipes_reject_auxiliary_heads_and_typos_in_nested_tables(name):
    from .test_registry_models import small_recipe

    recipe, _ = small_recipe(name)
    recipe.auxiliary = {"out_channels": 16}
    with pytest.raises(RecipeError, match="auxiliary"):
        build_segmentor(recipe, pretrained=False)
    for key in ("matcher", "criterion"):  # SSSegmentation's places of the criterion's tables
        recipe, _ = small_recipe(name)
        recipe.head[key] = {"cost_class": 1.0}
        with pytest.raises(RecipeError, match=r"\[criterion") as info:
            build_segmentor(recipe, pretrained=False)
        assert info.value.path == f"head.{key}"
    recipe, _ = small_recipe(name)
    recipe.head["predictor"] = {**recipe.head["predictor"], "num_querys": 4}
    with pytest.raises(RecipeError) as info:
        build_segmentor(recipe, pretrained=False)
    assert info.value.path == "head.predictor.num_querys" and "num_queries" in str(info.value)
    recipe, _ = small_recipe(name)
    nested = "predictor" if name == "MaskFormer" else "pixel_decoder"
    recipe.head[nested] = {**recipe.head[nested], "norm_cfg": {"type": "LayerNorm", "epss": 1e-5}}
    with pytest.raises(RecipeError) as info:
        build_segmentor(recipe, pretrained=False)
    assert info.value.path.startswith(f"head.{nested}.norm_cfg"), str(info.value)
    # SSSegmentation's keys for what segkit derives are accepted when they agree, and reported when they do not
    derived_keys = {"MaskFormer": [("in_channels_list", [8, 16, 32, 64], [8, 16, 32, 99]),
                                   ("predictor.in_channels", 64, 65), ("predictor.mask_dim", 16, 17)],
                    "Mask2Former": [("pixel_decoder.input_shape", {"in_channels": [8, 16, 32, 64],
                                                                   "strides": [4, 8, 16, 32]},
                                     {"in_channels": [8, 16, 32, 64], "strides": [4, 8, 16, 16]}),
                                    ("predictor.in_channels", 32, 31), ("predictor.mask_dim", 16, 8)]}[name]
    for key, good, bad in derived_keys:
        for value in (good, bad):
            recipe, _ = small_recipe(name)
            table = recipe.head
            *parents, last = key.split(".")
            for parent in parents:
                table = table[parent]
            table[last] = value
            if value is good:
                build_segmentor(recipe, pretrained=False)
                continue
            with pytest.raises(RecipeError) as info:
                build_segmentor(recipe, pretrained=False)
            assert info.value.path == f"head.{key}", str(info.value)
