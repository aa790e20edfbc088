"""DenseCriterion: routing by name, by the segmentor's declared routes and by table keys; resizing, derived targets,
the OHEM sampler, and recipe errors that name their TOML path."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from segkit.errors import RecipeError, SegkitError
from segkit.models import build_criterion
from segkit.models.losses import CrossEntropyLoss
from segkit.models.losses.criterion import DenseCriterion, Term
from segkit.models.losses.targets import class_presence, point_labels, seg_onehot
from segkit.models.segmentors import Route, Segmentor

from .helpers import CE, make_recipe


class Outputs(Segmentor):
    """A segmentor stand-in that only declares its outputs and routes (the criterion needs nothing else)."""

    loss_routes: ClassVar[dict[str, Route]] = {
        "loss_cls_main": Route("out"),
        "loss_se": Route("se", target="class_presence", resize="none"),
        "loss_edge": Route("edge", target="edge_target"),
    }

    def __init__(self, names):
        super().__init__()
        self.names = list(names)

    def output_names(self, training=True):
        return self.names if training else ["out"]


def _criterion(names, losses, **criterion):
    recipe = make_recipe(losses=losses, criterion=criterion or None)
    return build_criterion(recipe, Outputs(names))


def _up(x, size=16):
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    outputs = {"out": torch.randn(2, 4, 8, 8, generator=g), "aux": torch.randn(2, 4, 4, 4, generator=g),
               "se": torch.randn(2, 4, generator=g), "edge": torch.randn(2, 2, 8, 8, generator=g)}
    seg = torch.randint(0, 4, (2, 16, 16), generator=g)
    seg[0, :3] = -100
    edge = torch.randint(0, 2, (2, 16, 16), generator=g)
    return outputs, {"seg_target": seg, "edge_target": edge}


def test_name_rule_resizes_each_output_to_the_target_and_sums_list_terms(data):
    outputs, targets = data
    criterion = _criterion(["out", "aux"], {
        "loss_cls": [CE, {**CE, "use_sigmoid": True, "scale_factor": 0.5}],
        "loss_aux": {**CE, "scale_factor": 0.4}})
    losses = criterion(outputs, targets)
    seg = targets["seg_target"]
    expected_cls = F.cross_entropy(_up(outputs["out"]), seg) + CrossEntropyLoss(
        use_sigmoid=True, scale_factor=0.5)(_up(outputs["out"]), seg)
    assert set(losses) == {"loss_cls", "loss_aux"}
    assert torch.allclose(losses["loss_cls"], expected_cls)
    assert torch.allclose(losses["loss_aux"], 0.4 * F.cross_entropy(_up(outputs["aux"]), seg))


def test_declared_routes_reach_other_outputs_targets_and_skip_the_resize(data):
    outputs, targets = data
    criterion = _criterion(["out", "se", "edge"], {
        "loss_cls_main": CE, "loss_se": {**CE, "use_sigmoid": True, "scale_factor": 0.2},
        "loss_edge": {**CE, "class_weight": "batch_balanced"}})
    losses = criterion(outputs, targets)
    presence = class_presence(targets, outputs, num_classes=4, ignore_index=-100)
    assert torch.allclose(losses["loss_se"], 0.2 * F.binary_cross_entropy_with_logits(outputs["se"], presence))
    assert torch.allclose(losses["loss_cls_main"], F.cross_entropy(_up(outputs["out"]), targets["seg_target"]))
    edge = targets["edge_target"]
    positive = edge.float().mean()
    weight = torch.stack([positive, 1 - positive])  # w_c = 1 - n_c / n
    assert torch.allclose(losses["loss_edge"], F.cross_entropy(_up(outputs["edge"]), edge, weight=weight))


def test_table_keys_route_a_distillation_loss_to_another_output(data):
    outputs, targets = data
    criterion = _criterion(["out", "aux"], {
        "loss_cls": CE,
        "loss_aux": CE,
        "loss_kd": {"type": "KLDivLoss", "output": "aux", "target": "output:out", "resize": "none",
                    "temperature": 2.0},
        "loss_l1": {"type": "L1Loss", "target": "seg_onehot", "output": "out"}})
    losses = criterion({**outputs, "aux": torch.randn(2, 4, 8, 8)}, targets)
    assert set(losses) == {"loss_cls", "loss_aux", "loss_kd", "loss_l1"}
    onehot = seg_onehot(targets, outputs, num_classes=4, ignore_index=-100)
    assert torch.allclose(losses["loss_l1"], F.l1_loss(_up(outputs["out"]), onehot))


def test_derived_targets_against_references():
    seg = torch.tensor([[[0, 2], [2, -100]], [[3, 3], [255, 1]]])
    presence = class_presence({"seg_target": seg}, {}, num_classes=4, ignore_index=-100)
    reference = torch.stack([torch.histc(s[(s >= 0) & (s < 4)].float(), bins=4, min=0, max=3) > 0 for s in seg])
    assert torch.equal(presence, reference.float())
    onehot = seg_onehot({"seg_target": seg}, {}, num_classes=4, ignore_index=-100)
    assert onehot.shape == (2, 4, 2, 2) and onehot[0, :, 1, 1].sum() == 0 and onehot[0, 2, 0, 1] == 1
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]]]).repeat(2, 1, 1)
    labels = point_labels({"seg_target": seg}, {"points": points}, num_classes=4, ignore_index=-100)
    assert labels.tolist() == [[0, 2, -100], [3, 3, 1]]  # (x, y) -> seg[y, x], nearest


def test_ohem_sampler_applies_to_dense_routes(data):
    outputs, targets = data
    criterion = _criterion(["out", "aux"], {"loss_cls": CE, "loss_aux": CE},
                           sampler={"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept_per_image": 20})
    losses = criterion(outputs, targets)
    logits, labels = criterion.sampler.sample(_up(outputs["out"]), targets["seg_target"])
    assert 0 < labels.numel() < (targets["seg_target"] != -100).sum()
    assert torch.allclose(losses["loss_cls"], F.cross_entropy(logits, labels))


@pytest.mark.parametrize(("names", "losses", "criterion", "expected"), [
    (["out", "aux"], {"loss_cls": CE}, {}, "losses: no loss supervises the output 'aux'"),
    (["out"], {"loss_cls": CE, "loss_aux": CE}, {}, "losses.loss_aux: the FCN segmentor has no output 'aux'"),
    (["out"], {"loss_cls": {**CE, "output": "logits"}}, {}, "losses.loss_cls: the FCN segmentor has no output 'logits'"),
    (["out"], {"loss_cls": {**CE, "target": "edge_targte"}}, {},
     "losses.loss_cls.target: unknown target 'edge_targte'; did you mean 'edge_target'?"),
    (["out"], {"loss_cls": {**CE, "resize": "nearest"}}, {}, "losses.loss_cls.resize: expected 'bilinear' or 'none'"),
    (["out"], {"loss_cls": {**CE, "target": "output:aux"}}, {}, "losses.loss_cls.target: no output 'aux'"),
    (["out"], {}, {}, "losses: the FCN segmentor is trained by a dense criterion"),
    (["out"], {"loss_cls": CE}, {"sampler": {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 1}},
     "criterion.sampler.min_kept: OHEMPixelSampler takes no 'min_kept'; did you mean 'min_kept_per_image'?"),
    (["out"], {"loss_cls": CE}, {"sampler": {"type": "OHEMPixelSampler"}}, "criterion.sampler: "),
    (["out"], {"loss_cls": CE}, {"samplr": {}}, "criterion.samplr: DenseCriterion takes no 'samplr'"),
    (["out"], {"loss_cls": CE}, {"type": "DenseCriterio"}, "criterion.type: unknown criterion 'DenseCriterio'"),
])
def test_recipe_errors_name_the_toml_path(names, losses, criterion, expected):
    with pytest.raises(RecipeError) as info:
        _criterion(names, losses, **criterion)
    assert str(info.value).startswith(expected), str(info.value)


def test_a_missing_batch_target_is_a_clear_error(data):
    outputs, targets = data
    criterion = _criterion(["out", "edge"], {"loss_cls": CE, "loss_edge": CE})
    with pytest.raises(SegkitError, match="losses.loss_edge needs 'edge_target'.*EdgeExtractor"):
        criterion(outputs, {"seg_target": targets["seg_target"]})


def test_optional_routes_are_skipped_when_their_output_is_absent(data):
    outputs, targets = data
    criterion = DenseCriterion({"loss_cls": [Term(CrossEntropyLoss(), Route("out"))],
                                "loss_memory": [Term(CrossEntropyLoss(), Route("memory", optional=True))]},
                               num_classes=4)
    assert set(criterion(outputs, targets)) == {"loss_cls"}
    with pytest.raises(KeyError, match="loss_cls supervises output 'out'"):
        criterion({"aux": outputs["aux"]}, targets)
