"""``Sam``: image encoder + prompt encoder + mask decoder, with the image encoded once and prompts decoded cheaply.

``encode_image`` turns a resized, unnormalised ``[B, 3, h, w]`` batch (long side ``image_size``) into an
:class:`ImageEmbedding`; ``decode`` runs the prompt encoder and mask decoder for any number of prompt sets against one
image's embedding. SAM-HQ, MobileSAM and EdgeSAM reuse this class with other encoders/decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class ImageEmbedding:
    """What the encoder computed for a batch of images: the 256-channel embedding grid and, for models that need
    them, more maps (SAM-HQ's early ViT features, SAM 2's high-resolution features)."""

    image_embeddings: torch.Tensor
    extras: dict[str, torch.Tensor | list[torch.Tensor]] = field(default_factory=dict)


class Sam(nn.Module):
    """Segment Anything (official parameter layout: ``image_encoder``, ``prompt_encoder``, ``mask_decoder``).

    ``image_encoder`` is a segkit backbone returning one embedding map (``SAMViT``, ``MobileSAMTinyViT``,
    ``EdgeSAMRepViT``). Not trainable through ``segkit train``: it is used through
    :class:`~segkit.promptable.predictor.SamPredictor` and the automatic mask generator.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 image_size: int = 1024, pixel_mean: tuple[float, ...] = PIXEL_MEAN,
                 pixel_std: tuple[float, ...] = PIXEL_STD) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise colours and pad bottom/right to ``image_size`` squares."""
        images = (images - self.pixel_mean) / self.pixel_std
        height, width = images.shape[-2:]
        return F.pad(images, (0, self.image_size - width, 0, self.image_size - height))

    def run_encoder(self, images: torch.Tensor) -> ImageEmbedding:
        """The encoder on preprocessed images (subclasses add extra maps)."""
        return ImageEmbedding(self.image_encoder(images)[-1])

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> ImageEmbedding:
        """Resized RGB images ``[B, 3, h, w]`` (values 0-255, long side ``image_size``) -> their embedding."""
        if images.ndim != 4 or images.shape[1] != 3 or max(images.shape[-2:]) > self.image_size:
            raise ValueError(f"expected a [B, 3, H, W] batch with a long side of at most {self.image_size}, "
                             f"got {tuple(images.shape)}")
        return self.run_encoder(self.preprocess(images.to(self.device, torch.float32)))

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None,
               multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``B`` prompt sets against one image's embedding.

        ``points`` ``[B, N, 2]`` (x, y in the resized frame) with ``point_labels`` ``[B, N]`` (1 foreground,
        0 background, -1 ignored), ``boxes`` ``[B, 4]``, ``mask_input`` ``[B, 1, 4h, 4w]`` logits (a previous
        low-resolution output). Returns low-resolution logits ``[B, M, 4h, 4w]`` and IoU predictions ``[B, M]``.
        """
        sparse, dense = self.prompt_encoder(None if points is None else (points, point_labels), boxes, mask_input)
        return self.mask_decoder(embedding.image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output)

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """Low-resolution logits -> logits at ``original_size``: upsample to the padded input, crop the padding,
        resize to the original image (bilinear)."""
        masks = F.interpolate(masks, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    def forward(self, *args, **kwargs):
        raise TypeError("promptable models are used through encode_image/decode, SamPredictor or "
                        "AutomaticMaskGenerator; they are not trained with segkit train")

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official checkpoint -> this module's names: the encoder's own converter for ``image_encoder.*``."""
        encoder = {k[len("image_encoder."):]: v for k, v in state_dict.items() if k.startswith("image_encoder.")}
        convert = getattr(self.image_encoder, "convert_checkpoint", None)
        if convert is not None:
            encoder = convert(encoder)
        rest = {k: v for k, v in state_dict.items() if not k.startswith("image_encoder.")}
        return {**{f"image_encoder.{k}": v for k, v in encoder.items()}, **rest}
