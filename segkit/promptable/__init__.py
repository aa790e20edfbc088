"""Promptable segmentation (the SAM family): models by name, predictor, automatic mask generator.

Inference only, with their own registry (``PROMPTABLES``); never built from a training recipe::

    from segkit.promptable import load_promptable, SamPredictor, AutomaticMaskGenerator
    model = load_promptable("sam_vit_b")                       # or checkpoint="sam_vit_b_01ec64.pth"
    predictor = SamPredictor(model)
    predictor.set_image(rgb)                                   # encoded once
    masks, scores, logits = predictor.predict(point_coords=[[500, 375]], point_labels=[1])
    records = AutomaticMaskGenerator(model, points_per_side=32).generate(rgb)

Importing this package is light; torch is imported when one of these names is first used.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_promptable": "checkpoint", "build_promptable": "checkpoint", "load_checkpoint": "checkpoint",
    "promptable_names": "checkpoint", "SamPredictor": "predictor", "AutomaticMaskGenerator": "automatic",
    "Sam": "sam", "ImageEmbedding": "sam", "Sam2VideoPredictor": "sam2_video", "PROMPTABLES": "registry", "CHECKPOINT_URLS": "registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    if name in ("PROMPTABLES", "CHECKPOINT_URLS"):
        importlib.import_module(f"{__name__}.checkpoint").ensure_registered()
    return getattr(module, name)
