"""``FeatureInfo``: what a backbone or neck outputs (channels, strides, names), known before any forward pass.

Backbones declare ``feature_info`` in timm's dict format (``{"num_chs", "reduction", "module"}`` per output); the
model builder turns it into one validated :class:`FeatureInfo`, selects from it (``backbone.selected_indices``),
passes it through a neck, and resolves every head's ``in_index`` against it to derive ``in_channels``::

    info = FeatureInfo.from_timm(backbone.feature_info).select([2, 3])
    info.channels_at(-1)        # 2048
    info.channels_at([0, -1])   # [1024, 2048]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

InIndex = int | list[int]
"""A head's input selector: one position in the feature list, or several (negative positions count from the end)."""


@dataclass(frozen=True)
class Feature:
    """One feature map: its channels, its stride (reduction from the input) and a name (the producing module)."""

    channels: int
    stride: int
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.channels, int) or isinstance(self.channels, bool) or self.channels < 1:
            raise ValueError(f"feature '{self.name}': channels must be a positive integer, got {self.channels!r}")
        if not isinstance(self.stride, int) or isinstance(self.stride, bool) or self.stride < 1:
            raise ValueError(f"feature '{self.name}': stride must be a positive integer, got {self.stride!r}")

    def as_timm(self) -> dict:
        return {"num_chs": self.channels, "reduction": self.stride, "module": self.name}


class FeatureInfo(Sequence[Feature]):
    """An immutable, validated list of :class:`Feature` (timm's ``FeatureInfo`` is the model)."""

    def __init__(self, features: Iterable[Feature]) -> None:
        self._features = tuple(features)
        if not self._features:
            raise ValueError("a feature list needs at least one feature")

    @classmethod
    def from_timm(cls, info: Iterable[dict] | FeatureInfo) -> FeatureInfo:
        """From timm-style dicts (``num_chs``, ``reduction``, ``module``); a ``FeatureInfo`` is returned as is."""
        if isinstance(info, FeatureInfo):
            return info
        return cls(Feature(int(d["num_chs"]), int(d["reduction"]), str(d.get("module", ""))) for d in info)

    # ------------------------------------------------------------------ views
    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return FeatureInfo(self._features[index])
        return self._features[index]

    def __len__(self) -> int:
        return len(self._features)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self._features)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureInfo) and self._features == other._features

    def __repr__(self) -> str:
        body = ", ".join(f"{f.channels}@{f.stride}" for f in self._features)
        return f"FeatureInfo([{body}])"

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self._features]

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self._features]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self._features]

    def as_timm(self) -> list[dict]:
        return [f.as_timm() for f in self._features]

    # ------------------------------------------------------------------ selection
    def check_index(self, index: InIndex) -> list[int]:
        """The non-negative positions ``index`` names; ``IndexError`` when one is out of range."""
        positions = index if isinstance(index, list | tuple) else [index]
        resolved = []
        for position in positions:
            if isinstance(position, bool) or not isinstance(position, int):
                raise IndexError(f"expected integers, got {position!r}")
            if not -len(self) <= position < len(self):
                raise IndexError(f"{position} is out of range for {len(self)} features "
                                 f"(valid: {-len(self)}..{len(self) - 1})")
            resolved.append(position % len(self))
        return resolved

    def select(self, indices: Sequence[int]) -> FeatureInfo:
        """The features at ``indices``, in that order (SSSegmentation's ``selected_indices``)."""
        return FeatureInfo(self._features[i] for i in self.check_index(list(indices)))

    def channels_at(self, index: InIndex) -> int | list[int]:
        """Channels at ``index``: an int for one position, a list for a list of positions."""
        positions = self.check_index(index)
        if isinstance(index, list | tuple):
            return [self._features[i].channels for i in positions]
        return self._features[positions[0]].channels

    def strides_at(self, index: InIndex) -> int | list[int]:
        positions = self.check_index(index)
        if isinstance(index, list | tuple):
            return [self._features[i].stride for i in positions]
        return self._features[positions[0]].stride


def select_inputs(features: Sequence, index: InIndex):
    """``features[index]`` for an int, ``[features[i] for i in index]`` for a list (what heads do in forward)."""
    if isinstance(index, list | tuple):
        return [features[i] for i in index]
    return features[index]
