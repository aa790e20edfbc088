"""Any albumentations transform as a segkit transform, seeded from the sample's generator."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ...registry import TRANSFORMS
from .compose import LABEL_KEYS

ALBU_TARGETS = {"image": "image", "seg_target": "mask", "edge_target": "edge_target",
                "img2aug_pos_mapper": "img2aug_pos_mapper"}


@TRANSFORMS.register("AlbumentationsWrapper")
class AlbumentationsWrapper:
    """Build ``albumentations.<type>(**rest)`` from ``albu_cfg`` (e.g. ``{"type": "ElasticTransform", "p": 0.5,
    "fill_mask": -100}``) and apply it to the ``transform_keys``; ``seg_target`` is passed as ``mask``.

    When ``seg_target`` is transformed, the other label maps present (``edge_target``, ``img2aug_pos_mapper``) go
    along as extra masks so they stay aligned; spatial transforms fill them with the transform's ``fill_mask``
    (give ``fill_mask=-100`` for the ignore index; uncovered ``img2aug_pos_mapper`` pixels are set to -1).
    ``albu_forward_args`` are extra keyword arguments of the call. The albumentations transform is reseeded from
    ``rng`` for every sample, so results depend only on the sample's generator.
    """

    def __init__(
        self,
        albu_cfg: dict[str, Any],
        albu_forward_args: dict[str, Any] | None = None,
        transform_keys: list[str] | tuple[str, ...] = ("image", "seg_target"),
    ) -> None:
        try:
            import albumentations
        except ImportError:  # pragma: no cover - albumentations is a dependency
            from ...errors import SegkitError

            raise SegkitError("AlbumentationsWrapper needs albumentations: pip install albumentations") from None
        cfg = dict(albu_cfg)
        albu_type = cfg.pop("type", None)
        if not isinstance(albu_type, str) or not hasattr(albumentations, albu_type):
            raise ValueError(f"albu_cfg.type must name an albumentations transform, got {albu_type!r}")
        unknown = [key for key in transform_keys if key not in ALBU_TARGETS]
        if unknown:
            raise ValueError(f"transform_keys must be among {sorted(ALBU_TARGETS)}, got {unknown}")
        self.albu_cfg = dict(albu_cfg)
        self.albu_forward_args = dict(albu_forward_args or {})
        self.transform_keys = list(transform_keys)
        extra = {ALBU_TARGETS[key]: "mask" for key in LABEL_KEYS[1:]}
        self.albu_transform = albumentations.Compose(
            [getattr(albumentations, albu_type)(**cfg)], additional_targets=extra
        )

    def _keys(self, sample: dict) -> list[str]:
        keys = [key for key in self.transform_keys if key in sample]
        if "seg_target" in keys:
            keys += [key for key in LABEL_KEYS[1:] if key in sample and key not in keys]
        return keys

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        keys = self._keys(sample)
        inputs = copy.deepcopy(self.albu_forward_args)
        for key in keys:
            value = sample[key]
            # OpenCV (inside albumentations) has no int64; the label values fit in int32
            inputs[ALBU_TARGETS[key]] = value.astype(np.int32) if value.dtype == np.int64 else value
        self.albu_transform.set_random_seed(int(rng.integers(2**32)))
        outputs = self.albu_transform(**inputs)
        for key in keys:
            value = np.asarray(outputs[ALBU_TARGETS[key]])
            if key != "image":
                value = value.astype(sample[key].dtype, copy=False)
            if key == "img2aug_pos_mapper":
                value = np.maximum(value, -1)  # whatever fill albumentations used means "no original pixel"
            sample[key] = value
        return sample
