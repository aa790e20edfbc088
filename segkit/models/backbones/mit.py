"""MixVisionTransformer (MiT, Segformer's encoder; Xie et al. 2021), as SSSegmentation's ``MixVisionTransformer``.

Four stages, each an overlapping patch embedding (a strided convolution + LayerNorm), transformer blocks with
efficient self-attention (keys and values spatially reduced by a ``sr_ratio`` x ``sr_ratio`` strided convolution) and
a Mix-FFN (1x1 conv -> 3x3 depth-wise conv -> GELU -> 1x1 conv), and a LayerNorm; no position embeddings.

Parameter names are mmseg's / SSSegmentation's (``layers.<stage>.0`` patch embedding, ``layers.<stage>.1.<block>``
blocks with ``attn.attn.in_proj_weight`` (``nn.MultiheadAttention``) and ``ffn.layers.0/1/4``, ``layers.<stage>.2``
norm), so checkpoints converted for mmseg load as they are. Checkpoints with the official NVlabs SegFormer names
(``patch_embed1.proj``, ``block1.0.attn.q``/``kv``, ``mlp.fc1``, ``norm1``, ...; SSSegmentation's ``mit_b*.pth``) are
converted while loading (:func:`convert_official_mit_keys`), also by ``load_state_dict``.

``structure_type`` ``mit-b0`` .. ``mit-b5`` implies the architecture (SSSegmentation asserts the same values; here an
explicit argument that disagrees is an error and an omitted one is filled in). The drop rates it implies
(``drop_path_rate`` 0.1) may be overridden: they do not change the weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import CheckpointError
from ...registry import BACKBONES
from ..layers import ArgumentError, build_act, build_norm
from ..pretrained import LoadReport, load_published_weights
from .base import Backbone

PRETRAINED_URLS: dict[str, str] = {
    f"mit-b{i}": f"https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_segformer/mit_b{i}.pth"
    for i in range(6)
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MiT (ImageNet-1k weights with the official SegFormer key names)."""

_ARCHITECTURE = {"embed_dims": 64, "num_stages": 4, "num_heads": [1, 2, 5, 8], "patch_sizes": [7, 3, 3, 3],
                 "sr_ratios": [8, 4, 2, 1], "mlp_ratio": 4, "qkv_bias": True}
STRUCTURES: dict[str, dict] = {
    "mit-b0": {**_ARCHITECTURE, "embed_dims": 32, "num_layers": [2, 2, 2, 2]},
    "mit-b1": {**_ARCHITECTURE, "num_layers": [2, 2, 2, 2]},
    "mit-b2": {**_ARCHITECTURE, "num_layers": [3, 4, 6, 3]},
    "mit-b3": {**_ARCHITECTURE, "num_layers": [3, 4, 18, 3]},
    "mit-b4": {**_ARCHITECTURE, "num_layers": [3, 8, 27, 3]},
    "mit-b5": {**_ARCHITECTURE, "num_layers": [3, 6, 40, 3]},
}
"""The architecture each ``structure_type`` implies (SSSegmentation's ``AUTO_ASSERT_STRUCTURE_TYPES``)."""

STRUCTURE_DROP_RATES = {"drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.1}
"""Drop rates every ``mit-b*`` structure type implies unless given."""

DEFAULTS: dict = {"embed_dims": 64, "num_stages": 4, "num_layers": [3, 4, 6, 3], "num_heads": [1, 2, 4, 8],
                  "patch_sizes": [7, 3, 3, 3], "sr_ratios": [8, 4, 2, 1], "mlp_ratio": 4, "qkv_bias": True,
                  "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.0}
"""SSSegmentation's constructor defaults, used without ``structure_type``."""


# ----------------------------------------------------------------------------------------------- blocks


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: ``projection`` (conv, padding ``kernel_size // 2``) and ``norm`` on the tokens."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int,
                 norm_cfg: dict | None) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = build_norm(norm_cfg, embed_dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.projection(x)
        hw_shape = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw_shape


def tokens_to_nchw(x: torch.Tensor, hw_shape: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw_shape)


class EfficientMultiheadAttention(nn.Module):
    """Self-attention whose keys/values are reduced by a ``sr_ratio``-strided conv (``sr``) and ``norm``."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float, proj_drop: float, drop_path: float,
                 qkv_bias: bool, norm_cfg: dict | None, sr_ratio: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=attn_drop, bias=qkv_bias, batch_first=True)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = build_norm(norm_cfg, embed_dims)

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int], identity: torch.Tensor) -> torch.Tensor:
        x_kv = x
        if self.sr_ratio > 1:
            x_kv = self.norm(self.sr(tokens_to_nchw(x, hw_shape)).flatten(2).transpose(1, 2))
        out = self.attn(query=x, key=x_kv, value=x_kv, need_weights=False)[0]
        return identity + self.dropout_layer(self.proj_drop(out))


class MixFFN(nn.Module):
    """1x1 conv -> 3x3 depth-wise conv -> activation -> 1x1 conv (``layers``), residual with drop path."""

    def __init__(self, embed_dims: int, hidden_channels: int, act_cfg: dict | None, drop: float,
                 drop_path: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(embed_dims, hidden_channels, 1),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1, groups=hidden_channels),
            build_act(act_cfg),
            nn.Dropout(drop),
            nn.Conv2d(hidden_channels, embed_dims, 1),
            nn.Dropout(drop),
        )
        self.dropout_layer = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int], identity: torch.Tensor) -> torch.Tensor:
        out = self.layers(tokens_to_nchw(x, hw_shape)).flatten(2).transpose(1, 2)
        return identity + self.dropout_layer(out)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float, drop_rate: float, attn_drop_rate: float,
                 drop_path_rate: float, qkv_bias: bool, act_cfg: dict | None, norm_cfg: dict | None,
                 sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = build_norm(norm_cfg, embed_dims)
        self.attn = EfficientMultiheadAttention(embed_dims, num_heads, attn_drop_rate, drop_rate, drop_path_rate,
                                                qkv_bias, norm_cfg, sr_ratio)
        self.norm2 = build_norm(norm_cfg, embed_dims)
        self.ffn = MixFFN(embed_dims, int(mlp_ratio * embed_dims), act_cfg, drop_rate, drop_path_rate)

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int]) -> torch.Tensor:
        x = self.attn(self.norm1(x), hw_shape, identity=x)
        return self.ffn(self.norm2(x), hw_shape, identity=x)


# ----------------------------------------------------------------------------------------------- official keys


_OFFICIAL_KEY = re.compile(r"(patch_embed|block|norm)(\d+)\.(.*)")
_BLOCK_RENAMES = (("attn.q.", "attn.attn.in_proj_"), ("attn.proj.", "attn.attn.out_proj."),
                  ("mlp.fc1.", "ffn.layers.0."), ("mlp.dwconv.dwconv.", "ffn.layers.1."), ("mlp.fc2.", "ffn.layers.4."))


def convert_official_mit_keys(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Convert official NVlabs SegFormer MiT keys (under ``prefix``) to this module's layout; others pass unchanged.

    ``q`` and ``kv`` are concatenated into ``attn.in_proj_*``, ``proj`` becomes ``attn.out_proj``, the Mix-FFN's
    linear weights become 1x1 convolutions, and the ImageNet classifier (``head.*``) is dropped.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _OFFICIAL_KEY.fullmatch(key[len(prefix):]) if key.startswith(prefix) else None
        if key.startswith(f"{prefix}head.") or (match and ".attn.kv." in key):
            continue  # the classifier; kv is merged into q's entry
        if match is None:
            converted[key] = value
            continue
        kind, stage, rest = match[1], int(match[2]) - 1, match[3]
        if kind == "patch_embed":
            rest = f"0.{rest.replace('proj.', 'projection.', 1)}"
        elif kind == "norm":
            rest = f"2.{rest}"
        else:
            if ".attn.q." in key:
                value = torch.cat([value, state_dict[key.replace(".attn.q.", ".attn.kv.")]], dim=0)
            elif ".mlp.fc" in key and value.dim() == 2:  # a Linear weight becomes a 1x1 convolution
                value = value[:, :, None, None]
            for official, ours in _BLOCK_RENAMES:
                rest = rest.replace(official, ours)
            rest = f"1.{rest}"
        converted[f"{prefix}layers.{stage}.{rest}"] = value
    return converted


# ----------------------------------------------------------------------------------------------- backbone

MIT_ACT_CFG: dict = {"type": "GELU"}
MIT_NORM_CFG: dict = {"type": "LayerNorm", "eps": 1e-6}
"""SSSegmentation's MiT defaults (never mutated)."""
_TOKEN_UNFIT_NORMS = ("BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm2d", "LocalResponseNorm", "GRN")


def resolve_structure(structure_type: str | None, given: dict) -> dict:
    """The architecture arguments: ``given`` (``None`` = not given) completed by ``structure_type`` or the defaults.

    An explicit architecture argument that disagrees with ``structure_type`` is an :class:`ArgumentError`.
    """
    if structure_type is None:
        return {k: DEFAULTS[k] if v is None else v for k, v in given.items()}
    if structure_type not in STRUCTURES:
        raise ArgumentError("structure_type", f"unknown MixVisionTransformer structure_type '{structure_type}' "
                            f"(expected one of {', '.join(STRUCTURES)})")
    architecture = STRUCTURES[structure_type]
    resolved = {}
    for key, value in given.items():
        implied = architecture.get(key, STRUCTURE_DROP_RATES.get(key))
        if value is None:
            resolved[key] = implied
        elif key in architecture and (list(value) if isinstance(value, list | tuple) else value) != implied:
            raise ArgumentError(key, f"{key}={value} conflicts with structure_type '{structure_type}' "
                                f"({key}={implied}); drop one of them")
        else:
            resolved[key] = value
    return resolved


@BACKBONES.register("MixVisionTransformer")
class MixVisionTransformer(Backbone):
    """MiT encoder (Segformer) returning the stage outputs of ``out_indices`` (SSSegmentation's arguments).

    Stage ``i`` has ``embed_dims * num_heads[i]`` channels and stride ``prod(strides[:i + 1])``. ``norm_cfg`` must
    normalise tokens over their last dimension (LayerNorm); a recipe that leaves it out gets the segmentor's
    BatchNorm, which is refused with a clear error. ``pretrained=True`` loads ``pretrained_model_path`` if given,
    else the official weights of ``structure_type``; both official and mmseg key names load.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        embed_dims: int | None = None,
        num_stages: int | None = None,
        num_layers: tuple[int, ...] | None = None,
        num_heads: tuple[int, ...] | None = None,
        patch_sizes: tuple[int, ...] | None = None,
        strides: tuple[int, ...] = (4, 2, 2, 2),
        sr_ratios: tuple[int, ...] | None = None,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        mlp_ratio: float | None = None,
        qkv_bias: bool | None = None,
        drop_rate: float | None = None,
        attn_drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        act_cfg: dict | None = MIT_ACT_CFG,
        norm_cfg: dict | None = MIT_NORM_CFG,
        use_checkpoint: bool = False,
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        arch = resolve_structure(structure_type, {
            "embed_dims": embed_dims, "num_stages": num_stages, "num_layers": num_layers, "num_heads": num_heads,
            "patch_sizes": patch_sizes, "sr_ratios": sr_ratios, "mlp_ratio": mlp_ratio, "qkv_bias": qkv_bias,
            "drop_rate": drop_rate, "attn_drop_rate": attn_drop_rate, "drop_path_rate": drop_path_rate})
        self._check_arguments(arch, list(strides), out_indices, norm_cfg)
        self.structure_type = structure_type
        self.arch = arch
        self.out_indices = tuple(out_indices)
        self.use_checkpoint = use_checkpoint
        self.layers = nn.ModuleList()
        self.feature_info: list[dict] = []
        self._build_stages(in_channels, list(strides), act_cfg, norm_cfg)
        self._init_weights()
        self.register_load_state_dict_pre_hook(_convert_official_checkpoint)
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    @staticmethod
    def _check_arguments(arch: dict, strides: list[int], out_indices: tuple[int, ...], norm_cfg: dict | None) -> None:
        num_stages = arch["num_stages"]
        for key, values in (("num_layers", arch["num_layers"]), ("num_heads", arch["num_heads"]),
                            ("patch_sizes", arch["patch_sizes"]), ("sr_ratios", arch["sr_ratios"]),
                            ("strides", strides)):
            if len(values) != num_stages:
                raise ArgumentError(key, f"needs one value per stage (num_stages={num_stages}), got {list(values)}")
        if not out_indices or any(i not in range(num_stages) for i in out_indices):
            raise ArgumentError("out_indices", f"must be a non-empty subset of 0..{num_stages - 1}, got {out_indices}")
        norm_type = (norm_cfg or {}).get("type", "")
        if any(name in norm_type for name in _TOKEN_UNFIT_NORMS):
            raise ArgumentError("norm_cfg", f"MixVisionTransformer normalises token sequences (B, N, C); {norm_type} "
                                "does not fit. Set backbone.norm_cfg = {type = \"LayerNorm\", eps = 1e-6}")

    def _build_stages(self, in_channels: int, strides: list[int], act_cfg: dict | None,
                      norm_cfg: dict | None) -> None:
        arch = self.arch
        total = sum(arch["num_layers"])
        drop_paths = [arch["drop_path_rate"] * i / max(total - 1, 1) for i in range(total)]  # as torch.linspace
        first, reduction = 0, 1
        for index, num_layer in enumerate(arch["num_layers"]):
            channels = arch["embed_dims"] * arch["num_heads"][index]
            patch_embed = PatchEmbed(in_channels, channels, arch["patch_sizes"][index], strides[index], norm_cfg)
            blocks = nn.ModuleList(
                TransformerEncoderLayer(channels, arch["num_heads"][index], arch["mlp_ratio"], arch["drop_rate"],
                                        arch["attn_drop_rate"], drop_paths[first + i], arch["qkv_bias"], act_cfg,
                                        norm_cfg, arch["sr_ratios"][index])
                for i in range(num_layer))
            self.layers.append(nn.ModuleList([patch_embed, blocks, build_norm(norm_cfg, channels)]))
            in_channels, first, reduction = channels, first + num_layer, reduction * strides[index]
            if index in self.out_indices:
                self.feature_info.append({"num_chs": channels, "reduction": reduction, "module": f"layers.{index}"})

    def _init_weights(self) -> None:
        """The official initialisation: truncated-normal linear weights, fan-out normal convolutions."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and not module.weight.is_meta:
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention) and not module.in_proj_weight.is_meta:
                nn.init.trunc_normal_(module.in_proj_weight, std=0.02)
                if module.in_proj_bias is not None:
                    nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.Conv2d) and not module.weight.is_meta:
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load ``pretrained_model_path`` or the official weights of ``structure_type`` (official or mmseg keys)."""
        try:
            return load_published_weights(self, urls=PRETRAINED_URLS, structure_type=self.structure_type, pretrained_model_path=pretrained_model_path)
        except RuntimeError as exc:  # shapes that do not fit after the official keys were converted
            raise CheckpointError(f"the MiT weights do not fit this architecture: {exc}") from exc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for index, (patch_embed, blocks, norm) in enumerate(self.layers):
            x, hw_shape = patch_embed(x)
            for block in blocks:
                if self.use_checkpoint and self.training and torch.is_grad_enabled():
                    x = checkpoint(block, x, hw_shape, use_reentrant=False)
                else:
                    x = block(x, hw_shape)
            x = tokens_to_nchw(norm(x), hw_shape)
            if index in self.out_indices:
                outputs.append(x)
            if index == max(self.out_indices):
                break
        return outputs


def _convert_official_checkpoint(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """``load_state_dict`` pre-hook: official SegFormer keys under ``prefix`` are converted in place."""
    if any(key.startswith((f"{prefix}patch_embed1.", f"{prefix}block1.")) for key in state_dict):
        converted = convert_official_mit_keys(state_dict, prefix)
        state_dict.clear()
        state_dict.update(converted)
