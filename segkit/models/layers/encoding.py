"""``Encoding`` and ``ContextEncoding``: EncNet's context encoding module (Zhang et al., 2018), as SSSegmentation's
ENCNet builds it (``encnet/encoding.py``, ``encnet/contextencoding.py``; parameter and module names kept).

``Encoding(channels, num_codes)`` learns ``codewords`` ``[K, C]`` and smoothing factors ``scale`` ``[K]``. For the
features ``x_n`` (``n`` over the ``H * W`` positions) it assigns ``a_nk = softmax_k(scale_k * ||x_n - c_k||^2)`` and
aggregates the residuals ``e_k = sum_n a_nk (x_n - c_k)`` -> ``[B, K, C]``. It is computed as ``a^T x - (sum_n a)
c`` with ``||x - c||^2 = |x|^2 - 2 x.c + |c|^2`` instead of SSSegmentation's ``[B, N, K, C]`` expansion (the same
values up to rounding, without the ``B*N*K*C`` temporaries).

``ContextEncoding`` projects (1x1 conv-norm-act), encodes, normalises the ``[B, K, C]`` codes with a 1-d norm over
the K codes (SSSegmentation turns ``norm_cfg.type`` ``XXX2d`` into ``XXX1d``), averages them into ``[B, C]`` (the
encoded feature, also fed to the SE classifier) and rescales the channels of its input:
``relu(x + x * sigmoid(fc(e)))``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .conv_seq import conv_norm_act_seq
from .norm_act import build_act, build_norm


class Encoding(nn.Module):
    """A learnable residual encoder (see the module docstring): ``[B, C, H, W]`` -> ``[B, K, C]``."""

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.channels, self.num_codes = channels, num_codes
        std = 1.0 / ((num_codes * channels) ** 0.5)
        self.codewords = nn.Parameter(torch.empty(num_codes, channels).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f"Encoding: expected [B, {self.channels}, H, W], got {list(x.shape)}")
        feats = x.flatten(2).transpose(1, 2)  # [B, N, C]
        distances = (feats.pow(2).sum(-1, keepdim=True) - 2 * feats @ self.codewords.t()
                     + self.codewords.pow(2).sum(-1))  # [B, N, K]
        assignment = F.softmax(self.scale * distances, dim=2)
        return assignment.transpose(1, 2) @ feats - assignment.sum(1).unsqueeze(2) * self.codewords

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_codes={self.num_codes}"


def encoding_norm_cfg(norm_cfg: dict | None) -> dict | None:
    """The norm of the ``[B, K, C]`` codes: ``norm_cfg`` with ``2d`` -> ``1d`` in its type, as SSSegmentation does.

    ``SyncBatchNorm`` (no ``2d`` in its name; built as a BatchNorm over any shape in SSSegmentation) becomes
    ``BatchNorm1d`` here, segkit's single-process stand-in that the engine converts back under DDP.
    """
    if norm_cfg is None:
        return None
    cfg = copy.deepcopy(norm_cfg)
    if cfg["type"] == "SyncBatchNorm":
        cfg.pop("process_group", None)
        cfg["type"] = "BatchNorm1d"
    else:
        cfg["type"] = cfg["type"].replace("2d", "1d")
    return cfg


class ContextEncoding(nn.Module):
    """``encoding_project`` -> ``encoding`` (Encoding, 1-d norm, act) -> mean over the codes -> ``fc``
    (Linear, Sigmoid) channel gates; ``forward`` returns ``(encoded [B, C], relu(x + x * gates))``."""

    def __init__(self, in_channels: int, num_codes: int, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None) -> None:
        super().__init__()
        self.encoding_project = conv_norm_act_seq(in_channels, in_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.encoding = nn.Sequential(
            Encoding(in_channels, num_codes),
            build_norm(encoding_norm_cfg(norm_cfg), num_codes),
            build_act(act_cfg),
        )
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoding(self.encoding_project(x)).mean(dim=1)
        gates = self.fc(encoded).view(x.size(0), x.size(1), 1, 1)
        return encoded, F.relu(x + x * gates)
