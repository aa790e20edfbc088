"""SAM 2's memory modules (official layout): memory attention and memory encoder.

``MemoryAttention`` conditions the current frame's stride-16 features on the memory bank: each layer is
self-attention (rotary position encoding over the feature grid), cross-attention to the memory tokens (rotary
encoding on the spatial memories, not on the object-pointer tokens at the end) and a ReLU MLP, pre-norm.
``MemoryEncoder`` turns a frame's features and its predicted mask into a 64-channel memory: the mask (after a
sigmoid) is downsampled 16x by strided convs, added to the projected features, fused by two ConvNeXt blocks and
projected. Inference only (no dropout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones.hiera import PositionEmbeddingSine
from ..models.layers import LayerNorm2d
from .transformer import Attention


def axial_rotary_frequencies(dim: int, width: int, height: int, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations ``[width * height, dim // 2]`` for a row-major grid: the first half of the pairs turn
    with the x coordinate, the second half with y."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    index = torch.arange(width * height, dtype=torch.float32)
    xs, ys = (index % width).float(), torch.div(index, width, rounding_mode="floor").float()
    angles = torch.cat([torch.outer(xs, freqs), torch.outer(ys, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` ``[B, heads, N, C]`` by ``freqs`` ``[N, C // 2]``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs).flatten(3).type_as(x)


class RoPEAttention(Attention):
    """Attention with a 2-D rotary position encoding of queries and keys (square grids). With ``rope_k_repeat``
    the keys are several grids long (one per memory frame) and each reuses the queries' rotations; the last
    ``num_k_exclude_rope`` keys (object pointers) are not rotated."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None,
                 rope_theta: float = 10000.0, rope_k_repeat: bool = False) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, kv_in_dim)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self._freqs: dict[tuple[int, torch.device], torch.Tensor] = {}

    def frequencies(self, tokens: int, device: torch.device) -> torch.Tensor:
        key = (tokens, device)
        if key not in self._freqs:
            side = int(math.isqrt(tokens))
            if side * side != tokens:
                raise ValueError(f"rotary attention needs a square grid of queries, got {tokens} tokens")
            self._freqs[key] = axial_rotary_frequencies(self.internal_dim // self.num_heads, side, side,
                                                        self.rope_theta).to(device)
        return self._freqs[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        freqs = self.frequencies(q.shape[-2], q.device)
        q = rotate(q, freqs)
        rotated = k.shape[-2] - num_k_exclude_rope
        if rotated > 0:
            if rotated != q.shape[-2] and not self.rope_k_repeat:
                raise ValueError("keys of another length than the queries need rope_k_repeat")
            key_freqs = freqs.repeat(rotated // q.shape[-2], 1) if rotated != q.shape[-2] else freqs
            k = torch.cat([rotate(k[:, :, :rotated], key_freqs), k[:, :, rotated:]], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        batch, _, tokens, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, self.internal_dim))


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the memory (position encoding added to its keys only) and a
    ReLU MLP (``linear1``/``linear2``)."""

    def __init__(self, d_model: int = 256, dim_feedforward: int = 2048, kv_in_dim: int = 64,
                 rope_theta: float = 10000.0) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, 1, rope_theta=rope_theta)
        self.cross_attn_image = RoPEAttention(d_model, 1, kv_in_dim=kv_in_dim, rope_theta=rope_theta,
                                              rope_k_repeat=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                num_k_exclude_rope: int = 0) -> torch.Tensor:
        normed = self.norm1(tgt)
        tgt = tgt + self.self_attn(normed, normed, normed)
        tgt = tgt + self.cross_attn_image(self.norm2(tgt), memory + pos, memory,
                                          num_k_exclude_rope=num_k_exclude_rope)
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class MemoryAttention(nn.Module):
    """``num_layers`` memory-attention layers and a final LayerNorm. Inputs are sequence-first (``[N, B, C]``,
    as the official model keeps them); ``0.1 x`` the current position encoding is added to the input."""

    def __init__(self, d_model: int = 256, num_layers: int = 4, kv_in_dim: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, kv_in_dim=kv_in_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, curr: torch.Tensor, memory: torch.Tensor, curr_pos: torch.Tensor, memory_pos: torch.Tensor,
                num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        output = (curr + 0.1 * curr_pos).transpose(0, 1)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        for layer in self.layers:
            output = layer(output, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens)
        return self.norm(output).transpose(0, 1)


class MaskDownSampler(nn.Module):
    """A mask ``[B, 1, H, W]`` -> ``[B, embed_dim, H/16, W/16]``: four (conv 3x3 stride 2, LayerNorm2d, GELU)
    steps that multiply the channels by 4, then a 1x1 conv (``encoder.{0..12}``)."""

    def __init__(self, embed_dim: int = 256, kernel_size: int = 3, stride: int = 2, padding: int = 1,
                 total_stride: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(round(math.log(total_stride, stride))):
            out = channels * stride ** 2
            layers += [nn.Conv2d(channels, out, kernel_size, stride, padding), LayerNorm2d(out), nn.GELU()]
            channels = out
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, LayerNorm2d, pointwise MLP (GELU), layer scale ``gamma``, residual."""

    def __init__(self, dim: int = 256, kernel_size: int = 7, padding: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """A frame's stride-16 features + its mask logits -> a memory ``[B, out_dim, h, w]`` and its sine position
    encoding."""

    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.position_encoding = PositionEmbeddingSine(out_dim, normalize=True)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, masks: torch.Tensor,
                skip_mask_sigmoid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        masks = masks if skip_mask_sigmoid else masks.sigmoid()
        x = self.out_proj(self.fuser(self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)))
        return x, self.position_encoding(x).to(x.dtype)
