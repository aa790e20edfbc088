"""SAM's mask decoder: an IoU token and ``num_multimask_outputs + 1`` mask tokens run through the two-way
transformer with the prompt tokens; each mask token's MLP gives the weights of a dot product with the upscaled image
embedding (a mask at 4x the embedding grid), the IoU token's MLP a quality score per mask. Official layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import LayerNorm2d
from .transformer import TwoWayTransformer


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between (``layers.{i}``), optionally a sigmoid at the end."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 sigmoid_output: bool = False) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x.sigmoid() if self.sigmoid_output else x


class MaskDecoder(nn.Module):
    """SAM's decoder. ``forward`` returns low-resolution mask logits ``[B, M, 4h, 4w]`` and IoU predictions
    ``[B, M]``, with ``M = num_multimask_outputs`` when ``multimask_output`` (tokens 1..) and 1 otherwise (token 0).

    Each decoded prompt set is one row of the batch; the image embedding (one image) is broadcast to the rows.
    """

    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 activation: type[nn.Module] = nn.GELU, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4), activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2), activation())
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def output_tokens(self) -> torch.Tensor:
        """The learned output tokens put before the prompt tokens, ``[T, C]``."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou_pred[:, selected]

    def run_transformer(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                        dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens out ``[B, T+N, C]`` and the image embedding after the transformer, back to ``[B, C, h, w]``."""
        tokens = torch.cat([self.output_tokens()[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)
        src = image_embeddings.expand(tokens.shape[0], -1, -1, -1) if image_embeddings.shape[0] == 1 else \
            torch.repeat_interleave(image_embeddings, tokens.shape[0] // image_embeddings.shape[0], dim=0)
        src = src + dense
        pos = image_pe.expand(tokens.shape[0], -1, -1, -1)
        batch, channels, height, width = src.shape
        hs, src = self.transformer(src, pos, tokens)
        return hs, src.transpose(1, 2).reshape(batch, channels, height, width)

    def hyper_masks(self, mask_tokens_out: torch.Tensor, upscaled: torch.Tensor) -> torch.Tensor:
        """Per mask token, its MLP's output dotted with the upscaled embedding: ``[B, M, H, W]``."""
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                               dim=1)
        batch, channels, height, width = upscaled.shape
        return (hyper_in @ upscaled.reshape(batch, channels, height * width)).reshape(batch, -1, height, width)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                      dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks and IoU predictions."""
        hs, src = self.run_transformer(image_embeddings, image_pe, sparse, dense)
        masks = self.hyper_masks(hs[:, 1:1 + self.num_mask_tokens], self.output_upscaling(src))
        return masks, self.iou_prediction_head(hs[:, 0])
