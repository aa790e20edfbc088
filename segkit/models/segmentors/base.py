"""``Segmentor``: the contract every segmentor fits, and ``EncoderDecoder``, the shared backbone -> neck -> head base.

The forward pass is pure tensors in and out (no losses, no mode strings, no ``.item()``, no ``torch.distributed``)::

    outputs = segmentor(images)             # eval: {"out": [B, K, h, w]}; training: "out" plus named extras
    outputs = segmentor(images, targets)    # segmentors that declare ``uses_targets`` (ground truth in forward)

A segmentor owns its assembly: ``from_recipe(builder)`` beside the class turns the recipe's tables into objects
(through :class:`~segkit.models.build.ModelBuilder`, which validates each table and derives channels), as
detectron2's ``from_config``. What its losses supervise is declared, not guessed: ``loss_routes`` maps a loss name to
an output, a target and a resize policy; otherwise ``loss_cls`` supervises ``out`` and ``loss_<x>`` supervises ``x``.

Hooks the engine drives, each off by default:

* ``uses_targets``: ``forward(images, targets)`` receives ``{"seg_target": ..., "edge_target": ...}`` in training.
* ``uses_progress``: :meth:`set_progress` is called before every training step with epoch, iteration and lr.
* ``reduce_mean``: the engine replaces this identity with its cross-rank mean under DDP; stateful segmentors call it
  on their statistics inside ``forward`` so every rank ends a step with identical state (as SyncBatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from ..features import FeatureInfo

if TYPE_CHECKING:
    from ..build import ModelBuilder


@dataclass(frozen=True)
class Route:
    """Where one loss table looks: the segmentor ``output``, the ``target`` (a batch key such as ``seg_target`` or
    ``edge_target``, a registered derivation such as ``class_presence``, or ``output:<name>`` for another output,
    detached) and how the output is brought to the target (``bilinear`` resize, or ``none``)."""

    output: str
    target: str = "seg_target"
    resize: Literal["bilinear", "none"] = "bilinear"
    optional: bool = False
    """The output exists only sometimes (e.g. after a warm-up); the loss is skipped when it is absent."""


def aux_output_names(num_aux: int, single: bool) -> list[str]:
    """Output names of the auxiliary heads: ``["aux"]`` for one head given as a table, else ``aux1..auxN``."""
    if num_aux == 0:
        return []
    if single:
        return ["aux"]
    return [f"aux{i}" for i in range(1, num_aux + 1)]


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class Segmentor(nn.Module):
    """Base of every trainable segmentor (see the module docstring for the contract)."""

    criterion_type: ClassVar[str] = "DenseCriterion"
    """The ``CRITERIA`` entry that trains this segmentor when the recipe has no ``criterion.type``."""
    loss_routes: ClassVar[dict[str, Route]] = {}
    """Loss names whose output or target is not given by the name rule (``loss_cls`` -> ``out``, ``loss_x`` -> x)."""
    unsupervised_outputs: ClassVar[frozenset[str]] = frozenset()
    """Training outputs that are data for the criterion, not predictions (e.g. PointRend's ``points``)."""
    uses_targets: ClassVar[bool] = False
    uses_progress: ClassVar[bool] = False
    exportable: ClassVar[bool] = True
    not_exportable_reason: ClassVar[str] = ""
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone", "decoder": "head", "auxiliary_decoder": "aux_heads",
    }
    """SSSegmentation attribute names -> segkit's, for its checkpoints and its ``params_rules`` keys."""

    def __init__(self, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.reduce_mean: Callable[[torch.Tensor], torch.Tensor] = _identity
        self._norms_frozen = False

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> Segmentor:
        """Build this segmentor from its recipe tables (the only configuration code of the class)."""
        raise NotImplementedError(f"{cls.__name__} does not say how to build itself from a recipe")

    def output_names(self, training: bool = True) -> list[str]:
        """The keys ``forward`` returns in training (``training=True``) or in eval mode (always ``["out"]``)."""
        return ["out"]

    def set_progress(self, *, epoch: int, iteration: int, lr: float, max_epochs: int, max_iters: int) -> None:
        """Training progress, given before each step to segmentors that declare ``uses_progress``."""

    # ----------------------------------------------------------------------------------------------- norms
    def freeze_norm(self) -> None:
        """Freeze every BatchNorm (SSSegmentation's ``is_freeze_norm``): eval mode, no gradients, also after
        ``.train()``.
        """
        self._norms_frozen = True
        for module in self._batch_norms():
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Segmentor:
        super().train(mode)
        if self._norms_frozen:
            for module in self._batch_norms():
                module.eval()
        return self

    def _batch_norms(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class EncoderDecoder(Segmentor):
    """Backbone -> optional neck -> decode head, plus auxiliary heads in training.

    ``selected_indices`` picks (and orders) the backbone outputs (SSSegmentation's ``backbone.selected_indices``;
    ``None`` keeps them all); the neck, the head and the auxiliary heads see that list (or the neck's outputs) and
    each picks its inputs by its own ``in_index``. ``aux_heads`` maps output names (``aux`` or ``aux1..N``) to heads.
    A head may return a dict (``"out"`` plus training-only extras such as DANet's ``pam``/``cam``).
    """

    head_type: ClassVar[str] = ""
    """The head (registry name) a recipe's ``head`` table builds when it names no ``type``."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        neck: nn.Module | None = None,
        aux_heads: dict[str, nn.Module] | None = None,
        selected_indices: tuple[int, ...] | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__(align_corners)
        self.backbone = backbone
        self.neck = neck
        self.head = head
        aux_heads = dict(aux_heads or {})
        self.aux_names: list[str] = list(aux_heads)
        self.aux_heads = nn.ModuleList(aux_heads.values()) if aux_heads else None
        self.selected_indices: list[int] | None = None if selected_indices is None else list(selected_indices)

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> EncoderDecoder:
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        head = builder.head(features, default_type=cls.head_type, **cls.head_arguments(features))
        aux_heads = builder.aux_heads(features)
        return cls(backbone=backbone, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)

    @classmethod
    def head_arguments(cls, features: FeatureInfo) -> dict[str, Any]:
        """Arguments the head gets from the features besides the derived ``in_channels`` (default: none)."""
        return {}

    # ----------------------------------------------------------------------------------------------- forward
    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The features the heads see: backbone outputs after ``selected_indices``, then the neck."""
        features = self.backbone(images)
        if self.selected_indices is not None:
            features = [features[i] for i in self.selected_indices]
        if self.neck is not None:
            features = self.neck(features)
        return features

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        features = self.extract_features(images)
        decoded = self.head(features)
        outputs = dict(decoded) if isinstance(decoded, dict) else {"out": decoded}
        if not self.training:
            return {"out": outputs["out"]}
        if self.aux_heads is not None:
            for name, aux_head in zip(self.aux_names, self.aux_heads, strict=True):
                outputs[name] = aux_head(features)
        return outputs

    def output_names(self, training: bool = True) -> list[str]:
        if not training:
            return ["out"]
        head_outputs = self.head.training_outputs() if hasattr(self.head, "training_outputs") else ["out"]
        return list(head_outputs) + self.aux_names


def feature_info_of(module: nn.Module) -> FeatureInfo:
    """The validated :class:`FeatureInfo` a backbone or neck declares."""
    return FeatureInfo.from_timm(module.feature_info)
