"""``TIMMBackbone``: any timm model as a feature-pyramid backbone (``timm.create_model(..., features_only=True)``)."""

from __future__ import annotations

import os

import torch

from ...errors import did_you_mean
from ...registry import BACKBONES
from ..layers import ArgumentError
from ..pretrained import loading_skipped
from .base import Backbone


@BACKBONES.register("TIMMBackbone")
class TIMMBackbone(Backbone):
    """A timm model returning its feature maps (SSSegmentation's ``TIMMBackbone`` arguments).

    ``pretrained=True`` loads timm's default weights (downloaded by timm); ``pretrained_model_path`` loads a local
    checkpoint of the *plain* timm model (classifier keys are dropped, ``in_channels`` != 3 adapts the stem, as timm's
    own pretrained loading does), whatever ``pretrained`` says, as in SSSegmentation. ``out_indices`` selects timm's
    feature levels (``None``: timm's default, usually all); outputs are NCHW even for models timm returns as NHWC
    (Swin). ``extra_args`` go to ``timm.create_model`` as they are.
    ``structure_type`` is a free label (SSSegmentation uses it for bookkeeping only).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        model_name: str = "",
        features_only: bool = True,
        pretrained: bool = False,
        pretrained_model_path: str = "",
        in_channels: int = 3,
        out_indices: tuple[int, ...] | None = None,
        extra_args: dict | None = None,
    ) -> None:
        super().__init__()
        import timm

        if not features_only:
            raise ArgumentError("features_only", "segkit backbones return feature maps; features_only must be true")
        if not timm.is_model(model_name):
            hint = did_you_mean(model_name, timm.list_models())
            raise ArgumentError("model_name", f"unknown timm model '{model_name}'{hint} (see timm.list_models())")
        if pretrained_model_path and not os.path.isfile(pretrained_model_path):
            raise ArgumentError("pretrained_model_path", f"no such file: {pretrained_model_path}")
        kwargs = dict(extra_args or {})
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        load = (pretrained or bool(pretrained_model_path)) and not loading_skipped()
        if load and pretrained_model_path:
            kwargs["pretrained_cfg_overlay"] = {"file": pretrained_model_path}
        self.structure_type = structure_type
        self.model_name = model_name
        self.timm_model = timm.create_model(
            model_name, features_only=True, pretrained=load, in_chans=in_channels, **kwargs
        )
        output_fmt = getattr(self.timm_model, "output_fmt", "NCHW")
        self.channels_last_output = str(getattr(output_fmt, "value", output_fmt)) == "NHWC"
        self.feature_info: list[dict] = [
            {"num_chs": int(info["num_chs"]), "reduction": int(info["reduction"]), "module": str(info["module"])}
            for info in self.timm_model.feature_info.get_dicts()
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = list(self.timm_model(x))
        if self.channels_last_output:  # e.g. Swin: timm returns NHWC, the contract is NCHW
            features = [f.permute(0, 3, 1, 2) for f in features]
        return features
