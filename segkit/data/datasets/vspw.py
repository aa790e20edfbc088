"""VSPW (Video Scene Parsing in the Wild, 480p release): frames of videos, 124 classes.

Layout of SSSegmentation's ``VSPW_480p.zip``::

    rootdir/data/<video>/origin/<frame>.jpg
    rootdir/data/<video>/mask/<frame>.png        palette PNG of stored ids: 0 = void, 1..124 = classes, 253..255 void
    rootdir/<set>.txt                            video directory names, one per line (train, val, test)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import VOID, DatasetFamily, read_image, read_label_map, voc_palette

VSPW_CLASSNAMES = [
    "wall", "ceiling", "door", "stair", "ladder", "escalator", "Playground_slide", "handrail_or_fence", "window",
    "rail", "goal", "pillar", "pole", "floor", "ground", "grass", "sand", "athletic_field", "road", "path",
    "crosswalk", "building", "house", "bridge", "tower", "windmill", "well_or_well_lid", "other_construction", "sky",
    "mountain", "stone", "wood", "ice", "snowfield", "grandstand", "sea", "river", "lake", "waterfall", "water",
    "billboard_or_Bulletin_Board", "sculpture", "pipeline", "flag", "parasol_or_umbrella", "cushion_or_carpet",
    "tent", "roadblock", "car", "bus", "truck", "bicycle", "motorcycle", "wheeled_machine", "ship_or_boat", "raft",
    "airplane", "tyre", "traffic_light", "lamp", "person", "cat", "dog", "horse", "cattle", "other_animal", "tree",
    "flower", "other_plant", "toy", "ball_net", "backboard", "skateboard", "bat", "ball",
    "cupboard_or_showcase_or_storage_rack", "box", "traveling_case_or_trolley_case", "basket", "bag_or_package",
    "trash_can", "cage", "plate", "tub_or_bowl_or_pot", "bottle_or_cup", "barrel", "fishbowl", "bed", "pillow",
    "table_or_desk", "chair_or_seat", "bench", "sofa", "shelf", "bathtub", "gun", "commode", "roaster",
    "other_machine", "refrigerator", "washing_machine", "Microwave_oven", "fan", "curtain", "textiles", "clothes",
    "painting_or_poster", "mirror", "flower_pot_or_vase", "clock", "book", "tool", "blackboard", "tissue",
    "screen_or_television", "computer", "printer", "Mobile_phone", "keyboard", "other_electronic_product", "fruit",
    "food", "instrument", "train",
]  # fmt: skip
VSPW_CLSID2LABEL = {0: VOID, 253: VOID, 254: VOID, 255: VOID, **{i: i - 1 for i in range(1, 125)}}


@DATASETS.register("VSPWDataset")
class VSPWDataset(DatasetFamily):
    """VSPW: ``clsid2label = {0, 253, 254, 255: ignore_index; i: i - 1}`` (stored id 1 is class 0, ``wall``).

    ``'TRAIN'``: one sample per video (times ``repeat_times``); every access draws one of the video's frames with
    the sample's generator (``numpy.random.default_rng([seed, epoch, index])``, the one that then drives the
    augmentations), so the frame is reproducible for a ``(seed, epoch, index)`` and changes with the epoch.
    ``'TEST'``: one sample per frame of every listed video, in sorted order. A sample's ``id`` is
    ``<video>/<frame>`` (SSSegmentation uses the video name in ``'TRAIN'``). SSSegmentation 1.7.0 voids stored
    0 and 254 only; 253 and 255 are void too, as in its later code.
    """

    num_classes = 124
    classnames = VSPW_CLASSNAMES
    palette = voc_palette(124)
    clsid2label = VSPW_CLSID2LABEL

    def layout(self) -> dict[str, Any]:
        videos = self.split_ids(f"{self.set}.txt")
        self.frames = {
            video: self._list_frames(os.path.join(self.rootdir, "data", video)) for video in videos
        }
        train = self.mode == "TRAIN"
        imageids = videos if train else [f"{v}/{frame}" for v in videos for frame in self.frames[v]]
        return {"image_dir": "data", "ann_dir": "data", "imageids": imageids}

    @staticmethod
    def _list_frames(video_dir: str) -> list[str]:
        """Sorted frame names (without ``.jpg``) of ``video_dir/origin``; a video without frames is an error."""
        origin = os.path.join(video_dir, "origin")
        if not os.path.isdir(origin):
            raise DataError(f"VSPW video frames not found: {origin}")
        frames = sorted(name[:-4] for name in os.listdir(origin) if name.endswith(".jpg"))
        if not frames:
            raise DataError(f"VSPW video has no .jpg frames: {origin}")
        return frames

    def load(self, imageid: str, rng: np.random.Generator) -> dict[str, Any]:
        """``'TRAIN'``: ``imageid`` is a video, whose frame is drawn with the sample's generator."""
        if self.mode == "TRAIN":
            frames = self.frames[imageid]
            imageid = f"{imageid}/{frames[int(rng.integers(len(frames)))]}"
        return super().load(imageid, rng)

    def image_path(self, imageid: str) -> str:
        video, frame = imageid.rsplit("/", 1)
        return os.path.join(self.image_dir, video, "origin", f"{frame}.jpg")

    def read(self, imageid: str) -> dict[str, Any]:
        """Read frame ``<video>/<frame>`` and its mask, untransformed."""
        video, frame = imageid.rsplit("/", 1)
        image_path = self.image_path(imageid)
        ann_path = os.path.join(self.ann_dir, video, "mask", f"{frame}.png")
        image = read_image(image_path)
        seg_target = self.remap(read_label_map(ann_path), ann_path)
        if seg_target.shape != image.shape[:2]:
            raise DataError(
                f"{ann_path}: mask is {seg_target.shape[1]}x{seg_target.shape[0]} but its frame {image_path} "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        height, width = image.shape[:2]
        return {"image": image, "seg_target": seg_target, "width": width, "height": height, "id": imageid}
