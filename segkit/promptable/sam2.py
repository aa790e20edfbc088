"""SAM 2 / SAM 2.1 as image models: ``sam2_hiera_{tiny,small,base_plus,large}`` and ``sam2.1_hiera_*``.

What differs from SAM (after the SAM 2 paper and the authors' ``sam2`` package, reimplemented here):

* the image encoder is Hiera + an FPN neck (segkit's ``HieraWithFPN`` backbone); the lowest-resolution level is
  dropped (``scalp = 1``) and the stride-16 map is the image embedding, with the learned ``no_mem_embed`` added
  (an image has no memory);
* the two highest-resolution FPN maps, projected once per image by the decoder's ``conv_s0``/``conv_s1``, are
  added inside the decoder's upscaling path;
* the decoder has an object-score token and head, predicts IoU through a sigmoid, and with one output asked for
  falls back to the best of the three multimask outputs when the single mask is unstable;
* a box is given to the prompt encoder as two labelled points (labels 2 and 3) before the clicks, and a padding
  point is always appended;
* the image is resized to an ``image_size`` square (not long side + padding), scaled to [0, 1] and normalised
  with the ImageNet mean and std; masks are resized straight back to the original size.

The video model's memory modules (memory attention and encoder, object pointers, temporal encodings;
:mod:`.sam2_memory`) are built too, so every key of the official checkpoints loads strictly; the image predictor
does not run them.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones.hiera import PRETRAINED_URLS as SAM2_URLS
from ..models.backbones.hiera import STRUCTURE_ARGUMENTS as SAM2_TRUNKS
from ..models.backbones.hiera import HieraWithFPN
from .mask_decoder import MLP, MaskDecoder
from .models import EMBED_DIM, check_image_size
from .predictor import SamPredictor
from .prompt_encoder import PromptEncoder
from .registry import CHECKPOINT_URLS, PROMPTABLES
from .sam import ImageEmbedding, Sam
from .transformer import TwoWayTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOW_RES_CLAMP = 32.0
"""The predictor clamps the low-resolution logits it returns to +-32 (as the official one)."""



class SquareResize:
    """SAM 2's input frame: the image is stretched to an ``size`` square, so (x, y) scale by ``size / (w, h)``."""

    def __init__(self, size: int) -> None:
        self.target_length = size

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        height, width = original_size
        coords = np.array(coords, dtype=np.float32, copy=True)
        coords[..., 0] = coords[..., 0] / width
        coords[..., 1] = coords[..., 1] / height
        return coords * self.target_length

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        height, width = original_size
        scale = torch.tensor([width, height], dtype=torch.float32, device=coords.device)
        return coords.to(torch.float32) / scale * self.target_length

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """A ``[B, C, H, W]`` float batch -> the square (bilinear with antialiasing, torchvision's ``Resize``)."""
        from torchvision.transforms.functional import resize

        return resize(image, [self.target_length, self.target_length], antialias=True)


class Sam2PromptEncoder(PromptEncoder):
    """SAM's prompt encoder, with box corners also accepted as points labelled 2 (top-left) and 3 (bottom-right)."""

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        encoded = super().embed_points(coords, labels, pad)
        if pad:
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        labels = labels[..., None]
        encoded = encoded + (labels == 2) * self.point_embeddings[2].weight
        return encoded + (labels == 3) * self.point_embeddings[3].weight


class Sam2MaskDecoder(MaskDecoder):
    """SAM 2's mask decoder (official layout ``sam_mask_decoder.*``): SAM's plus ``obj_score_token`` (put first),
    ``pred_obj_score_head``, ``conv_s0``/``conv_s1`` for the high-resolution features, a sigmoid IoU head and
    the dynamic fallback to the best multimask output when the single-mask output is unstable."""

    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 stability_delta: float = 0.05, stability_thresh: float = 0.98,
                 dynamic_multimask_via_stability: bool = True) -> None:
        super().__init__(transformer_dim, transformer, num_multimask_outputs)
        self.iou_prediction_head.sigmoid_output = True
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def output_tokens(self) -> torch.Tensor:
        return torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool,
                high_res_features: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Low-resolution logits ``[B, M, 4h, 4w]``, IoU predictions ``[B, M]`` and object-score logits
        ``[B, 1]`` (positive: the object is in the image)."""
        masks, iou_pred, _, object_scores = self.decode_all(image_embeddings, image_pe, sparse_prompt_embeddings,
                                                            dense_prompt_embeddings, multimask_output,
                                                            high_res_features)
        return masks, iou_pred, object_scores

    def decode_all(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                   dense_prompt_embeddings: torch.Tensor, multimask_output: bool,
                   high_res_features: list[torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`forward`, plus the mask output tokens ``[B, M', C]`` that give the video model's object
        pointers: tokens 1-3 with ``multimask_output``, else token 0 (even where the dynamic fallback chose
        another mask)."""
        hs, src = self.run_transformer(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        if high_res_features is None:
            upscaled = self.output_upscaling(src)
        else:
            feat_s0, feat_s1 = high_res_features
            upscaled = act2(deconv2(act1(norm1(deconv1(src) + feat_s1))) + feat_s0)
        tokens = hs[:, 2:2 + self.num_mask_tokens]
        masks = self.hyper_masks(tokens, upscaled)
        iou_pred = self.iou_prediction_head(hs[:, 1])
        object_scores = self.pred_obj_score_head(hs[:, 0])
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:], tokens[:, 1:], object_scores
        if self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self.stable_single_mask(masks, iou_pred)
            return masks, iou_pred, tokens[:, :1], object_scores
        return masks[:, :1], iou_pred[:, :1], tokens[:, :1], object_scores

    def stability(self, logits: torch.Tensor) -> torch.Tensor:
        """Area above ``+delta`` over area above ``-delta`` per mask (1 for an empty mask)."""
        flat = logits.flatten(-2)
        inner = (flat > self.stability_delta).sum(-1).float()
        outer = (flat > -self.stability_delta).sum(-1).float()
        return torch.where(outer > 0, inner / outer, 1.0)

    def stable_single_mask(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token 0's mask where it is stable, else the multimask output with the highest predicted IoU."""
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = iou_pred[:, 1:].argmax(dim=-1) + 1
        stable = self.stability(masks[:, 0]) >= self.stability_thresh
        chosen = torch.where(stable, torch.zeros_like(best), best)
        return masks[rows, chosen][:, None], iou_pred[rows, chosen][:, None]


class Sam2(Sam):
    """SAM 2 for images: ``image_encoder`` (``HieraWithFPN``, ``scalp = 1``), ``prompt_encoder``,
    ``mask_decoder`` and ``no_mem_embed``. The official checkpoint names (``sam_prompt_encoder``,
    ``sam_mask_decoder``, SAM 2's ``mlp.layers.{0,1}``) are converted on load."""

    def __init__(self, image_encoder: HieraWithFPN, prompt_encoder: Sam2PromptEncoder,
                 mask_decoder: Sam2MaskDecoder, image_size: int = 1024, version: str = "sam2.1",
                 num_maskmem: int = 7, mem_dim: int = 64) -> None:
        super().__init__(image_encoder, prompt_encoder, mask_decoder, image_size=image_size,
                         pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD)
        from .sam2_memory import MemoryAttention, MemoryEncoder

        hidden = prompt_encoder.embed_dim
        self.version = version
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        # the video model's memory (official names); the image predictor uses none of it
        self.memory_attention = MemoryAttention(hidden, num_layers=4, kv_in_dim=mem_dim)
        self.memory_encoder = MemoryEncoder(hidden, mem_dim)
        self.num_maskmem = num_maskmem
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, mem_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden))
        self.obj_ptr_proj = MLP(hidden, hidden, hidden, 3)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_tpos_proj: nn.Module = nn.Identity()
        self.no_obj_embed_spatial: nn.Parameter | None = None
        if version == "sam2.1":  # SAM 2.1: projected temporal encoding of object pointers, no-object memory
            self.obj_ptr_tpos_proj = nn.Linear(hidden, mem_dim)
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))

    predictor_class = None  # set below (Sam2Predictor)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` images with values 0-255 (already resized to the square) -> normalised input."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"SAM 2 encodes {self.image_size}x{self.image_size} inputs, got "
                             f"{tuple(images.shape[-2:])}")
        return (images / 255.0 - self.pixel_mean) / self.pixel_std

    def run_encoder(self, images: torch.Tensor) -> ImageEmbedding:
        """Normalised ``[B, 3, S, S]`` -> the stride-16 embedding (plus ``no_mem_embed``) and the projected
        stride-4 and stride-8 maps (``extras["high_res_features"]``)."""
        stride4, stride8, stride16 = self.image_encoder(images)
        embedding = stride16 + self.no_mem_embed.reshape(1, -1, 1, 1)
        high_res = [self.mask_decoder.conv_s0(stride4), self.mask_decoder.conv_s1(stride8)]
        return ImageEmbedding(embedding, {"high_res_features": high_res})

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask_output: bool = True,
               return_object_scores: bool = False):
        """As :meth:`Sam.decode` (``[B, M, 4h, 4w]`` logits, ``[B, M]`` IoU); with ``return_object_scores`` also
        the object-score logits ``[B, 1]``. A box becomes two points labelled 2 and 3, put before the clicks."""
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2).to(torch.float32)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=corners.device).repeat(len(corners), 1)
            if points is not None:
                points = torch.cat([corners, points], dim=1)
                point_labels = torch.cat([corner_labels, point_labels.to(torch.int32)], dim=1)
            else:
                points, point_labels = corners, corner_labels
        sparse, dense = self.prompt_encoder(None if points is None else (points, point_labels), None, mask_input)
        high_res = embedding.extras["high_res_features"]
        masks, iou, object_scores = self.mask_decoder(embedding.image_embeddings, self.prompt_encoder.get_dense_pe(),
                                                      sparse, dense, multimask_output, high_res)
        return (masks, iou, object_scores) if return_object_scores else (masks, iou)

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """Low-resolution logits -> the original size in one bilinear resize (the input was a stretched square)."""
        return F.interpolate(masks.float(), tuple(original_size), mode="bilinear", align_corners=False)

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official SAM 2 names -> this module's: ``sam_prompt_encoder``/``sam_mask_decoder`` ->
        ``prompt_encoder``/``mask_decoder``, the trunk's and the decoder transformer's ``mlp.layers.{0,1}`` ->
        ``mlp.fc{1,2}`` / ``mlp.lin{1,2}``."""
        out = {}
        for key, value in state_dict.items():
            key = re.sub(r"^sam_(prompt_encoder|mask_decoder)\.", r"\1.", key)
            if key.startswith("image_encoder.trunk."):
                key = re.sub(r"\.mlp\.layers\.([01])\.", lambda m: f".mlp.fc{int(m.group(1)) + 1}.", key)
            elif key.startswith("mask_decoder.transformer."):
                key = re.sub(r"\.mlp\.layers\.([01])\.", lambda m: f".mlp.lin{int(m.group(1)) + 1}.", key)
            out[key] = value
        return out


class Sam2Predictor(SamPredictor):
    """``SamPredictor`` for SAM 2 (``SamPredictor(model)`` returns one for a :class:`Sam2`): the image is
    stretched to the model's square as the official ``SAM2ImagePredictor`` does; prompts are scaled by the same
    factors; the returned low-resolution logits are clamped to +-32."""

    def __init__(self, model: Sam2) -> None:
        super().__init__(model)
        self.transform = SquareResize(model.image_size)

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode ``image`` (HWC uint8, RGB or BGR)."""
        image = self._checked_image(image, image_format)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(torch.float32).div(255)
        resized = self.transform.apply_image_torch(tensor[None].to(self.device))
        normalised = (resized - self.model.pixel_mean) / self.model.pixel_std
        self.reset_image()
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = (self.model.image_size, self.model.image_size)
        with torch.no_grad():
            self.embedding = self.model.run_encoder(normalised)
        self.is_image_set = True

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                      return_logits=False, **decode_options):
        masks, iou, low_res = super().predict_torch(point_coords, point_labels, boxes, mask_input,
                                                    multimask_output, return_logits, **decode_options)
        return masks, iou, low_res.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)


Sam2.predictor_class = Sam2Predictor

_NECK_CHANNELS = {96: [768, 384, 192, 96], 112: [896, 448, 224, 112], 144: [1152, 576, 288, 144]}


def sam2_image_encoder(structure_type: str, **trunk_overrides) -> HieraWithFPN:
    """Hiera (the structure's trunk) + SAM 2's FPN neck (nearest top-down fusion into levels 2 and 3), scalp 1."""
    trunk = {**SAM2_TRUNKS[structure_type], **trunk_overrides}
    embed_dim = trunk["embed_dim"]
    fpn = {"position_encoding_cfg": {"num_pos_feats": EMBED_DIM, "normalize": True, "temperature": 10000},
           "d_model": EMBED_DIM, "backbone_channel_list": [embed_dim * 8, embed_dim * 4, embed_dim * 2, embed_dim],
           "fpn_top_down_levels": [2, 3], "fpn_interp_model": "nearest"}
    return HieraWithFPN(hiera_cfg=trunk, fpn_cfg=fpn, scalp=1)


def build_sam2(encoder: HieraWithFPN, image_size: int, version: str = "sam2.1") -> Sam2:
    check_image_size(image_size, 32)  # Hiera's stride-32 level is fused into the stride-16 one
    grid = image_size // 16
    prompt = Sam2PromptEncoder(EMBED_DIM, (grid, grid), (image_size, image_size), mask_in_chans=16)
    transformer = TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8)
    return Sam2(encoder, prompt, Sam2MaskDecoder(EMBED_DIM, transformer), image_size=image_size,
                version=version).eval()


def _register(name: str) -> None:
    def builder(image_size: int = 1024) -> Sam2:
        return build_sam2(sam2_image_encoder(name), image_size, version)

    version, size = name.split("_hiera_")
    builder.__name__ = name.replace(".", "_")
    builder.__doc__ = f"SAM {version[3:]} with the Hiera-{size.replace('_', '-')} image encoder (image model)."
    PROMPTABLES.register(name)(builder)
    CHECKPOINT_URLS[name] = SAM2_URLS[name]


for _name in SAM2_URLS:
    _register(_name)
