"""``SetCriterion``: the set-prediction loss of MaskFormer and Mask2Former (DETR's bipartite-matching loss).

Per image, the targets are the classes present in ``seg_target`` (ignored labels dropped) and one binary mask per
class. Each decoder layer's queries are matched one-to-one to them (:class:`HungarianMatcher`); then

* ``loss_ce``: cross-entropy of every query's class logits (``num_classes + 1``), unmatched queries against the
  "no object" class, which is weighted ``eos_coef`` (a weighted mean over the queries);
* ``loss_mask``: the matched masks against their targets, sigmoid focal loss (alpha 0.25, gamma 2) on every pixel
  after upsampling the predictions bilinearly to the target size (MaskFormer), or binary cross-entropy at
  ``point_sampling.num_points`` uncertain points (PointRend's importance sampling, Mask2Former);
* ``loss_dice``: dice loss of the same masks and pixels;

mask losses are summed over the matched masks and divided by ``num_masks``, the number of target masks in the batch
averaged over the processes (through the segmentor's ``reduce_mean``, which the engine sets under DDP), at least 1.
The earlier decoder layers' outputs (``pred_logits_{i}``, ``pred_masks_{i}``) are matched and scored the same way,
as ``loss_ce_{i}``, ``loss_mask_{i}``, ``loss_dice_{i}``. Every term is multiplied by its weight (``weights``;
SSSegmentation uses the matcher's costs, which is the default) and returned as a 0-d tensor.

Recipe (``[criterion]``; the segmentor's ``criterion_type`` selects this when ``type`` is absent, and the defaults
are the segmentor's SSSegmentation values, ``set_criterion_defaults``)::

    [criterion]
    eos_coef = 0.1
    weights = { loss_ce = 2.0, loss_mask = 5.0, loss_dice = 5.0 }   # default: the matcher costs
    point_sampling = { num_points = 12544, oversample_ratio = 3.0, importance_sample_ratio = 0.75 }  # 0: all pixels
    mask_loss = "bce"                     # or "focal"
    losses = ["labels", "masks"]
    ignore_index = [-100, 255]

    [criterion.matcher]                   # HungarianMatcher
    cost_class = 2.0
    cost_mask = 5.0
    cost_dice = 5.0
    num_points = 12544
    mask_cost = "bce"

Differences from SSSegmentation: an image with no labelled pixel has no targets (SSSegmentation invents one empty
mask of class 0); labels outside ``[0, num_classes)`` that are not ignored raise an error instead of crashing in the
cross-entropy; losses run in float32 with autocast off.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable
from typing import Any, Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import TypedDict  # pydantic validates typing.TypedDict only from Python 3.12

from ...errors import RecipeError
from ...registry import CRITERIA, validate_arguments
from ..layers.errors import ArgumentError
from ..samplers.ug_sampler import UGSampler
from .matcher import HungarianMatcher, MatchIndices

LOSS_KINDS = ("labels", "masks")
TERMS = {"labels": ("loss_ce",), "masks": ("loss_mask", "loss_dice")}


@pydantic.with_config(pydantic.ConfigDict(extra="forbid"))
class LossWeights(TypedDict, total=False):
    """``criterion.weights``: the factor of each term (and of its deep-supervision copies)."""

    loss_ce: float
    loss_mask: float
    loss_dice: float


@pydantic.with_config(pydantic.ConfigDict(extra="forbid"))
class PointSampling(TypedDict, total=False):
    """``criterion.point_sampling``: where the mask losses are taken (``num_points = 0``: every target pixel)."""

    num_points: int
    oversample_ratio: float
    importance_sample_ratio: float


def _criterion_table(
    eos_coef: float = 0.1,
    weights: LossWeights | None = None,
    point_sampling: PointSampling | None = None,
    mask_loss: Literal["focal", "bce"] = "bce",
    losses: list[Literal["labels", "masks"]] | None = None,
    ignore_index: int | list[int] = (-100, 255),  # type: ignore[assignment]
    matcher: dict | None = None,
) -> None:
    """The keys of a ``[criterion]`` table of type SetCriterion (validated against this signature)."""


def format_targets(seg_target: torch.Tensor, num_classes: int,
                   ignore_index: tuple[int, ...] = (-100, 255)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[B, H, W]`` labels -> per image ``(labels [T], masks [T, H, W] bool)``: the classes present (ascending,
    ignored labels dropped) and where each one is."""
    targets = []
    for seg in seg_target:
        labels = torch.unique(seg)
        if ignore_index:
            labels = labels[~torch.isin(labels, torch.tensor(ignore_index, device=labels.device,
                                                             dtype=labels.dtype))]
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            bad = labels[(labels < 0) | (labels >= num_classes)].tolist()
            raise ValueError(f"seg_target holds labels {bad} outside [0, {num_classes}) that are not ignored "
                             f"(ignore_index: {list(ignore_index)})")
        labels = labels.long()
        targets.append((labels, seg[None] == labels[:, None, None]))
    return targets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss ``[N, P]``: the mean over pixels, summed over masks, divided by ``num_masks``."""
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy ``[N, P]``: the mean over pixels, summed over masks, divided by ``num_masks``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Dice loss (smoothing 1) of ``[N, P]`` mask logits, summed over masks, divided by ``num_masks``."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@CRITERIA.register("SetCriterion")
class SetCriterion(nn.Module):
    """Hungarian-matched class, mask and dice losses with deep supervision (see the module docstring).

    ``forward(outputs, targets, generator=None) -> {term: scaled 0-d tensor}`` reads ``pred_logits``,
    ``pred_masks`` and the ``pred_logits_{i}``/``pred_masks_{i}`` of ``num_aux`` earlier layers, and
    ``targets["seg_target"]`` (or a ``[B, H, W]`` tensor). ``generator`` makes the random points reproducible.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weights: dict[str, float],
        eos_coef: float = 0.1,
        losses: tuple[str, ...] = LOSS_KINDS,
        mask_loss: Literal["focal", "bce"] = "bce",
        point_sampling: dict[str, Any] | None = None,
        num_aux: int = 0,
        ignore_index: tuple[int, ...] = (-100, 255),
        reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= eos_coef:
            raise ArgumentError("eos_coef", f"must be >= 0, got {eos_coef}")
        unknown = [kind for kind in losses if kind not in LOSS_KINDS]
        if unknown or not losses:
            raise ArgumentError("losses", f"expected a non-empty list of {list(LOSS_KINDS)}, got {list(losses)}")
        if mask_loss not in ("focal", "bce"):
            raise ArgumentError("mask_loss", f"expected 'focal' or 'bce', got {mask_loss!r}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.mask_loss = mask_loss
        self.num_aux = num_aux
        self.ignore_index = tuple(ignore_index)
        self.weights = {name: float(weights[name]) for name in ("loss_ce", "loss_mask", "loss_dice")}
        point_sampling = dict(point_sampling or {})
        num_points = int(point_sampling.pop("num_points", 0))
        try:
            self.sampler = UGSampler(num_points, reformat_target=False, **point_sampling) if num_points else None
        except ValueError as exc:
            raise ArgumentError("point_sampling", str(exc)) from None
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)
        self._reduce_mean = reduce_mean or _identity

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={list(self.losses)}, "
                f"mask_loss={self.mask_loss!r}, sampler={self.sampler}, num_aux={self.num_aux}, "
                f"weights={self.weights}")

    def term_names(self) -> list[str]:
        """The terms ``forward`` returns, in order (SSSegmentation's names)."""
        base = [term for kind in self.losses for term in TERMS[kind]]
        return base + [f"{term}_{index}" for index in range(self.num_aux) for term in base]

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def from_recipe(cls, recipe: Any, segmentor: nn.Module, table: dict, *, probe: bool = False) -> SetCriterion:
        """Validate the ``[criterion]`` table (TOML-path errors) over the segmentor's defaults and build."""
        defaults = copy.deepcopy(getattr(type(segmentor), "set_criterion_defaults", None))
        if defaults is None:
            raise RecipeError("criterion.type", f"SetCriterion trains query-based segmentors (MaskFormer, "
                              f"Mask2Former); {recipe.type} returns no per-query predictions")
        losses = getattr(recipe, "losses", None)
        if losses:
            raise RecipeError("losses", f"{recipe.type} is trained by SetCriterion, whose loss weights live in "
                              "[criterion] (weights = { loss_ce = ..., loss_mask = ..., loss_dice = ... }); "
                              "remove the [losses] tables")
        table = copy.deepcopy(table)
        matcher_table = table.pop("matcher", None)
        kwargs = validate_arguments(_criterion_table, table, "criterion", what="SetCriterion")
        matcher_cfg = dict(defaults.pop("matcher", {}))
        if matcher_table is not None:
            if not isinstance(matcher_table, dict):
                raise RecipeError("criterion.matcher", f"expected a table, got {matcher_table!r}")
            matcher_table = dict(matcher_table)
            matcher_type = matcher_table.pop("type", "HungarianMatcher")
            if matcher_type != "HungarianMatcher":
                raise RecipeError("criterion.matcher.type", f"expected 'HungarianMatcher', got {matcher_type!r}")
            matcher_cfg.update(validate_arguments(HungarianMatcher, matcher_table, "criterion.matcher",
                                                  what="HungarianMatcher"))
        try:
            matcher = HungarianMatcher(**matcher_cfg)
        except ArgumentError as exc:
            raise exc.at("criterion.matcher") from None
        cfg = {**defaults, **{k: v for k, v in kwargs.items() if v is not None}}
        weights = {"loss_ce": matcher.cost_class, "loss_mask": matcher.cost_mask, "loss_dice": matcher.cost_dice}
        weights.update(cfg.pop("weights", None) or {})
        if "point_sampling" in kwargs and kwargs["point_sampling"] is not None:
            cfg["point_sampling"] = {**(defaults.get("point_sampling") or {}), **kwargs["point_sampling"]}
        ignore = cfg.pop("ignore_index", (-100, 255))
        ignore = (ignore,) if isinstance(ignore, int) else tuple(ignore)
        outputs = segmentor.output_names(training=True)
        if outputs[:2] != ["pred_logits", "pred_masks"]:
            raise RecipeError("criterion.type", f"SetCriterion needs the outputs pred_logits and pred_masks; "
                              f"{recipe.type} returns {', '.join(outputs)}")
        num_aux = sum(1 for name in outputs if name.startswith("pred_logits_"))
        reference = weakref.ref(segmentor)

        def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
            owner = reference()
            return tensor if owner is None else owner.reduce_mean(tensor)

        try:
            return cls(num_classes=recipe.num_classes, matcher=matcher, weights=weights, num_aux=num_aux,
                       ignore_index=ignore, reduce_mean=reduce_mean, **cfg)
        except ArgumentError as exc:
            raise exc.at("criterion") from None

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        seg_target = targets if isinstance(targets, torch.Tensor) else targets["seg_target"]
        formatted = format_targets(seg_target, self.num_classes, self.ignore_index)
        device = outputs["pred_logits"].device
        count = torch.tensor(float(sum(len(labels) for labels, _ in formatted)), device=device)
        num_masks = torch.clamp(self._reduce_mean(count), min=1.0)
        layers = [("", outputs["pred_logits"], outputs["pred_masks"])]
        layers += [(f"_{i}", outputs[f"pred_logits_{i}"], outputs[f"pred_masks_{i}"]) for i in range(self.num_aux)]
        terms: dict[str, torch.Tensor] = {}
        with _autocast_off(device.type):
            for suffix, logits, masks in layers:
                logits, masks = logits.float(), masks.float()
                indices = self.matcher(logits, masks, formatted, generator=generator)
                for kind in self.losses:
                    if kind == "labels":
                        values = {"loss_ce": self.loss_labels(logits, formatted, indices)}
                    else:
                        values = self.loss_masks(masks, formatted, indices, num_masks, generator)
                    for name, value in values.items():
                        terms[name + suffix] = value * self.weights[name]
        return terms

    def loss_labels(self, logits: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]],
                    indices: MatchIndices) -> torch.Tensor:
        """Cross-entropy over ``num_classes + 1`` classes, unmatched queries -> "no object" (weight eos_coef)."""
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for image, ((src, tgt), (labels, _)) in enumerate(zip(indices, targets, strict=True)):
            target_classes[image, src.to(logits.device)] = labels[tgt.to(labels.device)].to(logits.device)
        weight = self.empty_weight.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits.transpose(1, 2), target_classes, weight)

    def loss_masks(self, masks: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]],
                   indices: MatchIndices, num_masks: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Focal/BCE and dice losses of the matched masks (all pixels at the target size, or sampled points)."""
        src = torch.cat([masks[image, rows.to(masks.device)] for image, (rows, _) in enumerate(indices)])
        wanted = torch.cat([target_masks[cols.to(target_masks.device)]
                            for (_, target_masks), (_, cols) in zip(targets, indices, strict=True)])
        wanted = wanted.to(device=masks.device, dtype=masks.dtype)
        if src.shape[0] == 0:  # nothing matched in the whole batch: zero losses that keep the graph
            zero = masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        if self.sampler is not None:
            point_logits, point_targets = self.sampler.sample(src, wanted, generator=generator)
        else:
            point_logits = F.interpolate(src[:, None], size=wanted.shape[-2:], mode="bilinear",
                                         align_corners=False)[:, 0].flatten(1)
            point_targets = wanted.flatten(1)
        mask_loss = sigmoid_focal_loss if self.mask_loss == "focal" else sigmoid_ce_loss
        return {"loss_mask": mask_loss(point_logits, point_targets, num_masks),
                "loss_dice": dice_loss(point_logits, point_targets, num_masks)}


def _autocast_off(device_type: str):
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()
