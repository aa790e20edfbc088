"""SAM's prompt encoder: points, boxes and a low-resolution mask -> sparse and dense prompt embeddings.

Points and box corners are encoded with random Fourier features of their normalised coordinates (a fixed Gaussian
projection, ``pe_layer.positional_encoding_gaussian_matrix``) plus a learned embedding per kind (negative point,
positive point, box top-left, box bottom-right, padding). A mask prompt is downscaled by two stride-2 convs to the
image-embedding grid; without one, a learned ``no_mask_embed`` fills the grid. Parameter names follow the official
checkpoints (``prompt_encoder.*``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.layers import LayerNorm2d


class RandomFourierEncoding(nn.Module):
    """Positional encoding of ``[0, 1]``-normalised (x, y) coordinates by a fixed random Gaussian projection."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` coordinates in [0, 1] -> ``[..., 2 * num_pos_feats]`` (sines then cosines)."""
        projected = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix * (2 * math.pi)
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """The encoding of every cell centre of an ``(h, w)`` grid, ``[C, h, w]``."""
        height, width = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)

    def encode_points(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Pixel coordinates ``[B, N, 2]`` (x, y) in an ``(h, w)`` input -> ``[B, N, C]``."""
        if not coords.is_floating_point():
            coords = coords.to(torch.float32)
        scale = torch.tensor([image_size[1], image_size[0]], dtype=coords.dtype, device=coords.device)
        return self.encode((coords / scale).to(torch.float32))


class PromptEncoder(nn.Module):
    """Embeds points, boxes and mask prompts for SAM's mask decoder (official layout and behaviour).

    ``image_embedding_size`` is the encoder's grid (64x64 for a 1024 input), ``input_image_size`` the padded
    model input; mask prompts are ``4 x`` the embedding grid (256x256).
    """

    num_point_embeddings = 4  # negative point, positive point, box top-left, box bottom-right

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int], input_image_size: tuple[int, int],
                 mask_in_chans: int, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            activation(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """The positional encoding of the image-embedding grid, ``[1, C, h, w]``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Points ``[B, N, 2]`` with labels ``[B, N]`` (1 foreground, 0 background, -1 padding) -> ``[B, N(+1), C]``.

        Without a box prompt a padding point is appended (the decoder was trained that way)."""
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        encoded = self.pe_layer.encode_points(coords, self.input_image_size)
        labels = labels[..., None]
        encoded = torch.where(labels == -1, self.not_a_point_embed.weight, encoded)
        encoded = encoded + (labels == 0) * self.point_embeddings[0].weight
        return encoded + (labels == 1) * self.point_embeddings[1].weight

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes ``[B, 4]`` (x0, y0, x1, y1) -> two corner embeddings ``[B, 2, C]``."""
        corners = self.pe_layer.encode_points((boxes + 0.5).reshape(-1, 2, 2), self.input_image_size)
        corner_kind = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return corners + corner_kind

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Mask logits ``[B, 1, 4h, 4w]`` -> dense embeddings ``[B, C, h, w]``."""
        return self.mask_downscaling(masks)

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse embeddings ``[B, N, C]`` (points then box corners) and dense embeddings ``[B, C, h, w]``."""
        batch = points[0].shape[0] if points is not None else boxes.shape[0] if boxes is not None else \
            masks.shape[0] if masks is not None else 1
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty(batch, 0, self.embed_dim, device=device)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return torch.cat(sparse, dim=1), dense
