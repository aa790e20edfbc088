"""CrossEntropyLoss against F.cross_entropy, flooding, sigmoid mode; Criterion mapping and resizing.

Where SSSegmentation's own loss functions import (``/work/ssseg``, torch only), they are a second reference.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from segkit import LOSSES
from segkit.models.losses import CrossEntropyLoss, loss_for_output, output_for_loss

from ..ssseg_reference import ssseg_module

WEIGHTS = [0.2, 1.0, 3.0, 0.5]


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, generator=generator, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6), generator=generator)
    target[0, :2] = -100
    return logits, target


def test_registered_with_ssseg_signature():
    assert LOSSES.get("CrossEntropyLoss") is CrossEntropyLoss
    assert list(LOSSES.parameters("CrossEntropyLoss")) == [
        "use_sigmoid", "reduction", "class_weight", "scale_factor", "lowest_loss_value", "label_smoothing",
        "ignore_index", "norm_loss_with_class_weight"]


def test_plain_and_ignore_index(batch):
    logits, target = batch
    assert torch.allclose(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target, ignore_index=-100))
    other = target.masked_fill(target == -100, 255)
    assert torch.allclose(CrossEntropyLoss(ignore_index=255)(logits, other),
                          F.cross_entropy(logits, other, ignore_index=255))


def test_class_weight_is_torchs_weighted_mean(batch):
    logits, target = batch
    expected = F.cross_entropy(logits, target, weight=torch.tensor(WEIGHTS), ignore_index=-100)
    assert torch.allclose(CrossEntropyLoss(class_weight=WEIGHTS)(logits, target), expected)
    per_pixel = F.cross_entropy(logits, target, weight=torch.tensor(WEIGHTS), ignore_index=-100, reduction="none")
    unnormalised = CrossEntropyLoss(class_weight=WEIGHTS, norm_loss_with_class_weight=False)(logits, target)
    assert torch.allclose(unnormalised, per_pixel.sum() / (target != -100).sum())


def test_label_smoothing(batch):
    logits, target = batch
    expected = F.cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.1)
    assert torch.allclose(CrossEntropyLoss(label_smoothing=0.1)(logits, target), expected)
    # with class weights, SSSegmentation weights the smoothed per-pixel loss by the pixel's class weight
    smoothed = F.cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.1, reduction="none")
    valid = target != -100
    pixel_weight = torch.tensor(WEIGHTS)[target.clamp(min=0)] * valid
    both = CrossEntropyLoss(label_smoothing=0.1, class_weight=WEIGHTS)(logits, target)
    assert torch.allclose(both, (smoothed * pixel_weight).sum() / pixel_weight.sum())


def test_reductions_scale_and_flooding(batch):
    logits, target = batch
    per_pixel = F.cross_entropy(logits, target, ignore_index=-100, reduction="none")
    assert torch.allclose(CrossEntropyLoss(reduction="none")(logits, target), per_pixel)
    assert torch.allclose(CrossEntropyLoss(reduction="sum", scale_factor=0.5)(logits, target), per_pixel.sum() / 2)
    plain = CrossEntropyLoss()(logits, target)
    flooded = CrossEntropyLoss(lowest_loss_value=plain.item() + 1.0)(logits, target)
    assert flooded.item() == pytest.approx(plain.item() + 2.0, rel=1e-5)  # |L - b| + b = 2b - L below b
    flooded.backward()
    plain_grad = torch.autograd.grad(CrossEntropyLoss()(logits, target), logits)[0]
    assert torch.allclose(logits.grad, -plain_grad, atol=1e-6)  # flooding ascends below the flood level
    above = CrossEntropyLoss(lowest_loss_value=plain.item() - 1.0)(logits, target)
    assert above.item() == pytest.approx(plain.item(), rel=1e-5)


def test_all_ignored_gives_zero_not_nan(batch):
    logits, target = batch
    loss = CrossEntropyLoss(class_weight=WEIGHTS)(logits, torch.full_like(target, -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_sigmoid_mode_is_bce_on_one_hot_targets(batch):
    logits, target = batch
    valid = (target != -100).unsqueeze(1).float()
    one_hot = F.one_hot(target.clamp(min=0), 4).permute(0, 3, 1, 2).float() * valid
    bce = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none") * valid
    assert torch.allclose(CrossEntropyLoss(use_sigmoid=True)(logits, target), bce.sum() / (valid.sum() * 4))
    weight = torch.tensor(WEIGHTS).view(1, 4, 1, 1)
    weighted = CrossEntropyLoss(use_sigmoid=True, class_weight=WEIGHTS)(logits, target)
    assert torch.allclose(weighted, (bce * weight).sum() / (weight * one_hot).sum())


def test_probability_targets_act_through_their_argmax(batch):
    # SSSegmentation: CE(x, argmax(t)) * sum(t) per pixel, not torch's soft-target cross-entropy
    logits, _ = batch
    soft = torch.softmax(torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3)), dim=1) * 0.5
    per_pixel = F.cross_entropy(logits, soft.argmax(1), reduction="none") * soft.sum(1)
    assert torch.allclose(CrossEntropyLoss()(logits, soft), per_pixel.mean())
    assert torch.allclose(CrossEntropyLoss(reduction="none")(logits, soft), per_pixel)
    assert not torch.allclose(CrossEntropyLoss()(logits, soft * 2), F.cross_entropy(logits, soft * 2))


def test_shape_mismatch_is_reported(batch):
    logits, target = batch
    with pytest.raises(ValueError, match="do not match"):
        CrossEntropyLoss()(logits, target[:, :3])


def test_loss_names_map_to_outputs():
    assert [output_for_loss(n) for n in ("loss_cls", "loss_aux", "loss_aux1")] == ["out", "aux", "aux1"]
    assert [loss_for_output(n) for n in ("out", "aux", "aux2")] == ["loss_cls", "loss_aux", "loss_aux2"]
    with pytest.raises(ValueError):
        output_for_loss("cls")


# ------------------------------------------------------------------------------------------------------------------
# SSSegmentation's semantics of CrossEntropyLoss beyond torch's: same-shape targets, labels == C, batch_balanced
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def ssseg_ce():
    return ssseg_module("losses", "crossentropyloss").CrossEntropyLoss


LOSS_FILES = {
    "CrossEntropyLoss": "crossentropyloss", "DiceLoss": "diceloss", "FocalLoss": "focalloss",
    "LovaszLoss": "lovaszloss", "KLDivLoss": "kldivloss", "CosineSimilarityLoss": "cosinesimilarityloss",
    "L1Loss": "l1loss", "MSELoss": "mseloss",
}


@pytest.mark.ssseg
@pytest.mark.parametrize("name", sorted(LOSS_FILES))
def test_every_ssseg_loss_is_registered_with_its_arguments_and_defaults(name):
    assert name in LOSSES
    module = ssseg_module("losses", LOSS_FILES[name])
    theirs = {k: p.default for k, p in inspect.signature(getattr(module, name)).parameters.items()}
    ours = {k: p.default for k, p in LOSSES.parameters(name).items()}
    assert list(ours) == list(theirs)
    assert ours == theirs  # 2 == 2.0, 1 == 1.0


def _one_hot(target, num_classes):
    return F.one_hot(target.clamp(min=0), num_classes).movedim(-1, 1).float()


def test_one_hot_targets_equal_index_targets():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 5, 5, generator=generator)
    target = torch.randint(0, 4, (2, 5, 5), generator=generator)
    for kwargs in ({}, {"class_weight": WEIGHTS}, {"label_smoothing": 0.2}, {"use_sigmoid": True},
                   {"use_sigmoid": True, "class_weight": WEIGHTS}):
        loss = CrossEntropyLoss(**kwargs)
        assert torch.allclose(loss(logits, _one_hot(target, 4)), loss(logits, target)), kwargs


def test_same_shape_target_drops_channel_ignore_index():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, 5, 5, generator=generator)
    soft = torch.rand(2, 4, 5, 5, generator=generator)
    keep = [0, 1, 3]
    kept_logits, kept_soft = logits[:, keep], soft[:, keep]
    per_pixel = F.cross_entropy(kept_logits, kept_soft.argmax(1), reduction="none") * kept_soft.sum(1)
    assert torch.allclose(CrossEntropyLoss(ignore_index=2)(logits, soft), per_pixel.mean())
    weights = torch.tensor(WEIGHTS)[keep].view(1, 3, 1, 1)
    weighted = F.cross_entropy(kept_logits, kept_soft.argmax(1), reduction="none") * (kept_soft * weights).sum(1)
    assert torch.allclose(CrossEntropyLoss(ignore_index=2, class_weight=WEIGHTS)(logits, soft),
                          weighted.sum() / (kept_soft * weights).sum())
    bce = F.binary_cross_entropy_with_logits(kept_logits, kept_soft)
    assert torch.allclose(CrossEntropyLoss(ignore_index=2, use_sigmoid=True)(logits, soft), bce)
    none = CrossEntropyLoss(ignore_index=2, use_sigmoid=True, reduction="none")(logits, soft)
    assert none.shape == logits.shape and (none[:, 2] == 0).all()
    # out of range: nothing is dropped
    full = F.cross_entropy(logits, soft.argmax(1), reduction="none") * soft.sum(1)
    assert torch.allclose(CrossEntropyLoss(ignore_index=255)(logits, soft), full.mean())


def test_rows_as_the_ohem_sampler_gives_them(batch):
    logits, target = batch
    rows = logits.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    labels = target.reshape(-1)
    for kwargs in ({}, {"class_weight": WEIGHTS}, {"use_sigmoid": True}):
        assert torch.allclose(CrossEntropyLoss(**kwargs)(rows, labels), CrossEntropyLoss(**kwargs)(logits, target))
    assert torch.allclose(CrossEntropyLoss()(rows, labels), F.cross_entropy(rows, labels))
    assert CrossEntropyLoss(reduction="none")(rows, labels).shape == labels.shape


def test_a_label_equal_to_num_classes_is_a_pixel_of_no_class(batch):
    # SSSegmentation one-hots into C + 1 columns and keeps C: such a pixel adds 0 but counts in the plain mean
    logits, target = batch
    other = target.clone()
    other[1, 0] = 4
    valid = other != -100
    in_range = valid & (other < 4)
    per_pixel = F.cross_entropy(logits, other.masked_fill(~in_range, -100), reduction="none")
    assert torch.allclose(CrossEntropyLoss()(logits, other), per_pixel.sum() / valid.sum())
    weights = torch.tensor(WEIGHTS)[other.masked_fill(~in_range, 0)] * in_range
    assert torch.allclose(CrossEntropyLoss(class_weight=WEIGHTS)(logits, other),
                          (per_pixel * weights).sum() / weights.sum())
    assert torch.allclose(CrossEntropyLoss(reduction="none")(logits, other), per_pixel)


def test_single_channel_sigmoid_treats_label_one_as_foreground():
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 1, 5, 5, generator=generator)
    target = torch.randint(0, 2, (2, 5, 5), generator=generator)
    target[0, 0] = -100
    valid = target != -100
    expected = F.binary_cross_entropy_with_logits(logits[:, 0][valid], (target[valid] == 1).float())
    assert torch.allclose(CrossEntropyLoss(use_sigmoid=True)(logits, target), expected)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CrossEntropyLoss()(logits, target)


def test_batch_balanced_two_classes_is_ce2p_edge_weighting_bit_for_bit():
    generator = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 2, 7, 7, generator=generator)
    edge = (torch.rand(2, 7, 7, generator=generator) < 0.2).long()
    edge[1, :2] = -100
    # ce2p.py, written out: counts of non-edge (0) and edge (1) pixels over the batch
    num_neg, num_pos = torch.sum(edge == 0, dtype=torch.float), torch.sum(edge == 1, dtype=torch.float)
    ce2p_weight = [(num_pos / (num_pos + num_neg)).item(), (num_neg / (num_pos + num_neg)).item()]
    from segkit.models.losses.cross_entropy import batch_balanced_weight

    valid = edge != -100
    ours = batch_balanced_weight(F.one_hot(edge[valid], 2).float())
    assert ours.tolist() == ce2p_weight  # exactly
    for norm in (True, False):
        balanced = CrossEntropyLoss(class_weight="batch_balanced", norm_loss_with_class_weight=norm)
        explicit = CrossEntropyLoss(class_weight=ce2p_weight, norm_loss_with_class_weight=norm)
        assert torch.equal(balanced(logits, edge), explicit(logits, edge))
    expected = F.cross_entropy(logits, edge, weight=torch.tensor(ce2p_weight), ignore_index=-100)
    assert torch.allclose(CrossEntropyLoss(class_weight="batch_balanced")(logits, edge), expected)


def test_batch_balanced_many_classes_and_empty_batch(batch):
    logits, target = batch
    valid = target != -100
    counts = torch.bincount(target[valid], minlength=4).float()
    weight = 1 - counts / counts.sum()
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=-100)
    assert torch.allclose(CrossEntropyLoss(class_weight="batch_balanced")(logits, target), expected)
    sigmoid = CrossEntropyLoss(use_sigmoid=True, class_weight="batch_balanced")(logits, target)
    assert torch.allclose(sigmoid, CrossEntropyLoss(use_sigmoid=True, class_weight=weight.tolist())(logits, target))
    empty = CrossEntropyLoss(class_weight="batch_balanced")(logits, torch.full_like(target, -100))
    assert empty.item() == 0.0


def test_class_weight_is_validated_from_a_recipe_table():
    assert LOSSES.build({"type": "CrossEntropyLoss", "class_weight": "batch_balanced"}).batch_balanced
    built = LOSSES.build({"type": "CrossEntropyLoss", "class_weight": [1, 2]})
    assert built.class_weight.tolist() == [1.0, 2.0]
    with pytest.raises(Exception, match="class_weight"):
        LOSSES.build({"type": "CrossEntropyLoss", "class_weight": "balanced"})
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="avg")  # type: ignore[arg-type]


def _targets(kind, generator, ignore_index=-100):
    target = torch.randint(0, 4, (2, 5, 5), generator=generator)
    if kind == "index":
        target[0, 0] = ignore_index
        return target
    if kind == "onehot":
        return _one_hot(target, 4)
    return torch.rand(2, 4, 5, 5, generator=generator)


@pytest.mark.parametrize("kind", ["index", "onehot", "soft"])
@pytest.mark.parametrize("kwargs", [
    {}, {"class_weight": WEIGHTS}, {"class_weight": WEIGHTS, "norm_loss_with_class_weight": False},
    {"label_smoothing": 0.1}, {"label_smoothing": 0.1, "class_weight": WEIGHTS}, {"ignore_index": 2},
    {"ignore_index": 2, "class_weight": WEIGHTS}, {"reduction": "sum", "scale_factor": 0.4},
    {"use_sigmoid": True}, {"use_sigmoid": True, "class_weight": WEIGHTS}, {"use_sigmoid": True, "ignore_index": 1},
    {"use_sigmoid": True, "class_weight": WEIGHTS, "norm_loss_with_class_weight": False, "lowest_loss_value": 2.0},
])
@pytest.mark.ssseg
def test_matches_ssseg_crossentropyloss(ssseg_ce, kind, kwargs):
    generator = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 4, 5, 5, generator=generator)
    target = _targets(kind, generator, kwargs.get("ignore_index", -100))
    if kind != "index" and "ignore_index" in kwargs and "class_weight" in kwargs and not kwargs.get("use_sigmoid"):
        # SSSegmentation's bug: its softmax path resets ignore_index to -100 after dropping the channel, so it
        # keeps all C class weights for C - 1 channels and fails
        with pytest.raises(RuntimeError, match="must match"):
            ssseg_ce(**kwargs)(logits, target)
        return
    assert torch.allclose(CrossEntropyLoss(**kwargs)(logits, target), ssseg_ce(**kwargs)(logits, target),
                          rtol=1e-5, atol=1e-6)


@pytest.mark.ssseg
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")
def test_matches_ssseg_on_ce2p_edge_weights(ssseg_ce):
    generator = torch.Generator().manual_seed(10)
    logits = torch.randn(2, 2, 7, 7, generator=generator)
    edge = (torch.rand(2, 7, 7, generator=generator) < 0.3).long()
    edge[0, 0] = -100
    num_neg, num_pos = torch.sum(edge == 0, dtype=torch.float), torch.sum(edge == 1, dtype=torch.float)
    cls_weight_edge = torch.Tensor([num_pos / (num_pos + num_neg), num_neg / (num_pos + num_neg)])
    for norm in (True, False):
        theirs = ssseg_ce(class_weight=cls_weight_edge, norm_loss_with_class_weight=norm)(logits, edge)
        ours = CrossEntropyLoss(class_weight="batch_balanced", norm_loss_with_class_weight=norm)(logits, edge)
        assert torch.equal(ours, theirs)


@pytest.mark.ssseg
@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_sigmoid_none_reduction_matches_ssseg(ssseg_ce, kind):
    # SSSegmentation's "none" works only for the sigmoid loss with nothing dropped (its softmax "none" fails)
    generator = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 4, 5, 5, generator=generator)
    target = _targets(kind, generator)
    ours = CrossEntropyLoss(use_sigmoid=True, reduction="none", class_weight=WEIGHTS)(logits, target)
    theirs = ssseg_ce(use_sigmoid=True, reduction="none", class_weight=WEIGHTS)(logits, target)
    assert ours.shape == logits.shape and torch.allclose(ours, theirs)
    with pytest.raises(IndexError):
        ssseg_ce(reduction="none")(logits, target)
