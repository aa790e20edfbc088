"""Training-step time of the classic segmentors beside FCN-R50-D8, in one run (SSSegmentation's ADE20k recipes,
512x512, batch 2, CPU, SGD): forward, routed losses, backward, optimizer step.

ratio = median step time / FCN-R50-D8's median step time, measured in alternating rounds so machine noise falls on
every model alike. CCNet and PSANet show what their attention costs over the same backbone.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "FCN-R50-D8": "recipes/fcn/fcn_resnet50os8_ade20k.toml",
    "PSPNet-R50-D8": "recipes/pspnet/pspnet_resnet50os8_ade20k.toml",
    "DeepLabV3-R50-D8": "recipes/deeplabv3/deeplabv3_resnet50os8_ade20k.toml",
    "UPerNet-R50": "recipes/upernet/upernet_resnet50os8_ade20k.toml",
    "Segformer-B0": "recipes/segformer/segformer_mitb0_ade20k.toml",
    "CCNet-R50-D8": "recipes/ccnet/ccnet_resnet50os8_ade20k.toml",
    "PSANet-R50-D8": "recipes/psanet/psanet_resnet50os8_ade20k.toml",
}


def _setup(path: str, batch: int, size: int):
    from segkit import build_model, load_recipe
    from segkit.models import build_criterion

    recipe = load_recipe(REPO / path)
    model = build_model(recipe, pretrained=False).train()
    criterion = build_criterion(recipe, model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    targets = {"seg_target": torch.randint(0, recipe.num_classes, (batch, size, size), generator=generator)}
    return model, criterion, optimizer, images, targets


def _step(model, criterion, optimizer, images, targets) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    outputs = model(images, targets) if model.uses_targets else model(images)
    total = torch.stack(list(criterion(outputs, targets).values())).sum()
    total.backward()
    optimizer.step()
    return time.perf_counter() - start


def run(repeats: int = 3, batch: int = 2, size: int = 512) -> dict:
    torch.manual_seed(0)
    setups = {name: _setup(path, batch, size) for name, path in MODELS.items()}
    for setup in setups.values():  # warm-up
        _step(*setup)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(repeats):
        for name, setup in setups.items():
            times[name].append(_step(*setup))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["FCN-R50-D8"]
    params = {name: sum(p.numel() for p in setup[0].parameters()) for name, setup in setups.items()}
    return {
        "benchmark": "segmentor_train_steps",
        "batch": [batch, 3, size, size],
        "recipes": MODELS,
        "step_s": times,
        "parameters": params,
        "summary": {name: {"median_s": round(m, 3), "ratio_to_fcn": round(m / base, 3)} for name, m in medians.items()},
    }
