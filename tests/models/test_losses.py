"""CrossEntropyLoss against F.cross_entropy, flooding, sigmoid mode; Criterion mapping and resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segkit import LOSSES
from segkit.models.losses import Criterion, CrossEntropyLoss, loss_for_output, output_for_loss

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


def test_probability_targets(batch):
    logits, _ = batch
    soft = torch.softmax(torch.randn(2, 4, 6, 6), dim=1)
    assert torch.allclose(CrossEntropyLoss()(logits, soft), F.cross_entropy(logits, soft))


def test_shape_mismatch_is_reported(batch):
    logits, target = batch
    with pytest.raises(ValueError, match="do not match"):
        CrossEntropyLoss()(logits, target[:, :3])


def test_loss_names_map_to_outputs():
    assert [output_for_loss(n) for n in ("loss_cls", "loss_aux", "loss_aux1")] == ["out", "aux", "aux1"]
    assert [loss_for_output(n) for n in ("out", "aux", "aux2")] == ["loss_cls", "loss_aux", "loss_aux2"]
    with pytest.raises(ValueError):
        output_for_loss("cls")


def test_criterion_resizes_each_output_and_sums_terms():
    generator = torch.Generator().manual_seed(1)
    outputs = {"out": torch.randn(2, 4, 8, 8, generator=generator),
               "aux": torch.randn(2, 4, 4, 4, generator=generator)}
    target = torch.randint(0, 4, (2, 32, 32), generator=generator)
    criterion = Criterion({
        "loss_cls": [CrossEntropyLoss(), CrossEntropyLoss(use_sigmoid=True, scale_factor=0.5)],
        "loss_aux": [CrossEntropyLoss(scale_factor=0.4)],
    }, align_corners=False)
    total, losses = criterion(outputs, target)

    def up(x):
        return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

    expected_cls = F.cross_entropy(up(outputs["out"]), target) + CrossEntropyLoss(
        use_sigmoid=True, scale_factor=0.5)(up(outputs["out"]), target)
    expected_aux = 0.4 * F.cross_entropy(up(outputs["aux"]), target)
    assert set(losses) == {"loss_cls", "loss_aux"}
    assert torch.allclose(losses["loss_cls"], expected_cls) and torch.allclose(losses["loss_aux"], expected_aux)
    assert torch.allclose(total, expected_cls + expected_aux)


def test_criterion_names_a_missing_output():
    criterion = Criterion({"loss_cls": [CrossEntropyLoss()], "loss_aux": [CrossEntropyLoss()]})
    with pytest.raises(KeyError, match="loss_aux supervises output 'aux'"):
        criterion({"out": torch.randn(1, 2, 4, 4)}, torch.zeros(1, 4, 4, dtype=torch.long))
