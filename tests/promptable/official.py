"""Helpers for the parity tests against the official packages (segment-anything, segment-anything-hq, sam2).

Only used by tests marked ``official``; those packages live in the parity environment (``nox -s
promptable_parity``), never in segkit's dependencies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

VIT_B = {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12,
         "encoder_global_attn_indexes": (2, 5, 8, 11)}


def build_official_sam(image_size: int, package: str = "segment_anything", **vit) -> nn.Module:
    """The official SAM (ViT-B unless ``vit`` says otherwise) at ``image_size``, as its ``_build_sam`` builds it
    (that function fixes 1024; the parts take any size)."""
    modeling = __import__(f"{package}.modeling", fromlist=["Sam"])
    vit = {**VIT_B, **vit}
    grid = image_size // 16
    encoder = modeling.ImageEncoderViT(
        depth=vit["encoder_depth"], embed_dim=vit["encoder_embed_dim"], img_size=image_size, mlp_ratio=4,
        norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6), num_heads=vit["encoder_num_heads"], patch_size=16,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=vit["encoder_global_attn_indexes"], window_size=14,
        out_chans=256)
    prompt = modeling.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                    input_image_size=(image_size, image_size), mask_in_chans=16)
    transformer = modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)
    if package == "segment_anything_hq":
        decoder = modeling.MaskDecoderHQ(num_multimask_outputs=3, transformer=transformer, transformer_dim=256,
                                         iou_head_depth=3, iou_head_hidden_dim=256, vit_dim=vit["encoder_embed_dim"])
    else:
        decoder = modeling.MaskDecoder(num_multimask_outputs=3, transformer=transformer, transformer_dim=256,
                                       iou_head_depth=3, iou_head_hidden_dim=256)
    sam = modeling.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
                       pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and float buffer random values of a sensible scale (the official inits leave
    position embeddings and relative tables at zero, which would hide layout mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not tensor.is_floating_point() or name.endswith(("pixel_mean", "pixel_std")):
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):  # BatchNorm statistics: variances stay positive
            tensor.copy_(0.5 + noise.abs())
        elif tensor.ndim == 1 and name.endswith("weight"):  # norm scales
            tensor.copy_(1.0 + 0.1 * noise)
        elif tensor.ndim <= 1:
            tensor.copy_(0.05 * noise)
        elif "positional_encoding_gaussian_matrix" in name:
            tensor.copy_(noise)
        else:
            fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
            tensor.copy_(noise / math.sqrt(max(fan_in, 1)))
    return module


def build_official_tiny(hq: bool) -> nn.Module:
    """SAM-HQ's tiny model (``hq``) or MobileSAM: segment-anything-hq's TinyViT-5M (the code of the MobileSAM
    repository) with the HQ decoder, or with segment-anything's plain decoder as MobileSAM's ``build_sam_vit_t``."""
    from segment_anything_hq import sam_model_registry

    tiny = sam_model_registry["vit_tiny"]()
    if hq:
        return tiny.eval()
    from segment_anything.modeling import MaskDecoder, Sam, TwoWayTransformer

    encoder = tiny.image_encoder
    encoder.forward = lambda x: type(encoder).forward(encoder, x)[0]  # MobileSAM's TinyViT returns the map alone
    decoder = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                          mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    return Sam(image_encoder=encoder, prompt_encoder=tiny.prompt_encoder, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()
