"""Carry SSSegmentation's randomised weights into segkit's model and compare what both compute (float64, eval)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from segkit.models.ssseg_checkpoint import convert_ssseg_state_dict

TOLERANCE = 1e-5
"""Largest accepted relative difference max|a - b| / max|a| (float64)."""


STD_ENTRIES: dict[str, tuple[tuple[int | None, ...], Any]] = {"memory_module.memory": ((None, 2), (slice(None), 1))}
"""Parameter name suffix -> (its shape, ``None`` for any size; the entries of it that SSSeg's model uses as a
standard deviation, which must therefore stay positive): MCIBI++'s ``FeaturesMemoryV2.memory`` is ``[num_classes,
2]``, each class's mean and std, from which its forward draws ``torch.normal(mean, std)`` (a negative std is an
error). MCIBI's ``FeaturesMemory.memory`` (``[num_classes, 1, channels]``, same name) holds features and is left
as it is."""


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter and every BatchNorm running statistic of ``model`` values no initialisation gives.

    Constant parameters (norm weights and biases, zero-initialised embeddings and layer scales, PReLU slopes) get
    noise added, the others are re-drawn around their own scale; running variances become U[0.5, 1.5) and running
    means N(0, 0.1), so that the statistics are tested too. Other buffers (position indices, masks) are left alone.
    Entries that SSSeg's model uses as standard deviations (:data:`STD_ENTRIES`) become U[0.5, 1.5) as well.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = dict(model.named_parameters())
    for name, buffer in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            tensors[name] = buffer
    for name, tensor in tensors.items():
        data = tensor.data
        if not data.is_floating_point() or data.numel() == 0:
            continue
        noise = torch.randn(data.shape, generator=generator, dtype=torch.float64).to(data.dtype)
        if name.endswith("running_var"):
            data.copy_(0.5 + torch.rand(data.shape, generator=generator, dtype=torch.float64).to(data.dtype))
        elif name.endswith("running_mean"):
            data.copy_(0.1 * noise)
        elif data.numel() == 1 or float(data.max() - data.min()) == 0.0:
            data.add_(0.1 * noise)
        else:
            data.copy_(noise * float(data.std()))
        for suffix, (shape, index) in STD_ENTRIES.items():
            if name.endswith(suffix) and data.dim() == len(shape) and all(
                    want in (None, have) for want, have in zip(shape, data.shape, strict=True)):
                data[index] = 0.5 + torch.rand(data[index].shape, generator=generator,
                                               dtype=torch.float64).to(data.dtype)


class _Holder(nn.Module):
    """Wraps a lone backbone so that the segmentor mapping (``backbone_net`` -> ``backbone``) applies to it."""

    ssseg_prefixes: ClassVar[dict[str, str]] = {"backbone_net": "backbone"}

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


LOW_MEMORY_PARAMS = 150_000_000
"""From this many parameters on, :func:`run_pair` lets segkit's model share SSSeg's float64 tensors instead of
holding a float64 copy of its own (BEiT-L's UPerNet at 640x640 otherwise needs over 10 GB)."""


def carry_segmentor(ssseg_model: nn.Module, segkit_model: nn.Module, share: bool = False) -> None:
    segkit_model.load_state_dict(convert_ssseg_state_dict(ssseg_model.state_dict(), segkit_model), strict=True,
                                 assign=share)


def carry_backbone(ssseg_backbone: nn.Module, segkit_backbone: nn.Module, share: bool = False) -> None:
    holder = _Holder(segkit_backbone)
    state = {f"backbone_net.{k}": v for k, v in ssseg_backbone.state_dict().items()}
    holder.load_state_dict(convert_ssseg_state_dict(state, holder), strict=True, assign=share)


def relative_difference(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max|a - b| / max|a| over the whole tensor (``inf`` if shapes differ or values are not finite)."""
    if reference.shape != other.shape:
        return math.inf
    reference, other = reference.double(), other.double()
    if not (torch.isfinite(reference).all() and torch.isfinite(other).all()):
        return math.inf
    scale = float(reference.abs().max())
    diff = float((reference - other).abs().max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def as_list(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs)


def compare_outputs(reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor]) -> tuple[float, str]:
    """The worst relative difference over paired outputs, and a note when counts, shapes or order differ.

    Outputs are paired by position; where shapes do not allow that (segkit returns a backbone's outputs by stride,
    SSSeg in its own order, e.g. BiSeNetV1), each SSSeg output is paired with the closest unused segkit output of
    its shape, and the note says so."""
    if len(reference) != len(other):
        return math.inf, f"SSSeg returns {len(reference)} outputs, segkit {len(other)}"
    if all(a.shape == b.shape for a, b in zip(reference, other, strict=True)):
        return max((relative_difference(a, b) for a, b in zip(reference, other, strict=True)), default=0.0), ""
    worst, used, pairs, notes = 0.0, set(), [], []
    for index, a in enumerate(reference):
        candidates = [(relative_difference(a, b), j) for j, b in enumerate(other) if j not in used and b.shape == a.shape]
        if not candidates:
            notes.append(f"SSSeg output {index} {list(a.shape)} has no segkit output of its shape")
            worst = math.inf
            continue
        diff, j = min(candidates)
        used.add(j)
        pairs.append(f"{index}->{j}")
        worst = max(worst, diff)
    notes.insert(0, "outputs paired by shape (SSSeg->segkit: " + ", ".join(pairs) + ")")
    return worst, "; ".join(notes)


def run_pair(ssseg_model: nn.Module, segkit_model: nn.Module, carry: Callable, forward_ssseg: Callable,
             forward_segkit: Callable, size: tuple[int, int], seed: int = 0) -> dict:
    """Randomise SSSeg's weights, carry them over, run both in float64 eval on one image; return the row's numbers."""
    row: dict[str, Any] = {"params_ssseg": count_params(ssseg_model), "params_segkit": count_params(segkit_model)}
    randomise(ssseg_model, seed)
    ssseg_model.double().eval()
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    if row["params_ssseg"] < LOW_MEMORY_PARAMS:
        segkit_model.double().eval()
        carry(ssseg_model, segkit_model)
        with torch.no_grad():
            reference = as_list(forward_ssseg(ssseg_model, images.clone()))
            other = as_list(forward_segkit(segkit_model, images.clone()))
    else:
        # SSSeg's forward first; then segkit's model takes SSSeg's tensors themselves (load_state_dict(assign=True):
        # its own float32 ones are freed), and its remaining buffers become float64
        with torch.no_grad():
            reference = as_list(forward_ssseg(ssseg_model, images.clone()))
        carry(ssseg_model, segkit_model, share=True)
        segkit_model.double().eval()
        with torch.no_grad():
            other = as_list(forward_segkit(segkit_model, images.clone()))
        row["shared_weights"] = True
    worst, note = compare_outputs(reference, other)
    row["max_rel_diff"] = worst
    row["output_shapes"] = [list(t.shape) for t in reference]
    if note:
        row["note"] = note
    return row
