"""Every registered segmentor, head, neck, loss and pixel sampler, put through the same checks.

A segmentor is tested from its small recipe in ``small_configs/segmentors/*.toml`` (a registration without one fails
here): it builds (and its meta-device validation counts the same parameters), its eval output is ``{"out":
[B, K, h, w]}`` and whole-image inference gives ``[B, K, H, W]`` at the input size, its training outputs are the
declared ones and every one of them is routed to a loss, every trainable parameter receives a finite gradient, its
loss falls on synthetic-dataset images within a few dozen steps, and (where declared exportable) its ONNX export
matches eager PyTorch. Heads and necks are covered through the segmentors that use them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from segkit import HEADS, LOSSES, NECKS, SAMPLERS, SEGMENTORS
from segkit.data.datasets.synthetic import make_sample
from segkit.evaluation.inference import predict_logits
from segkit.models import build_criterion, build_segmentor, validate_model

from .helpers import make_recipe

CONFIG_DIR = Path(__file__).parent / "small_configs"


def _tables(directory: Path) -> dict[str, dict]:
    tables: dict[str, dict] = {}
    for path in sorted(directory.glob("*.toml")):
        for name, table in tomllib.loads(path.read_text()).items():
            assert name not in tables, f"{name} is configured twice ({path.name})"
            tables[name] = table
    return tables


SMALL_BACKBONES = _tables(CONFIG_DIR)
SMALL_SEGMENTORS = _tables(CONFIG_DIR / "segmentors")


def segmentor_type(key: str) -> str:
    """``"UPerNet/beit"`` -> ``"UPerNet"``: a small recipe is keyed by its type, or by type/variant."""
    return key.split("/", 1)[0]


def small_recipe(name: str):
    """The small recipe ``name`` (its backbone table merged over that backbone's small config)."""
    assert name in SMALL_SEGMENTORS, f"add a small recipe for the segmentor {name} to small_configs/segmentors/"
    fields = copy.deepcopy(SMALL_SEGMENTORS[name])
    size = fields.pop("_input_size", 64)
    fields.pop("_train_steps", None)
    backbone = fields.get("backbone")
    if backbone is not None and backbone.get("type") in SMALL_BACKBONES:
        base = {k: v for k, v in SMALL_BACKBONES[backbone["type"]].items() if not k.startswith("_")}
        fields["backbone"] = {**base, **backbone}
    return make_recipe(type=segmentor_type(name), **fields), size


def synthetic_batch(batch: int, size: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels drawn by the embedded synthetic dataset's generator (labels folded into num_classes)."""
    rng = np.random.default_rng(seed)
    images, labels = zip(*(make_sample(size, rng) for _ in range(batch)), strict=True)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    y = torch.from_numpy(np.stack(labels)).long() % num_classes
    return x, y


def _targets(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    edge = torch.zeros_like(labels)
    edge[:, 1:, :] |= (labels[:, 1:, :] != labels[:, :-1, :]).long()
    edge[:, :, 1:] |= (labels[:, :, 1:] != labels[:, :, :-1]).long()
    return {"seg_target": labels, "edge_target": edge}


def _forward(segmentor, images, targets):
    return segmentor(images, targets) if segmentor.uses_targets else segmentor(images)


def _total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(losses.values())).sum()


def test_every_registered_segmentor_has_a_small_recipe():
    configured = {segmentor_type(key) for key in SMALL_SEGMENTORS}
    missing = [n for n in SEGMENTORS.names() if n not in configured]
    assert not missing, f"add small recipes to small_configs/segmentors/ for {missing}"
    unknown = [n for n in configured if n not in SEGMENTORS]
    assert not unknown, f"small recipes for unregistered segmentors: {unknown}"


def test_every_registered_head_and_neck_is_used_by_a_small_recipe():
    heads, necks = set(), set()
    for name in SMALL_SEGMENTORS:
        segmentor = build_segmentor(small_recipe(name)[0], pretrained=False)
        heads |= {type(m).__name__ for m in segmentor.modules()}
        necks |= {type(m).__name__ for m in segmentor.modules()}
    registered_heads = {HEADS.get(n).__name__: n for n in HEADS.names()}
    registered_necks = {NECKS.get(n).__name__: n for n in NECKS.names()}
    assert not [n for c, n in registered_heads.items() if c not in heads], "heads no small recipe uses"
    assert not [n for c, n in registered_necks.items() if c not in necks], "necks no small recipe uses"


@pytest.mark.parametrize("name", sorted(SMALL_SEGMENTORS))
def test_segmentor_builds_runs_and_backpropagates(name):
    recipe, size = small_recipe(name)
    torch.manual_seed(0)
    segmentor = build_segmentor(recipe, pretrained=False)
    plan = validate_model(recipe, pretrained=False)
    assert plan.parameters == sum(p.numel() for p in segmentor.parameters())
    images, labels = synthetic_batch(2, size, recipe.num_classes)
    segmentor.eval()
    with torch.no_grad():
        out = segmentor(images)
        assert list(out) == ["out"] and out["out"].shape[:2] == (2, recipe.num_classes)
        assert torch.isfinite(out["out"]).all()
        full = predict_logits(segmentor, images, mode="whole", num_classes=recipe.num_classes,
                              align_corners=recipe.align_corners)
        assert full.shape == (2, recipe.num_classes, size, size)
    segmentor.train()
    targets = _targets(labels)
    outputs = _forward(segmentor, images, targets)
    assert list(outputs) == segmentor.output_names(training=True)
    criterion = build_criterion(recipe, segmentor)
    losses = criterion(outputs, targets)
    assert losses and all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    _total(losses).backward()
    for pname, parameter in segmentor.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{pname} has non-finite gradients"


@pytest.mark.parametrize("name", sorted(SMALL_SEGMENTORS))
def test_segmentor_loss_falls_on_synthetic_images(name):
    recipe, size = small_recipe(name)
    steps = SMALL_SEGMENTORS[name].get("_train_steps", 25)
    torch.manual_seed(0)
    segmentor = build_segmentor(recipe, pretrained=False).train()
    criterion = build_criterion(recipe, segmentor)
    images, labels = synthetic_batch(4, size, recipe.num_classes, seed=1)
    targets = _targets(labels)
    optimizer = torch.optim.Adam([p for p in segmentor.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for step in range(steps):
        segmentor.set_progress(epoch=1, iteration=step, lr=3e-3, max_epochs=1, max_iters=steps)
        total = _total(criterion(_forward(segmentor, images, targets), targets))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert min(history[-3:]) < 0.7 * history[0], [round(h, 3) for h in history]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("name", sorted(SMALL_SEGMENTORS))
def test_segmentor_exports_to_onnx_matching_eager(name, tmp_path):
    from segkit.errors import SegkitError
    from segkit.export import export_model

    recipe, size = small_recipe(name)
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    if not segmentor.exportable:
        with pytest.raises(SegkitError, match="cannot be exported"):
            export_model(segmentor, tmp_path / "model.onnx", input_shape=(1, 3, size, size))
        assert segmentor.not_exportable_reason
        return
    report = export_model(segmentor, tmp_path / "model.onnx", input_shape=(1, 3, size, size), atol=1e-4,
                          align_corners=recipe.align_corners)
    assert report["passed"] and report["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_gives_a_finite_differentiable_value(name):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=generator, requires_grad=True)
    same_shape = torch.softmax(torch.randn(2, 3, 5, 5, generator=generator), dim=1)
    index = torch.randint(0, 3, (2, 5, 5), generator=generator)
    index[0, 0] = -100
    takes_index = name in {"CrossEntropyLoss", "DiceLoss", "FocalLoss", "LovaszLoss"}
    loss = LOSSES.build({"type": name})(logits, index if takes_index else same_shape)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_keeps_gradients_and_matching_targets(name):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    args = {"OHEMPixelSampler": {"thresh": 0.7, "min_kept_per_image": 10},
            "UGSampler": {"num_points": 16, "num_classes": 3}}[name]
    sampled_logits, sampled_target = SAMPLERS.build({"type": name, **args}).sample(logits, target)
    assert sampled_logits.shape[0] == sampled_target.shape[0] and sampled_logits.requires_grad
    sampled_logits.float().sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
