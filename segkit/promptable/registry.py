"""``PROMPTABLES``: the promptable models by name (``sam_vit_b``, ``mobile_sam``, ...), separate from the trainable
segmentors. Each entry is a builder ``(image_size=..., ...) -> model`` with random weights; its official checkpoint
URL is in :data:`CHECKPOINT_URLS`. Importing this module is light (no torch); the builders import what they need.
"""

from __future__ import annotations

from ..registry import Registry

PROMPTABLES = Registry("promptable model")

FAMILIES: dict[str, str] = {
    "SAM": "sam_vit_b, sam_vit_l, sam_vit_h",
    "SAMHQ": "sam_hq_vit_b, sam_hq_vit_l, sam_hq_vit_h, sam_hq_vit_tiny",
    "SAMV2": "sam2.1_hiera_tiny, ... (SAM 2)",
    "MobileSAM": "mobile_sam",
    "EdgeSAM": "edge_sam, edge_sam_3x",
}
"""SSSegmentation's promptable segmentor types and the segkit model names that implement them."""

CHECKPOINT_URLS: dict[str, str] = {}
"""Official checkpoint URL of each registered model (filled where the model is registered)."""


def promptable_recipe_message(type_name: str) -> str:
    """Why a recipe cannot use a promptable type, and what to do instead."""
    names = FAMILIES[type_name]
    return (f"{type_name} is a promptable model (inference only; SSSegmentation cannot train it either), not a "
            f"trainable segmentor. Use it from the command line with `segkit infer --model NAME IMAGES "
            f"[--checkpoint FILE] (--everything | --point X,Y | --box X0,Y0,X1,Y1 | --prompts FILE.json)`, or from "
            f"Python with `segkit.promptable.load_promptable(NAME, checkpoint=...)` and `SamPredictor` / "
            f"`AutomaticMaskGenerator`; NAME is one of: {names}")
