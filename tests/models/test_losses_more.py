"""Dice, Focal, Lovász, KLDiv, cosine-similarity, L1 and MSE losses against independent references.

The references are torch's own functions where one exists (``F.kl_div``, ``F.l1_loss``, ``F.mse_loss``,
``F.cosine_similarity``, ``torchvision.ops.sigmoid_focal_loss``), else the formula written out plainly here (Dice,
softmax focal, and the Lovász extension as a naive loop over sets). Where SSSegmentation's own loss functions
import (``/work/ssseg``, torch only), they are a second reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segkit import LOSSES
from segkit.models.losses import (
    CosineSimilarityLoss,
    DiceLoss,
    FocalLoss,
    KLDivLoss,
    L1Loss,
    LovaszLoss,
    MSELoss,
)

from ..ssseg_reference import ssseg_module

C = 4
WEIGHTS = [0.2, 1.0, 3.0, 0.5]
def ssseg(module_name: str, attribute: str):
    """An attribute of SSSegmentation's ``losses/<module_name>.py`` (tests marked ``ssseg``; ``nox -s parity``)."""
    return getattr(ssseg_module("losses", module_name), attribute)


def make_logits(seed: int = 0, shape=(2, C, 5, 5)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def make_target(seed: int = 1, ignore_index: int = -100, num_classes: int = C, shape=(2, 5, 5)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=generator)
    if ignore_index is not None:
        target.view(-1)[:: 7] = ignore_index
    return target


def one_hot(target: torch.Tensor, num_classes: int = C) -> torch.Tensor:
    return F.one_hot(target.clamp(min=0), num_classes).movedim(-1, 1).float()


def target_of(kind: str, ignore_index: int = -100, seed: int = 1) -> torch.Tensor:
    if kind == "index":
        return make_target(seed, ignore_index)
    if kind == "onehot":
        return one_hot(make_target(seed, None))
    return torch.rand(2, C, 5, 5, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------- every loss
ALL_LOSSES = {
    "CrossEntropyLoss": "index", "DiceLoss": "index", "FocalLoss": "index", "LovaszLoss": "index",
    "KLDivLoss": "same", "CosineSimilarityLoss": "same", "L1Loss": "same", "MSELoss": "same",
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_scale_factor_then_flooding(name):
    logits = make_logits().requires_grad_()
    target = make_target() if ALL_LOSSES[name] == "index" else make_logits(5)
    plain = LOSSES.build({"type": name})(logits, target)
    scaled = LOSSES.build({"type": name, "scale_factor": 0.5})(logits, target)
    assert torch.allclose(scaled, plain * 0.5)
    flood = plain.item() + 0.25
    flooded = LOSSES.build({"type": name, "scale_factor": 1.0, "lowest_loss_value": flood})(logits, target)
    assert flooded.item() == pytest.approx(2 * flood - plain.item(), rel=1e-5)  # |L - b| + b below b
    grad_flooded = torch.autograd.grad(flooded, logits)[0]
    grad_plain = torch.autograd.grad(LOSSES.build({"type": name})(logits, target), logits)[0]
    assert torch.allclose(grad_flooded, -grad_plain, atol=1e-6)
    above = LOSSES.build({"type": name, "lowest_loss_value": plain.item() - 0.25})(logits, target)
    assert above.item() == pytest.approx(plain.item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_unknown_reduction_and_mismatched_shapes_are_refused(name):
    with pytest.raises(Exception, match="reduction"):
        LOSSES.build({"type": name, "reduction": "avg"})
    loss = LOSSES.build({"type": name})
    with pytest.raises(ValueError, match="do not match"):
        loss(make_logits(), make_target(shape=(2, 4, 5)))


@pytest.mark.parametrize("name", ["KLDivLoss", "CosineSimilarityLoss", "L1Loss", "MSELoss"])
def test_same_shape_losses_refuse_index_targets(name):
    with pytest.raises(ValueError, match="same shape"):
        LOSSES.build({"type": name})(make_logits(), make_target())


# ------------------------------------------------------------------------------------------------------- Dice
def dice_reference(probs, truth, valid, eps=1e-3, naive=False):
    """Per sample: probs, truth [B, K, H, W], valid [B, 1, H, W] (1 = counted)."""
    losses = []
    for b in range(probs.size(0)):
        p = (probs[b] * valid[b]).flatten()
        t = (truth[b] * valid[b]).flatten()
        if naive:
            d = (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)
        else:
            d = 2 * (p * t).sum() / ((p ** 2).sum() + eps + (t ** 2).sum() + eps)
        losses.append(1 - d)
    return torch.stack(losses)


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 255, 2])
def test_dice_index_target_ignores_pixels(naive, ignore_index):
    logits, target = make_logits(), make_target(ignore_index=ignore_index)
    valid = (target != ignore_index).unsqueeze(1).float()
    truth = one_hot(target.masked_fill(target == ignore_index, 0))
    expected = dice_reference(logits.sigmoid(), truth, valid, naive=naive)
    loss = DiceLoss(naive_dice=naive, ignore_index=ignore_index)
    assert torch.allclose(loss(logits, target), expected.mean())
    none = DiceLoss(naive_dice=naive, ignore_index=ignore_index, reduction="none")(logits, target)
    assert torch.allclose(none, expected)
    assert torch.allclose(DiceLoss(naive_dice=naive, ignore_index=ignore_index, reduction="sum")(logits, target),
                          expected.sum())


def test_dice_activation_and_eps():
    logits, target = make_logits(), make_target()
    valid = (target != -100).unsqueeze(1).float()
    truth = one_hot(target)
    softmax = DiceLoss(use_sigmoid=False, eps=0.5)(logits, target)
    assert torch.allclose(softmax, dice_reference(logits.softmax(1), truth, valid, eps=0.5).mean())
    probs = torch.rand(2, C, 5, 5, generator=torch.Generator().manual_seed(4))
    raw = DiceLoss(activate=False)(probs, target)
    assert torch.allclose(raw, dice_reference(probs, truth, valid).mean())


def test_dice_same_shape_drops_channel_ignore_index():
    logits, soft = make_logits(), target_of("soft")
    keep = [0, 1, 3]
    expected = dice_reference(logits.sigmoid()[:, keep], soft[:, keep], torch.ones(2, 1, 5, 5))
    assert torch.allclose(DiceLoss(ignore_index=2)(logits, soft), expected.mean())
    everything = dice_reference(logits.sigmoid(), soft, torch.ones(2, 1, 5, 5))
    assert torch.allclose(DiceLoss()(logits, soft), everything.mean())


def test_dice_one_class_and_rows():
    logits = make_logits(shape=(2, 1, 5, 5))
    target = make_target(num_classes=2)
    valid = (target != -100).unsqueeze(1).float()
    truth = (target == 1).unsqueeze(1).float()
    assert torch.allclose(DiceLoss()(logits, target), dice_reference(logits.sigmoid(), truth, valid).mean())
    # [N, C] rows with [N] labels: the Dice is per row, as in SSSegmentation
    rows, labels = make_logits(shape=(6, C)), make_target(shape=(6,))
    row_valid = (labels != -100).unsqueeze(1).float()
    expected = dice_reference(rows.sigmoid(), one_hot(labels), row_valid)
    assert torch.allclose(DiceLoss(reduction="none")(rows, labels), expected)


def test_dice_labels_above_num_classes_are_pixels_of_no_class():
    logits, target = make_logits(), make_target(ignore_index=7)  # 7 >= C and not the ignore_index
    valid = torch.ones(2, 1, 5, 5)
    truth = one_hot(target.masked_fill(target >= C, 0)) * (target < C).unsqueeze(1)
    assert torch.allclose(DiceLoss()(logits, target), dice_reference(logits.sigmoid(), truth, valid).mean())


@pytest.mark.parametrize("kind", ["index", "onehot", "soft"])
@pytest.mark.parametrize("kwargs", [
    {}, {"naive_dice": True}, {"use_sigmoid": False}, {"activate": False}, {"ignore_index": 2},
    {"ignore_index": 255, "eps": 0.1, "reduction": "none"}, {"reduction": "sum", "scale_factor": 3.0},
])
@pytest.mark.ssseg
def test_dice_matches_ssseg(kind, kwargs):
    reference = ssseg("diceloss", "DiceLoss")
    logits, target = make_logits(), target_of(kind, kwargs.get("ignore_index", -100))
    assert torch.allclose(DiceLoss(**kwargs)(logits, target), reference(**kwargs)(logits, target), atol=1e-6)


# ------------------------------------------------------------------------------------------------------- Focal
@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 0.5), (1.5, 0.75)])
def test_sigmoid_focal_is_torchvisions(gamma, alpha):
    from torchvision.ops import sigmoid_focal_loss

    logits, target = make_logits(), make_target()
    valid = target != -100
    rows = logits.permute(0, 2, 3, 1)[valid]
    truth = F.one_hot(target[valid], C).float()
    per_element = sigmoid_focal_loss(rows, truth, alpha=alpha, gamma=gamma, reduction="none")
    assert torch.allclose(FocalLoss(gamma=gamma, alpha=alpha)(logits, target), per_element.mean())
    assert torch.allclose(FocalLoss(gamma=gamma, alpha=alpha, reduction="sum")(logits, target), per_element.sum())
    none = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, target)
    assert none.shape == logits.shape
    pixels = none.permute(0, 2, 3, 1)
    assert torch.allclose(pixels[valid], per_element) and (pixels[~valid] == 0).all()
    weight = torch.tensor(WEIGHTS)
    weighted = FocalLoss(gamma=gamma, alpha=alpha, class_weight=WEIGHTS)(logits, target)
    assert torch.allclose(weighted, (per_element * weight).sum() / (truth * weight).sum())
    unnormalised = FocalLoss(gamma=gamma, alpha=alpha, class_weight=WEIGHTS, norm_loss_with_class_weight=False)
    assert torch.allclose(unnormalised(logits, target), (per_element * weight).mean())
    soft = target_of("soft")
    same_shape = sigmoid_focal_loss(logits, soft, alpha=alpha, gamma=gamma, reduction="mean")
    assert torch.allclose(FocalLoss(gamma=gamma, alpha=alpha)(logits, soft), same_shape)


def softmax_focal_reference(logits, target, gamma, alpha, ignore_index=-100):
    """alpha * (1 - p_y) ** gamma * -log p_y per kept pixel, pixel by pixel."""
    values, labels = [], []
    for b in range(logits.size(0)):
        for i in range(logits.size(2)):
            for j in range(logits.size(3)):
                y = int(target[b, i, j])
                if y == ignore_index:
                    continue
                p = torch.softmax(logits[b, :, i, j], 0)[y]
                values.append(alpha * (1 - p) ** gamma * -torch.log(p))
                labels.append(y)
    return torch.stack(values), torch.tensor(labels)


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 1.0), (3.0, 0.5)])
def test_softmax_focal_written_out(gamma, alpha):
    logits, target = make_logits(), make_target()
    per_pixel, labels = softmax_focal_reference(logits, target, gamma, alpha)
    loss = FocalLoss(use_sigmoid=False, gamma=gamma, alpha=alpha)
    assert torch.allclose(loss(logits, target), per_pixel.mean(), atol=1e-6)
    none = FocalLoss(use_sigmoid=False, gamma=gamma, alpha=alpha, reduction="none")(logits, target)
    assert none.shape == target.shape and torch.allclose(none[target != -100], per_pixel, atol=1e-6)
    pixel_weight = torch.tensor(WEIGHTS)[labels]
    weighted = FocalLoss(use_sigmoid=False, gamma=gamma, alpha=alpha, class_weight=WEIGHTS)(logits, target)
    assert torch.allclose(weighted, (per_pixel * pixel_weight).sum() / pixel_weight.sum(), atol=1e-6)
    if gamma == 0 and alpha == 1:
        assert torch.allclose(loss(logits, target), F.cross_entropy(logits, target, ignore_index=-100))
    with pytest.raises(ValueError, match="at least 2 classes"):
        FocalLoss(use_sigmoid=False)(make_logits(shape=(2, 1, 5, 5)), make_target(num_classes=1))


def test_softmax_focal_soft_target_formula():
    logits, soft = make_logits(), target_of("soft")
    p = logits.softmax(1)
    ce = F.cross_entropy(logits, soft.argmax(1), reduction="none").unsqueeze(1)
    pt = p * soft + (1 - p) * (1 - soft)
    expected = (0.25 * (1 - pt) ** 2 * ce * soft).sum(1)
    assert torch.allclose(FocalLoss(use_sigmoid=False)(logits, soft), expected.mean(), atol=1e-6)
    keep = [0, 2, 3]  # ignore_index=1 drops that channel before the softmax
    p, s = logits[:, keep].softmax(1), soft[:, keep]
    ce = F.cross_entropy(logits[:, keep], s.argmax(1), reduction="none").unsqueeze(1)
    pt = p * s + (1 - p) * (1 - s)
    expected = (0.25 * (1 - pt) ** 2 * ce * s).sum(1)
    assert torch.allclose(FocalLoss(use_sigmoid=False, ignore_index=1)(logits, soft), expected.mean(), atol=1e-6)


@pytest.mark.parametrize("kind", ["index", "onehot", "soft"])
@pytest.mark.parametrize("kwargs", [
    {}, {"gamma": 1.0, "alpha": 0.6}, {"class_weight": WEIGHTS},
    {"class_weight": WEIGHTS, "norm_loss_with_class_weight": False}, {"ignore_index": 2},
    {"ignore_index": 2, "class_weight": WEIGHTS}, {"reduction": "sum"},
    {"use_sigmoid": False}, {"use_sigmoid": False, "class_weight": WEIGHTS}, {"use_sigmoid": False, "ignore_index": 1},
    {"use_sigmoid": False, "class_weight": WEIGHTS, "norm_loss_with_class_weight": False, "gamma": 0.5},
])
@pytest.mark.ssseg
def test_focal_matches_ssseg_python_fallbacks(kind, kwargs):
    reference = ssseg("focalloss", "FocalLoss")
    logits, target = make_logits(), target_of(kind, kwargs.get("ignore_index", -100))
    assert torch.allclose(FocalLoss(**kwargs)(logits, target), reference(**kwargs)(logits, target), atol=1e-6)


@pytest.mark.ssseg
def test_sigmoid_focal_none_reduction_matches_ssseg():
    reference = ssseg("focalloss", "FocalLoss")
    logits, soft = make_logits(), target_of("soft")
    ours = FocalLoss(reduction="none", class_weight=WEIGHTS)(logits, soft)
    assert ours.shape == logits.shape
    assert torch.allclose(ours, reference(reduction="none", class_weight=WEIGHTS)(logits, soft), atol=1e-6)


# ------------------------------------------------------------------------------------------------------- Lovász
def jaccard_loss_of_set(mistakes: set, foreground: set) -> float:
    """Δ_J(M) = 1 - |fg \\ M| / |fg ∪ M| (0 for an empty union)."""
    union = foreground | mistakes
    return 0.0 if not union else 1.0 - len(foreground - mistakes) / len(union)


def lovasz_extension(errors: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Σ_k e_(k) (Δ(S_k) - Δ(S_(k-1))), S_k the k largest errors: a naive loop over sets."""
    order = sorted(range(errors.numel()), key=lambda i: -float(errors[i]))
    foreground = {i for i in range(fg.numel()) if fg[i] > 0}
    total, previous, chosen = errors.new_zeros(()), 0.0, set()
    for i in order:
        chosen.add(i)
        current = jaccard_loss_of_set(chosen, foreground)
        total = total + errors[i] * (current - previous)
        previous = current
    return total


def softmax_lovasz_reference(probs, truth, classes, class_weight=None):
    """probs, truth [N, C] rows; classes: ids to score (already chosen)."""
    losses, weights = [], []
    for c in classes:
        losses.append(lovasz_extension((truth[:, c] - probs[:, c]).abs(), truth[:, c]))
        weights.append(1.0 if class_weight is None else class_weight[c])
    if not losses:
        return probs.new_zeros(())
    weights = torch.tensor(weights)
    return (torch.stack(losses) * weights).sum() / weights.sum()


def rows_of(probs, target, ignore_index=-100):
    rows = probs.permute(0, 2, 3, 1).reshape(-1, probs.size(1))
    if target.dim() == probs.dim():
        return rows, target.permute(0, 2, 3, 1).reshape(-1, probs.size(1)).float()
    labels = target.reshape(-1)
    valid = labels != ignore_index
    return rows[valid], F.one_hot(labels[valid], probs.size(1)).float()


def test_lovasz_grad_is_the_set_function_difference():
    from segkit.models.losses.lovasz import lovasz_grad

    gt = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    foreground = {i for i in range(7) if gt[i] > 0}
    expected = [jaccard_loss_of_set(set(range(k + 1)), foreground) - jaccard_loss_of_set(set(range(k)), foreground)
                for k in range(7)]
    assert torch.allclose(lovasz_grad(gt), torch.tensor(expected))


@pytest.mark.parametrize("classes", ["present", "all", [0, 2], [3]])
def test_softmax_lovasz_classes(classes):
    logits = make_logits()
    target = make_target()
    target[target == 1] = 0  # class 1 absent
    probs = logits.softmax(1)
    rows, truth = rows_of(probs, target)
    chosen = {"present": [0, 2, 3], "all": [0, 1, 2, 3]}.get(classes, classes) if isinstance(classes, str) \
        else classes
    expected = softmax_lovasz_reference(rows, truth, chosen)
    assert torch.allclose(LovaszLoss(classes=classes)(logits, target), expected, atol=1e-6)
    weighted = softmax_lovasz_reference(rows, truth, chosen, WEIGHTS)
    assert torch.allclose(LovaszLoss(classes=classes, class_weight=WEIGHTS)(logits, target), weighted, atol=1e-6)


def test_softmax_lovasz_per_image_and_reductions():
    logits, target = make_logits(), make_target()
    probs = logits.softmax(1)
    per_image = []
    for b in range(2):
        rows, truth = rows_of(probs[b:b + 1], target[b:b + 1])
        present = [c for c in range(C) if truth[:, c].sum() > 0]
        per_image.append(softmax_lovasz_reference(rows, truth, present))
    per_image = torch.stack(per_image)
    assert torch.allclose(LovaszLoss(per_image=True)(logits, target), per_image.mean(), atol=1e-6)
    assert torch.allclose(LovaszLoss(per_image=True, reduction="sum")(logits, target), per_image.sum(), atol=1e-6)
    assert torch.allclose(LovaszLoss(per_image=True, reduction="none")(logits, target), per_image, atol=1e-6)
    whole = LovaszLoss(reduction="none")(logits, target)
    assert whole.shape == () and torch.allclose(whole, LovaszLoss(reduction="sum")(logits, target))


def test_softmax_lovasz_ignore_index():
    logits = make_logits()
    # index target with an in-range ignore_index: its pixels go; "present" skips the class, "all" scores it
    target = make_target(ignore_index=2)
    probs = logits.softmax(1)
    rows, truth = rows_of(probs, target, ignore_index=2)
    truth = F.one_hot(target.reshape(-1)[target.reshape(-1) != 2], C).float()
    assert torch.allclose(LovaszLoss(ignore_index=2)(logits, target),
                          softmax_lovasz_reference(rows, truth, [0, 1, 3]), atol=1e-6)
    assert torch.allclose(LovaszLoss(ignore_index=2, classes="all")(logits, target),
                          softmax_lovasz_reference(rows, truth, [0, 1, 2, 3]), atol=1e-6)
    # same-shape target: channel ignore_index is skipped, the softmax still covers every channel
    soft = target_of("onehot")
    rows, truth = rows_of(probs, soft)
    assert torch.allclose(LovaszLoss(ignore_index=2, classes="all")(logits, soft),
                          softmax_lovasz_reference(rows, truth, [0, 1, 3]), atol=1e-6)


def test_softmax_lovasz_nothing_to_score_is_zero_not_a_crash():
    logits = make_logits().requires_grad_()
    loss = LovaszLoss(per_image=True)(logits, torch.full((2, 5, 5), -100))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


def test_softmax_lovasz_single_channel_uses_raw_values():
    values = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    target = make_target(num_classes=2)
    valid = target.reshape(-1) != -100
    fg = (target.reshape(-1)[valid] == 1).float()
    expected = lovasz_extension((fg - values.reshape(-1)[valid]).abs(), fg)
    assert torch.allclose(LovaszLoss()(values, target), expected, atol=1e-6)


def sigmoid_lovasz_reference(probs, truth, classes, class_weight=None):
    p, t = probs[:, classes], truth[:, classes]
    errors = 1 - p * (2 * t - 1)
    if class_weight is not None:
        errors = errors * torch.tensor([class_weight[c] for c in classes])
    return lovasz_extension(errors.flatten().clamp(min=0), t.flatten())


@pytest.mark.parametrize("classes", ["present", "all", [1, 3]])
def test_sigmoid_lovasz_scores_all_pairs_together(classes):
    logits = make_logits()
    target = make_target()
    target[target == 1] = 0
    rows, truth = rows_of(logits.sigmoid(), target)
    chosen = {"present": [0, 2, 3], "all": [0, 1, 2, 3]}.get(classes, classes) if isinstance(classes, str) \
        else classes
    assert torch.allclose(LovaszLoss(use_sigmoid=True, classes=classes)(logits, target),
                          sigmoid_lovasz_reference(rows, truth, chosen), atol=1e-5)
    weighted = LovaszLoss(use_sigmoid=True, classes=classes, class_weight=WEIGHTS)(logits, target)
    assert torch.allclose(weighted, sigmoid_lovasz_reference(rows, truth, chosen, WEIGHTS), atol=1e-5)
    # ignore_index in range: never scored, not even from a same-shape target
    soft = target_of("onehot")
    rows, truth = rows_of(logits.sigmoid(), soft)
    expected = sigmoid_lovasz_reference(rows, truth, [c for c in chosen if c != 1])
    assert torch.allclose(LovaszLoss(use_sigmoid=True, classes=classes, ignore_index=1)(logits, soft), expected,
                          atol=1e-5)


def test_lovasz_argument_checks():
    with pytest.raises(ValueError, match="classes"):
        LovaszLoss(classes="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        LovaszLoss(classes=[4])(make_logits(), make_target())
    with pytest.raises(ValueError, match="class_weight"):
        LovaszLoss(class_weight=[1.0, 2.0])(make_logits(), make_target())
    assert LOSSES.build({"type": "LovaszLoss", "classes": [3, 1, 3]}).classes == [1, 3]


@pytest.mark.parametrize("kind", ["index", "onehot", "soft"])
@pytest.mark.parametrize("kwargs", [
    {}, {"classes": "all"}, {"classes": [0, 2]}, {"per_image": True}, {"per_image": True, "reduction": "sum"},
    {"class_weight": WEIGHTS}, {"ignore_index": 2}, {"ignore_index": 2, "classes": "all"},
    {"use_sigmoid": True}, {"use_sigmoid": True, "class_weight": WEIGHTS}, {"use_sigmoid": True, "classes": "all"},
    {"use_sigmoid": True, "classes": "all", "class_weight": WEIGHTS},
    {"use_sigmoid": True, "per_image": True, "ignore_index": 1}, {"use_sigmoid": True, "classes": [1, 3]},
])
@pytest.mark.ssseg
@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")
def test_lovasz_matches_ssseg(kind, kwargs):
    reference = ssseg("lovaszloss", "LovaszLoss")
    logits, target = make_logits(), target_of(kind, kwargs.get("ignore_index", -100))
    if kwargs.get("use_sigmoid") and kwargs.get("classes") == "all" and "class_weight" in kwargs:
        # SSSegmentation's bug: "all" becomes a list of 0-d tensors, which cannot index the class weights
        with pytest.raises(IndexError):
            reference(**kwargs)(logits, target)
        return
    assert torch.allclose(LovaszLoss(**kwargs)(logits, target), reference(**kwargs)(logits, target), atol=1e-5)


# ------------------------------------------------------------------------------------------------------- KLDiv
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kldiv_is_torchs_at_temperature(temperature):
    student, teacher = make_logits(0), make_logits(1)
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    t2 = temperature ** 2
    elementwise = F.kl_div(log_p, q, reduction="none") * t2
    assert torch.allclose(KLDivLoss(temperature=temperature)(student, teacher), elementwise.mean())
    assert torch.allclose(KLDivLoss(temperature=temperature, reduction="batchmean")(student, teacher),
                          F.kl_div(log_p, q, reduction="batchmean") * t2)
    assert torch.allclose(KLDivLoss(temperature=temperature, reduction="sum")(student, teacher),
                          F.kl_div(log_p, q, reduction="sum") * t2)
    assert torch.allclose(KLDivLoss(temperature=temperature, reduction="none")(student, teacher), elementwise)
    rows_student, rows_teacher = student.permute(0, 2, 3, 1).reshape(-1, C), teacher.permute(0, 2, 3, 1).reshape(-1, C)
    assert torch.allclose(KLDivLoss(temperature=temperature, reduction="sum")(rows_student, rows_teacher),
                          F.kl_div(log_p, q, reduction="sum") * t2)
    assert KLDivLoss()(student, student).abs().item() < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        KLDivLoss(temperature=0)


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 3}, {"reduction": "batchmean"}, {"reduction": "sum"},
                                    {"reduction": "none", "scale_factor": 2.0}])
@pytest.mark.ssseg
def test_kldiv_matches_ssseg(kwargs):
    reference = ssseg("kldivloss", "KLDivLoss")
    student, teacher = make_logits(0), make_logits(1)
    assert torch.allclose(KLDivLoss(**kwargs)(student, teacher), reference(**kwargs)(student, teacher), atol=1e-6)


# ---------------------------------------------------------------------------------------------- cosine, L1, MSE
def test_cosine_similarity():
    a, b = make_logits(0), make_logits(1)
    per_pixel = 1 - F.cosine_similarity(a, b, dim=1)
    assert torch.allclose(CosineSimilarityLoss()(a, b), per_pixel.mean())
    assert torch.allclose(CosineSimilarityLoss(reduction="sum")(a, b), per_pixel.sum())
    assert torch.allclose(CosineSimilarityLoss(reduction="none")(a, b), per_pixel)
    assert CosineSimilarityLoss()(a, 3 * a).abs().item() < 1e-6


@pytest.mark.parametrize("loss_cls,reference", [(L1Loss, F.l1_loss), (MSELoss, F.mse_loss)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_l1_and_mse_are_torchs(loss_cls, reference, reduction):
    a, b = make_logits(0), make_logits(1)
    assert torch.allclose(loss_cls(reduction=reduction)(a, b), reference(a, b, reduction=reduction))
    assert torch.allclose(loss_cls(reduction=reduction, scale_factor=0.3)(a, b),
                          0.3 * reference(a, b, reduction=reduction))


@pytest.mark.parametrize("name,module", [("CosineSimilarityLoss", "cosinesimilarityloss"), ("L1Loss", "l1loss"),
                                         ("MSELoss", "mseloss")])
@pytest.mark.ssseg
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses_match_ssseg(name, module, reduction):
    reference = ssseg(module, name)
    a, b = make_logits(0), make_logits(1)
    ours = LOSSES.build({"type": name, "reduction": reduction, "lowest_loss_value": 0.1})(a, b)
    assert torch.allclose(ours, reference(reduction=reduction, lowest_loss_value=0.1)(a, b), atol=1e-6)
