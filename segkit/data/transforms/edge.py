"""Edge targets: a binary map of label boundaries (for edge-aware heads such as CE2P)."""

from __future__ import annotations

import cv2
import numpy as np

from ...registry import TRANSFORMS


def label_edges(seg: np.ndarray, ignore_index: int) -> np.ndarray:
    """``uint8`` map, 1 where a pixel differs from one of its 8 neighbours (neither of the two ignored).

    As in SSSegmentation, each differing pair marks one of its two pixels: the lower one of a vertical pair, the
    left one of a horizontal pair, the upper one of a diagonal pair; so a straight boundary is two pixels wide.
    """
    valid = seg != ignore_index
    edge = np.zeros(seg.shape, np.uint8)
    pairs = (  # (marked pixel, its partner)
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),  # below <-> above
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),  # left <-> right
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),  # up-left <-> down-right
        ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),  # up-right <-> down-left
    )
    for marked, partner in pairs:
        edge[marked] |= (seg[marked] != seg[partner]) & valid[marked] & valid[partner]
    return edge


@TRANSFORMS.register("EdgeExtractor")
class EdgeExtractor:
    """Add ``edge_target`` (``int64``, 0/1): label boundaries of ``seg_target`` thickened by an ``edge_width`` x
    ``edge_width`` square (``cv2.dilate``). Boundaries with ignored pixels (``ignore_index``) are not edges.

    Put it after the geometric transforms and before ``ToTensor``; ``Padding`` fills the new map with -100.
    """

    def __init__(self, edge_width: int = 3, ignore_index: int = -100) -> None:
        if edge_width < 1:
            raise ValueError(f"edge_width must be >= 1, got {edge_width}")
        self.edge_width = edge_width
        self.ignore_index = ignore_index

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        seg = sample["seg_target"]
        if not isinstance(seg, np.ndarray):
            raise TypeError("EdgeExtractor expects a numpy seg_target: put it before ToTensor")
        edge = label_edges(seg, self.ignore_index)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (self.edge_width, self.edge_width))
        sample["edge_target"] = cv2.dilate(edge, kernel).astype(np.int64)
        return sample
