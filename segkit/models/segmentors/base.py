"""``EncoderDecoder``: backbone -> head (+ auxiliary heads while training), built from objects.

The forward pass is pure tensors in and out (no losses, no mode strings, no ``.item()``), which is what training,
inference and export all use::

    outputs = segmentor(images)      # {"out": logits at head resolution, "aux": ... only while training}
"""

from __future__ import annotations

import torch
from torch import nn


def aux_output_names(num_aux: int, single: bool) -> list[str]:
    """Output names of the auxiliary heads: ``["aux"]`` for one head given as a table, else ``aux1..auxN``."""
    if num_aux == 0:
        return []
    if single:
        return ["aux"]
    return [f"aux{i}" for i in range(1, num_aux + 1)]


class EncoderDecoder(nn.Module):
    """A segmentor made of a backbone, a decode head and optional auxiliary heads.

    ``selected_indices`` picks (and orders) the backbone outputs the heads see (SSSegmentation's
    ``backbone.selected_indices``; ``None`` keeps them all). The head gets the selected list. ``aux_heads`` is either
    one module (output ``"aux"``, fed the second-to-last selected feature) or an ``nn.ModuleList`` of N modules
    (outputs ``"aux1".."auxN"``, fed ``features[:-1][-N:]``); they run only while training. ``align_corners`` is the
    resize convention inference and losses use with this model's logits.
    """

    head_type: str = ""
    """The head class (registry name) this segmentor's recipe ``head`` table builds; set by subclasses."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        aux_heads: nn.Module | None = None,
        selected_indices: tuple[int, ...] | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        single = aux_heads is not None and not isinstance(aux_heads, nn.ModuleList)
        if single:
            aux_heads = nn.ModuleList([aux_heads])
        self.aux_heads = aux_heads if aux_heads is not None and len(aux_heads) > 0 else None
        self.aux_names: list[str] = aux_output_names(len(aux_heads) if self.aux_heads is not None else 0, single)
        self.selected_indices: list[int] | None = None if selected_indices is None else list(selected_indices)
        self.align_corners = align_corners
        self._norms_frozen = False

    # ----------------------------------------------------------------------------------------------- forward
    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone outputs the heads see (after ``selected_indices``)."""
        features = self.backbone(images)
        if self.selected_indices is not None:
            features = [features[i] for i in self.selected_indices]
        return features

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.extract_features(images)
        outputs = {"out": self.head(features)}
        if self.training and self.aux_heads is not None:
            aux_inputs = features[:-1][-len(self.aux_names):]
            for name, aux_head, feature in zip(self.aux_names, self.aux_heads, aux_inputs, strict=True):
                outputs[name] = aux_head(feature)
        return outputs

    def output_names(self, training: bool = True) -> list[str]:
        """The keys ``forward`` returns in training (``training=True``) or in eval mode."""
        return ["out"] + (self.aux_names if training else [])

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

    def train(self, mode: bool = True) -> EncoderDecoder:
        super().train(mode)
        if self._norms_frozen:
            for module in self._batch_norms():
                module.eval()
        return self

    def _batch_norms(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
