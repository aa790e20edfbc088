"""What an exported model needs beside its weights: class names, palette, preprocessing, the input contract."""

from __future__ import annotations

from typing import Any

from ..recipe.schema import Recipe


def test_normalize(rec: Recipe) -> tuple[list[float], list[float], bool] | None:
    """``(mean, std, to_rgb)`` of the test pipeline's ``Normalize`` step, if it has one."""
    for step in rec.dataset.test.get("data_pipelines", []) or []:
        if isinstance(step, dict) and step.get("type") == "Normalize":
            return [float(v) for v in step["mean"]], [float(v) for v in step["std"]], bool(step.get("to_rgb", True))
    return None


def test_input_size(rec: Recipe) -> tuple[int, int] | None:
    """The size the test pipeline gives an image: a ``Resize`` without ``keep_ratio`` fixes it; with
    ``keep_ratio`` its shorter side is the typical short side (a square of it is used); ``None`` otherwise."""
    for step in rec.dataset.test.get("data_pipelines", []) or []:
        if isinstance(step, dict) and step.get("type") == "Resize" and step.get("output_size"):
            size = step["output_size"]
            height, width = (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))
            if step.get("keep_ratio", True):
                return min(height, width), min(height, width)
            return height, width
    return None


def export_metadata(rec: Recipe, checkpoint: str, *, baked: bool) -> dict[str, Any]:
    """Metadata stored in the ONNX file (``metadata_props``) and in ``model.json`` beside it."""
    from .. import __version__
    from ..engine.predict import recipe_classnames, recipe_palette

    normalize = test_normalize(rec)
    mean, std, to_rgb = normalize if normalize is not None else (None, None, True)
    if baked:
        contract = "float32 NCHW RGB in [0, 255]; the normalisation is part of the graph"
    else:
        contract = (f"float32 NCHW {'RGB' if to_rgb else 'BGR'}, normalised: (pixel - mean) / std per channel"
                    if normalize is not None else "float32 NCHW as the recipe's test pipeline produces it")
    return {
        "segkit_version": __version__,
        "segmentor": rec.type,
        "num_classes": rec.num_classes,
        "classnames": recipe_classnames(rec),
        "palette": recipe_palette(rec).tolist(),
        "mean": mean,
        "std": std,
        "channel_order": "RGB" if (to_rgb or baked) else "BGR",
        "preprocessing_baked": baked,
        "input": contract,
        "output": "logits float32 (N, num_classes, H, W) at the input size; argmax over axis 1 gives class ids",
        "align_corners": rec.align_corners,
        "checkpoint": checkpoint,
    }
