"""Normalization and activation layers, and the factories that build them from ``norm_cfg`` / ``act_cfg``.

The registered names are SSSegmentation's (``NormalizationBuilder`` / ``ActivationBuilder``); torch classes are
registered directly. A ``norm_cfg`` is a table such as ``{"type": "GroupNorm", "num_groups": 32}``: the channel count
is supplied by the layer that uses it, the rest are the class's own arguments, checked against its signature so that
``norm_cfg.momentun`` is reported with its path and a suggestion.

``SyncBatchNorm`` is built as :class:`torch.nn.BatchNorm2d`: a single process cannot synchronise anything, and
``nn.SyncBatchNorm`` refuses to run without a process group. The engine converts every ``BatchNorm*d`` to
``SyncBatchNorm`` (``nn.SyncBatchNorm.convert_sync_batchnorm``) when more than one process trains, which gives
SSSegmentation's behaviour under DDP and plain BatchNorm everywhere else (CPU, one GPU, export).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError
from ...registry import ACTIVATIONS, NORMS

# ----------------------------------------------------------------------------------------------- custom layers


class LayerNorm2d(nn.LayerNorm):
    """Layer normalization over the channels of an NCHW tensor (channels-first LayerNorm)."""

    def __init__(self, num_channels: int, eps: float = 1e-6, elementwise_affine: bool = True, bias: bool = True):
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine, bias=bias)
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt-V2).

    Like the paper, the input is channels-last (NHWC) by default: SSSegmentation 1.7.0 defaults to channels-first and
    its ConvNeXtV2 block, which passes NHWC tensors, crashes (facts §12.1). ``data_format="channels_first"`` accepts
    NCHW tensors.
    """

    def __init__(self, in_channels: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
        self.in_channels = in_channels
        self.eps = eps
        self.data_format = data_format
        self.gamma = nn.Parameter(torch.zeros(in_channels))
        self.beta = nn.Parameter(torch.zeros(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
            return self.gamma * (x * nx) + self.beta + x
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
        return self.gamma.view(1, -1, 1, 1) * (x * nx) + self.beta.view(1, -1, 1, 1) + x


class Swish(nn.Module):
    """``x * sigmoid(x)`` (the same function as SiLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class HardSigmoid(nn.Module):
    """``clamp((x + bias) / divisor, min_value, max_value)``; SSSegmentation's defaults (``bias=1, divisor=2``).

    MobileNetV3-style ``relu6(x + 3) / 6`` is ``bias=3.0, divisor=6.0``.
    """

    def __init__(self, bias: float = 1.0, divisor: float = 2.0, min_value: float = 0.0, max_value: float = 1.0):
        super().__init__()
        if divisor == 0:
            raise ValueError("HardSigmoid: divisor must not be 0")
        self.bias = bias
        self.divisor = divisor
        self.min_value = min_value
        self.max_value = max_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + self.bias) / self.divisor).clamp(self.min_value, self.max_value)


# ----------------------------------------------------------------------------------------------- registration

_STATIC_NORMS: dict[str, type[nn.Module]] = {
    "LayerNorm": nn.LayerNorm,
    "LayerNorm2d": LayerNorm2d,
    "GroupNorm": nn.GroupNorm,
    "LocalResponseNorm": nn.LocalResponseNorm,
    "BatchNorm1d": nn.BatchNorm1d,
    "BatchNorm2d": nn.BatchNorm2d,
    "BatchNorm3d": nn.BatchNorm3d,
    "SyncBatchNorm": nn.SyncBatchNorm,
    "InstanceNorm1d": nn.InstanceNorm1d,
    "InstanceNorm2d": nn.InstanceNorm2d,
    "InstanceNorm3d": nn.InstanceNorm3d,
    "GRN": GRN,
}
_LAZY_NORMS = ("LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
               "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d")

_STATIC_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU,
    "GELU": nn.GELU,
    "ReLU6": nn.ReLU6,
    "PReLU": nn.PReLU,
    "Sigmoid": nn.Sigmoid,
    "HardSwish": nn.Hardswish,  # x * relu6(x + 3) / 6, as SSSegmentation's HardSwish
    "LeakyReLU": nn.LeakyReLU,
    "HardSigmoid": HardSigmoid,
    "Swish": Swish,
}
_TORCH_ACTIVATIONS = ("ELU", "Hardshrink", "Hardtanh", "LogSigmoid", "RReLU", "SELU", "CELU", "SiLU", "GLU",
                      "Mish", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold")

for _name, _cls in _STATIC_NORMS.items():
    NORMS.register(_name, _cls)
for _name in _LAZY_NORMS:
    if hasattr(nn, _name):
        NORMS.register(_name, getattr(nn, _name))
for _name, _cls in _STATIC_ACTIVATIONS.items():
    ACTIVATIONS.register(_name, _cls)
for _name in _TORCH_ACTIVATIONS:
    if hasattr(nn, _name):
        ACTIVATIONS.register(_name, getattr(nn, _name))


# ----------------------------------------------------------------------------------------------- factories


def norm_channel_argument(name: str, path: str = "norm_cfg.type") -> str | None:
    """The constructor argument that receives the channel count (``None`` for lazy norms, which infer it)."""
    cls = NORMS.get(name, path=path)
    if name.startswith("Lazy"):
        return None
    if cls is nn.GroupNorm:
        return "num_channels"
    params = list(NORMS.parameters(name))
    return params[0] if params else None


def validate_norm_cfg(norm_cfg: dict | None, path: str = "norm_cfg") -> dict | None:
    """Check a ``norm_cfg`` table against its class; return the coerced keyword arguments (``None`` for no norm)."""
    if norm_cfg is None:
        return None
    if not isinstance(norm_cfg, dict):
        raise RecipeError(path, f"expected a table such as {{type = \"BatchNorm2d\"}}, got {norm_cfg!r}")
    channel_arg = norm_channel_argument(norm_cfg.get("type", ""), path=f"{path}.type") if "type" in norm_cfg else None
    if channel_arg is not None and channel_arg in norm_cfg:
        raise RecipeError(f"{path}.{channel_arg}", "the channel count is set by the layer using the norm; remove it")
    return NORMS.validate(norm_cfg, path, provided=(channel_arg,) if channel_arg else ())


def validate_act_cfg(act_cfg: dict | None, path: str = "act_cfg") -> dict | None:
    """Check an ``act_cfg`` table against its class; return the coerced keyword arguments (``None`` for identity)."""
    if act_cfg is None:
        return None
    if not isinstance(act_cfg, dict):
        raise RecipeError(path, f"expected a table such as {{type = \"ReLU\"}}, got {act_cfg!r}")
    return ACTIVATIONS.validate(act_cfg, path)


def build_norm(norm_cfg: dict | None, channels: int, path: str = "norm_cfg") -> nn.Module:
    """Build the normalization layer ``norm_cfg`` names for ``channels`` channels (``None`` -> ``nn.Identity``).

    ``GroupNorm`` receives ``num_channels=channels``, lazy norms nothing, the others ``channels`` as their first
    argument (as SSSegmentation's ``BuildNormalization``). ``SyncBatchNorm`` builds ``nn.BatchNorm2d`` (see the module
    docstring: the engine converts it when several processes train).
    """
    kwargs = validate_norm_cfg(norm_cfg, path)
    if kwargs is None:
        return nn.Identity()
    name = norm_cfg["type"]
    kwargs = copy.deepcopy(kwargs)
    channel_arg = norm_channel_argument(name)
    if channel_arg is not None:
        kwargs[channel_arg] = channels
    if name == "SyncBatchNorm":
        kwargs.pop("process_group", None)
        return nn.BatchNorm2d(**kwargs)
    return NORMS.get(name)(**kwargs)


def build_act(act_cfg: dict | None, path: str = "act_cfg") -> nn.Module:
    """Build the activation ``act_cfg`` names (``None`` -> ``nn.Identity``)."""
    kwargs = validate_act_cfg(act_cfg, path)
    if kwargs is None:
        return nn.Identity()
    return ACTIVATIONS.get(act_cfg["type"])(**copy.deepcopy(kwargs))


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (used for weight-decay rules and freezing)."""
    norm_types = tuple(cls for cls in (NORMS.get(n) for n in NORMS.names()) if isinstance(cls, type))
    return isinstance(module, norm_types)
