"""``SamPredictor``: set an image once, then predict masks from points, boxes and mask prompts.

The API is the official ``SamPredictor``'s (``set_image``, ``set_torch_image``, ``predict``, ``predict_torch``,
``get_image_embedding``, ``reset_image``), so code written for ``segment-anything`` runs with segkit's models.
"""

from __future__ import annotations

import numpy as np
import torch

from .sam import ImageEmbedding, Sam
from .transforms import ResizeLongestSide


class SamPredictor:
    """Mask prediction for one image at a time with a SAM-family model (``Sam`` and its variants)."""

    def __new__(cls, model: Sam, *args, **kwargs):
        """A model may name its own predictor subclass (``predictor_class``: SAM 2's), used by ``SamPredictor(model)``."""
        own = getattr(model, "predictor_class", None)
        return super().__new__(own if own is not None and issubclass(own, cls) else cls)

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.transform = ResizeLongestSide(model.image_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.embedding: ImageEmbedding | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def _checked_image(self, image: np.ndarray, image_format: str) -> np.ndarray:
        """``image`` as an HxWx3 array in the model's channel order (RGB or BGR given by ``image_format``)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        return image[..., ::-1] if image_format != self.model.image_format else image

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode ``image`` (HWC uint8, RGB or BGR): resized to a long side of ``model.image_size``."""
        image = self._checked_image(image, image_format)
        resized = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        self.set_torch_image(resized.permute(2, 0, 1)[None], image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, int]) -> None:
        """Encode an already resized ``[1, 3, h, w]`` image whose original size was ``original_image_size``."""
        if transformed_image.ndim != 4 or transformed_image.shape[1] != 3 or \
                max(transformed_image.shape[2:]) != self.model.image_size:
            raise ValueError(f"set_torch_image needs a [1, 3, H, W] image with a long side of "
                             f"{self.model.image_size}, got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[2]), int(transformed_image.shape[3]))
        self.embedding = self.model.encode_image(transformed_image)
        self.is_image_set = True

    @property
    def features(self) -> torch.Tensor:
        """The image embedding ``[1, C, h, w]`` (the official predictor's ``features``)."""
        return self.get_image_embedding()

    def get_image_embedding(self) -> torch.Tensor:
        self._require_image()
        return self.embedding.image_embeddings

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False, **decode_options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set, in original-image pixel coordinates.

        ``point_coords`` ``[N, 2]`` (x, y) with ``point_labels`` ``[N]`` (1 foreground, 0 background), ``box``
        ``[4]`` (x0, y0, x1, y1), ``mask_input`` ``[1, 256, 256]`` low-resolution logits from an earlier call.
        Returns masks ``[M, H, W]`` (bool, or logits with ``return_logits``), IoU predictions ``[M]`` and
        low-resolution logits ``[M, 256, 256]``; ``M`` is 3 with ``multimask_output``, else 1. ``decode_options``
        go to the model's ``decode`` (SAM-HQ's ``hq_token_only``, EdgeSAM's ``num_multimask_outputs``).
        """
        self._require_image()
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = torch.as_tensor(self.transform.apply_coords(point_coords, self.original_size),
                                     dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(np.asarray(point_labels), dtype=torch.int32, device=self.device)[None]
            if coords.shape[:2] != labels.shape or coords.shape[2] != 2:
                raise ValueError(f"point_coords must be [N, 2] and point_labels [N], got {tuple(coords.shape[1:])} "
                                 f"and {tuple(labels.shape[1:])}")
        if box is not None:
            boxes = torch.as_tensor(self.transform.apply_boxes(box, self.original_size), dtype=torch.float32,
                                    device=self.device)[:1]
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float32, device=self.device)[None]
        out, iou, low_res = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits,
                                               **decode_options)
        return out[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True, return_logits: bool = False,
                      **decode_options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the resized frame (``[B, N, 2]``, ``[B, N]``, ``[B, 4]``,
        ``[B, 1, 256, 256]``) -> masks ``[B, M, H, W]``, IoU ``[B, M]``, low-resolution logits."""
        self._require_image()
        low_res, iou = self.model.decode(self.embedding, point_coords, point_labels, boxes, mask_input,
                                         multimask_output, **decode_options)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) before predicting masks")
