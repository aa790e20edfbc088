"""Shared test helpers: samples carrying a position mapper, and the check that labels, image and mapper agree."""

from __future__ import annotations

import numpy as np

from ..helpers import blocky_labels, decode, sample_of


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


class FixedRNG:
    """Stands in for a Generator: every coin says "apply", every range gives its upper end."""

    def random(self) -> float:
        return 0.0

    def uniform(self, low: float, high: float) -> float:
        return high

    def integers(self, low: int, high: int | None = None) -> int:
        return (low if high is None else high) - 1


def mapped_sample(height: int, width: int, seed: int = 0, block: int = 8) -> tuple[dict, np.ndarray]:
    """A sample (image encodes labels) with an ``img2aug_pos_mapper``, and its original labels."""
    labels = blocky_labels(height, width, seed=seed, block=block)
    sample = sample_of(labels)
    sample["img2aug_pos_mapper"] = np.arange(height * width, dtype=np.int64).reshape(height, width)
    return sample, labels


def assert_mapper_consistent(original: np.ndarray, seg: np.ndarray, mapper: np.ndarray) -> None:
    """Every output pixel that maps to an original pixel holds that pixel's label; unmapped ones are ignored."""
    seg, mapper = np.asarray(seg), np.asarray(mapper)
    assert seg.shape == mapper.shape and mapper.dtype == np.int64
    mapped = mapper >= 0
    assert ((mapper == -1) | mapped).all()
    np.testing.assert_array_equal(original.ravel()[mapper[mapped]], seg[mapped])
    assert (seg[~mapped] == -100).all()


def assert_image_matches_labels(image: np.ndarray, seg: np.ndarray) -> None:
    """The image's colours decode to the labels pixel for pixel (black = -100)."""
    np.testing.assert_array_equal(decode(np.asarray(image, np.uint8)), np.asarray(seg))
