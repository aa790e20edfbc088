"""MCIBI's memory loss: the ``memory_labels`` target and the criterion that reads SSSeg's ``head.loss_cfg``.

SSSegmentation configures the memory loss inside the head (``head.use_loss``, ``head.loss_cfg``) and adds it in
``forward`` from epoch 2. In segkit the MCIBI segmentor emits the memory's logits as the output ``memory``
(``[K*n, K]``: ``decoder_stage2`` on each of the n vectors of each class) and the loss is a route::

    [losses.loss_memory]            # memory <- memory_labels, not resized; skipped while the output is absent
    type = "CrossEntropyLoss"

``MCIBICriterion`` (the MCIBI segmentor's default criterion) is the dense criterion plus one rule: a recipe in
SSSegmentation's layout, with ``head.loss_cfg`` and no ``[losses.loss_memory]``, gets ``loss_memory = head.loss_cfg``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ...errors import RecipeError
from ...registry import CRITERIA, TARGETS
from .criterion import DenseCriterion


@TARGETS.register("memory_labels")
def memory_labels(targets: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], *, num_classes: int,
                  ignore_index: int) -> torch.Tensor:
    """``[K*n]``: the class of each row of ``outputs["memory"]`` (``0,..,0, 1,..,1, ...``, n of each, as SSSeg's
    ``arange(K)`` repeated per memory vector)."""
    rows = outputs["memory"].shape[0]
    if rows % num_classes:
        raise ValueError(f"the memory output has {rows} rows, not a multiple of num_classes={num_classes}")
    classes = torch.arange(num_classes, device=outputs["memory"].device)
    return classes.repeat_interleave(rows // num_classes)


def _with_losses(recipe: Any, losses: dict) -> Any:
    """A shallow copy of ``recipe`` with ``losses`` replaced (a pydantic recipe or a plain namespace)."""
    if hasattr(recipe, "model_copy"):
        return recipe.model_copy(update={"losses": losses})
    clone = copy.copy(recipe)
    clone.losses = losses
    return clone


@CRITERIA.register("MCIBICriterion")
class MCIBICriterion(DenseCriterion):
    """:class:`DenseCriterion` that also accepts SSSeg's ``head.loss_cfg`` as the ``loss_memory`` table."""

    @classmethod
    def from_recipe(cls, recipe: Any, segmentor: nn.Module, table: dict, *, probe: bool = False) -> DenseCriterion:
        head = recipe.head if isinstance(getattr(recipe, "head", None), dict) else {}
        loss_cfg = head.get("loss_cfg")
        use_loss = getattr(getattr(segmentor, "head", None), "use_loss", False)
        losses = dict(getattr(recipe, "losses", None) or {})
        if loss_cfg is not None and use_loss:
            if "loss_memory" in losses:
                raise RecipeError("head.loss_cfg", "the memory loss is given twice, here and as [losses.loss_memory]; "
                                  "keep one")
            losses["loss_memory"] = copy.deepcopy(loss_cfg)
            recipe = _with_losses(recipe, losses)
        return super().from_recipe(recipe, segmentor, table, probe=probe)
