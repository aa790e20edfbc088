"""``Feature2Pyramid`` as a neck: same-stride ViT maps (BEiT, MAE) -> a 4-level pyramid for UPerNet."""

from __future__ import annotations

from ...registry import NECKS
from ..layers.feature2pyramid import _GELU, _SYNC_BN
from ..layers.feature2pyramid import Feature2Pyramid as _Feature2Pyramid


@NECKS.register("Feature2Pyramid")
class Feature2PyramidNeck(_Feature2Pyramid):
    """Rescale each input map (4 -> x4 by two 2x2 deconvolutions, 2 -> x2, 1 -> as is, 0.5 / 0.25 -> max pooling);
    SSSegmentation's ``head.feature2pyramid``. ``in_channels`` are derived; each must equal ``embed_dim``. The
    recipe's ``norm_cfg`` is inherited; the activation between the deconvolutions stays GELU (as SSSegmentation)."""

    inherit_cfgs = ("norm_cfg",)

    def __init__(self, in_channels: list[int], embed_dim: int, rescales: tuple[float, ...] = (4, 2, 1, 0.5),
                 norm_cfg: dict | None = _SYNC_BN, act_cfg: dict | None = _GELU,
                 in_strides: list[int] | None = None) -> None:
        super().__init__(embed_dim, rescales, norm_cfg=norm_cfg, act_cfg=act_cfg)
        from ..layers import ArgumentError

        if len(in_channels) != len(self.rescales) or any(c != embed_dim for c in in_channels):
            raise ArgumentError("embed_dim", f"Feature2Pyramid rescales {len(self.rescales)} maps of embed_dim="
                                f"{embed_dim} channels; it receives {in_channels}")
        strides = in_strides or [16] * len(in_channels)
        self.feature_info = self.describe([{"num_chs": c, "reduction": s, "module": ""}
                                           for c, s in zip(in_channels, strides, strict=True)])
