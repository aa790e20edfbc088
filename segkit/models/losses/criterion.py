"""``Criterion``: maps the segmentor's named outputs to their loss terms and sums them.

A recipe's ``losses`` table is keyed by loss name; the name says which output it supervises, as in SSSegmentation:
``loss_cls`` -> ``"out"`` (the decode head), ``loss_<x>`` -> ``"<x>"`` (``loss_aux`` -> ``"aux"``,
``loss_aux1`` -> ``"aux1"``). A table is one term, an array of tables a sum of terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def output_for_loss(loss_name: str) -> str:
    """The segmentor output a loss key supervises (``loss_cls`` -> ``out``, ``loss_aux1`` -> ``aux1``)."""
    if loss_name == "loss_cls":
        return "out"
    if loss_name.startswith("loss_") and len(loss_name) > len("loss_"):
        return loss_name[len("loss_"):]
    raise ValueError(f"loss names look like 'loss_cls' or 'loss_<output>', got '{loss_name}'")


def loss_for_output(output_name: str) -> str:
    """The loss key that supervises an output (``out`` -> ``loss_cls``, ``aux`` -> ``loss_aux``)."""
    return "loss_cls" if output_name == "out" else f"loss_{output_name}"


class Criterion(nn.Module):
    """Named losses of a segmentor's outputs.

    ``terms`` maps each loss name to its loss modules (summed). Before its terms, each output is resized bilinearly
    (with ``align_corners``) to the target's height and width, as SSSegmentation resizes predictions to the image.
    ``forward`` returns the total and a dict of the named losses (tensors; logging is the caller's business).
    """

    def __init__(self, terms: dict[str, list[nn.Module]], align_corners: bool = False) -> None:
        super().__init__()
        if not terms:
            raise ValueError("Criterion needs at least one loss")
        empty = [name for name, modules in terms.items() if not modules]
        if empty:
            raise ValueError(f"no loss terms for {empty}")
        self.output_names = {name: output_for_loss(name) for name in terms}
        self.terms = nn.ModuleDict({name: nn.ModuleList(modules) for name, modules in terms.items()})
        self.align_corners = align_corners

    def forward(
        self, outputs: dict[str, torch.Tensor], target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        for name, modules in self.terms.items():
            output_name = self.output_names[name]
            if output_name not in outputs:
                raise KeyError(f"{name} supervises output '{output_name}', but the segmentor returned only "
                               f"{sorted(outputs)} (auxiliary outputs exist only in training mode)")
            prediction = self.resize(outputs[output_name], target)
            value = sum(term(prediction, target).mean() for term in modules)
            losses[name] = value
        total = sum(losses.values())
        return total, losses

    def resize(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``prediction`` resized bilinearly to the spatial size of ``target`` (``[B, H, W]`` or ``[B, C, H, W]``)."""
        size = target.shape[-2:]
        if prediction.shape[-2:] == size:
            return prediction
        return F.interpolate(prediction, size=size, mode="bilinear", align_corners=self.align_corners)
