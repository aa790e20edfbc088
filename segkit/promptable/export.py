"""ONNX export of the part of SAM that runs per prompt: prompt encoder + mask decoder.

The graph takes the image embedding (from ``encode_image``, run once per image in PyTorch or its own export) and
any number of points: ``point_coords`` ``[1, N, 2]`` in the resized frame and ``point_labels`` ``[1, N]`` (1
foreground, 0 background, 2 / 3 a box's top-left / bottom-right corner, -1 padding; add one padding point when
there is no box, as the eager prompt encoder does), plus ``mask_input`` ``[1, 1, 4h, 4w]`` and ``has_mask_input``
``[1]`` (0 or 1). It returns low-resolution mask logits and IoU predictions, as ``Sam.decode`` does. This is the
interface of the official ``SamOnnxModel``; upscaling to the image is left to the caller.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SegkitError
from .sam import Sam


class SamPromptDecoder(nn.Module):
    """Prompt encoder + mask decoder of ``model`` with tensor-only inputs (points padded by the caller)."""

    def __init__(self, model: Sam, multimask_output: bool = True) -> None:
        super().__init__()
        if type(model).decode is not Sam.decode and not hasattr(model, "automatic_decode_options"):
            raise SegkitError(f"ONNX export of the prompt decoder supports SAM, MobileSAM and EdgeSAM, not "
                              f"{type(model).__name__} (its decoder needs more inputs)")
        self.model = model
        self.multimask_output = multimask_output

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        encoder = self.model.prompt_encoder
        encoded = encoder.pe_layer.encode_points(coords + 0.5, encoder.input_image_size)
        labels = labels[..., None]
        encoded = torch.where(labels == -1, encoder.not_a_point_embed.weight, encoded)
        for kind, embedding in enumerate(encoder.point_embeddings):
            encoded = encoded + (labels == kind).to(encoded.dtype) * embedding.weight
        return encoded

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input * encoder.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        masks, iou = self.model.mask_decoder.predict_masks(image_embeddings, encoder.get_dense_pe(), sparse, dense)
        selected = slice(1, None) if self.multimask_output else slice(0, 1)
        return masks[:, selected], iou[:, selected]


def example_inputs(model: Sam, num_points: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    grid = model.prompt_encoder.image_embedding_size
    embedding = torch.randn(1, 256, *grid, generator=generator)
    coords = torch.rand(1, num_points, 2, generator=generator) * model.image_size
    labels = torch.randint(0, 2, (1, num_points), generator=generator).float()
    labels[0, -1] = -1
    mask = torch.randn(1, 1, *model.prompt_encoder.mask_input_size, generator=generator)
    return embedding, coords, labels, mask, torch.tensor([1.0])


def export_prompt_decoder(model: Sam, path: str | Path, *, multimask_output: bool = True, opset: int = 17,
                          atol: float = 1e-4) -> dict:
    """Write the ONNX prompt decoder of ``model`` to ``path`` and check it against eager PyTorch (onnxruntime,
    CPU) with 1, 3 and 7 points; refused (nothing written) when the outputs differ by more than ``atol``."""
    try:
        import onnxruntime
    except ImportError:
        raise SegkitError("ONNX export needs onnx and onnxruntime: pip install 'segkit[onnx]'") from None
    path = Path(path)
    wrapper = SamPromptDecoder(model.cpu().eval(), multimask_output).eval()
    names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
    temporary = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example_inputs(model, 3), str(temporary), dynamo=False, opset_version=opset,
                          input_names=names, output_names=["low_res_masks", "iou_predictions"],
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    session = onnxruntime.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
    worst = 0.0
    for count in (1, 3, 7):
        inputs = example_inputs(model, count, seed=count)
        with torch.no_grad():
            expected = wrapper(*inputs)
        actual = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        for a, b in zip(expected, actual, strict=True):
            worst = max(worst, float(np.abs(a.numpy() - b).max()))
    if worst > atol:
        temporary.unlink()
        raise SegkitError(f"the exported prompt decoder differs from eager PyTorch by {worst:.2e} > {atol:.0e}; "
                          "nothing written")
    temporary.replace(path)
    return {"path": str(path), "max_abs_diff": worst, "atol": atol, "inputs": names}
