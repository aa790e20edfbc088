"""SAM-HQ: SAM plus a high-quality output token whose mask reads fused early and final image features.

The HQ token (``hf_token``, with its own MLP ``hf_mlp``) is decoded with SAM's tokens; its mask is the dot product
with ``embedding_maskfeature(upscaled SAM features) + embedding_encoder(image embedding) +
compress_vit_feat(early encoder features)``, the early features being the output of the encoder's first
global-attention block (ViT) or of TinyViT's second stage (the tiny model). The result is SAM's mask (the best of
the three multimask outputs, or token 0) plus the HQ mask, or the HQ mask alone with ``hq_token_only``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.layers import LayerNorm2d
from .checkpoint import IGNORED_CHECKPOINT_KEYS
from .mask_decoder import MLP, MaskDecoder
from .mobilesam import CLASSIFIER_KEYS, tiny_vit_encoder
from .models import check_image_size, sam_prompt_encoder, sam_vit_encoder
from .registry import CHECKPOINT_URLS, PROMPTABLES
from .sam import ImageEmbedding, Sam
from .transformer import TwoWayTransformer


def _upscale(in_channels: int, mid: int, out: int) -> nn.Sequential:
    """Two stride-2 transposed convs (x4), LayerNorm2d + GELU between."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, mid, 2, 2), LayerNorm2d(mid), nn.GELU(),
                         nn.ConvTranspose2d(mid, out, 2, 2))


class MaskDecoderHQ(MaskDecoder):
    """SAM's decoder with the HQ output token and feature fusion (official ``MaskDecoderHQ`` layout)."""

    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, vit_dim: int, **kwargs) -> None:
        super().__init__(transformer_dim, transformer, **kwargs)
        self.hf_token = nn.Embedding(1, transformer_dim)
        self.hf_mlp = MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
        self.compress_vit_feat = _upscale(vit_dim, transformer_dim, transformer_dim // 8)
        self.embedding_encoder = _upscale(transformer_dim, transformer_dim // 4, transformer_dim // 8)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(transformer_dim // 8, transformer_dim // 4, 3, 1, 1), LayerNorm2d(transformer_dim // 4),
            nn.GELU(), nn.Conv2d(transformer_dim // 4, transformer_dim // 8, 3, 1, 1))

    def output_tokens(self) -> torch.Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight], dim=0)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool, hq_token_only: bool = False,
                interm_embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt set: SAM's (best multimask by predicted IoU, or token 0) + HQ, or HQ alone."""
        hq_features = self.embedding_encoder(image_embeddings) + self.compress_vit_feat(interm_embeddings)
        hs, src = self.run_transformer(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        upscaled = self.output_upscaling(src)
        sam_masks = self.hyper_masks(hs[:, 1:1 + self.num_mask_tokens], upscaled)
        hq_input = self.embedding_maskfeature(upscaled) + hq_features.expand(upscaled.shape[0], -1, -1, -1)
        hq_weights = self.hf_mlp(hs[:, 1 + self.num_mask_tokens])[:, None]
        batch, channels, height, width = hq_input.shape
        hq_mask = (hq_weights @ hq_input.reshape(batch, channels, height * width)).reshape(batch, 1, height, width)
        iou = self.iou_prediction_head(hs[:, 0])
        if multimask_output:
            iou, best = iou[:, 1:].max(dim=1, keepdim=True)
            sam_mask = sam_masks[:, 1:].gather(1, best[:, :, None, None].expand(-1, -1, height, width))
        else:
            iou, sam_mask = iou[:, :1], sam_masks[:, :1]
        return (hq_mask if hq_token_only else sam_mask + hq_mask), iou


class SamHQ(Sam):
    """SAM-HQ: keeps the encoder's early features (``early_feature_module``'s output) for the HQ decoder."""

    def __init__(self, *args, early_feature_module: str, channels_last: bool, hq_token_only: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.early_feature_module = early_feature_module
        self.channels_last = channels_last  # ViT blocks give NHWC maps
        self.hq_token_only = hq_token_only

    def run_encoder(self, images: torch.Tensor) -> ImageEmbedding:
        captured: list[torch.Tensor] = []
        module = self.image_encoder.get_submodule(self.early_feature_module)
        handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output))
        try:
            embedding = self.image_encoder(images)[-1]
        finally:
            handle.remove()
        early = captured[0].permute(0, 3, 1, 2) if self.channels_last else captured[0]
        return ImageEmbedding(embedding, {"interm_embeddings": early})

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask_output: bool = True,
               hq_token_only: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`Sam.decode`, returning one mask per prompt set (``hq_token_only``: the HQ mask alone)."""
        sparse, dense = self.prompt_encoder(None if points is None else (points, point_labels), boxes, mask_input)
        hq_only = self.hq_token_only if hq_token_only is None else hq_token_only
        return self.mask_decoder(embedding.image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output, hq_only, embedding.extras["interm_embeddings"])


def _hq_decoder(vit_dim: int) -> MaskDecoderHQ:
    transformer = TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)
    return MaskDecoderHQ(256, transformer, vit_dim=vit_dim, num_multimask_outputs=3)


def _build_vit(structure_type: str, image_size: int) -> SamHQ:
    check_image_size(image_size)
    encoder = sam_vit_encoder(structure_type, image_size)
    first_global = encoder.blocks[[i for i, b in enumerate(encoder.blocks) if b.window_size == 0][0]]
    name = [n for n, m in encoder.named_modules() if m is first_global][0]
    return SamHQ(encoder, sam_prompt_encoder(image_size), _hq_decoder(encoder.embed_dim), image_size=image_size,
                 early_feature_module=name, channels_last=True).eval()


@PROMPTABLES.register("sam_hq_vit_b")
def sam_hq_vit_b(image_size: int = 1024) -> SamHQ:
    """SAM-HQ with the ViT-B image encoder."""
    return _build_vit("sam_vit_b", image_size)


@PROMPTABLES.register("sam_hq_vit_l")
def sam_hq_vit_l(image_size: int = 1024) -> SamHQ:
    """SAM-HQ with the ViT-L image encoder."""
    return _build_vit("sam_vit_l", image_size)


@PROMPTABLES.register("sam_hq_vit_h")
def sam_hq_vit_h(image_size: int = 1024) -> SamHQ:
    """SAM-HQ with the ViT-H image encoder."""
    return _build_vit("sam_vit_h", image_size)


@PROMPTABLES.register("sam_hq_vit_tiny")
def sam_hq_vit_tiny(image_size: int = 1024) -> SamHQ:
    """Light HQ-SAM: MobileSAM's TinyViT-5M encoder with the HQ decoder (early features: TinyViT's stage 2)."""
    check_image_size(image_size, 32)
    return SamHQ(tiny_vit_encoder(image_size), sam_prompt_encoder(image_size), _hq_decoder(160),
                 image_size=image_size, early_feature_module="layers.1", channels_last=False).eval()


_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
CHECKPOINT_URLS.update({f"sam_hq_vit_{size}": f"{_HQ}sam_hq_vit_{size}.pth" for size in ("b", "l", "h", "tiny")})
IGNORED_CHECKPOINT_KEYS["sam_hq_vit_tiny"] = CLASSIFIER_KEYS
