"""VSPW: the stored-id remap, TRAIN's per-access frame choice from (seed, epoch, index), TEST's every frame."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.data.datasets.vspw import VSPWDataset
from segkit.errors import DataError

from .layouts import assert_pipeline_outputs, blocks, make_vspw

FRAMES = 8


def video(first_label: int, count: int = FRAMES) -> dict[str, np.ndarray]:
    """Frames whose masks are uniform: stored id ``first_label + k`` for frame k (so the label tells the frame)."""
    return {f"{k:08d}": np.full((6, 8), first_label + k, np.uint8) for k in range(count)}


@pytest.fixture
def root(tmp_path):
    return make_vspw(tmp_path, "train", {"127_-hIVCYO4C90": video(1), "1001_5z_ZpOmvcAo": video(20, 3)})


def test_remap_of_stored_ids(tmp_path):
    stored = np.array([[0, 1, 2, 124], [253, 254, 255, 60]], np.uint8)
    make_vspw(tmp_path, "val", {"v": {"00000001": stored}})
    dataset = VSPWDataset(str(tmp_path), set="val", mode="TEST")
    assert dataset.num_classes == 124 and dataset.classnames[0] == "wall" and len(dataset.palette) == 124
    np.testing.assert_array_equal(dataset[0]["seg_target"], [[-100, 0, 1, 123], [-100, -100, -100, 59]])
    own_void = VSPWDataset(str(tmp_path), set="val", mode="TEST", ignore_index=255)
    np.testing.assert_array_equal(own_void[0]["seg_target"], [[255, 0, 1, 123], [255, 255, 255, 59]])


def test_test_mode_lists_every_frame_in_order(root):
    dataset = VSPWDataset(str(root), mode="TEST")
    assert len(dataset) == FRAMES + 3
    assert dataset.imageids[:2] == ["127_-hIVCYO4C90/00000000", "127_-hIVCYO4C90/00000001"]
    assert dataset.imageids[-1] == "1001_5z_ZpOmvcAo/00000002"
    sample = dataset[FRAMES + 1]
    assert sample["id"] == "1001_5z_ZpOmvcAo/00000001" and int(sample["seg_target"][0, 0]) == 20


def chosen_frames(dataset: VSPWDataset, epoch: int) -> list[int]:
    """The frame number each sample drew (read back from its uniform label)."""
    dataset.set_epoch(epoch)
    frames = []
    for i in range(len(dataset)):
        sample = dataset[i]
        first = 0 if sample["id"].startswith("127_") else 19
        assert sample["id"].endswith(f"{int(sample['seg_target'][0, 0]) - first:08d}")
        frames.append(int(sample["seg_target"][0, 0]) - first)
    return frames


def test_train_frame_choice_is_deterministic_and_varies_by_epoch(root):
    dataset = VSPWDataset(str(root), repeat_times=4, seed=3)
    assert len(dataset) == 8  # one sample per video, times repeat_times
    first = chosen_frames(dataset, epoch=0)
    expected = [int(np.random.default_rng([3, 0, i]).integers(FRAMES if i % 2 == 0 else 3)) for i in range(8)]
    assert first == expected  # the sample's own generator makes the draw
    assert chosen_frames(VSPWDataset(str(root), repeat_times=4, seed=3), epoch=0) == first
    assert chosen_frames(dataset, epoch=0) == first
    later = [chosen_frames(dataset, epoch) for epoch in range(1, 4)]
    assert any(frames != first for frames in later)
    assert len({frames[0] for frames in [first, *later]}) > 1  # sample 0 does not always draw the same frame
    assert chosen_frames(VSPWDataset(str(root), repeat_times=4, seed=4), epoch=0) != first


def test_missing_video_is_an_error(root):
    (root / "val.txt").write_text("127_-hIVCYO4C90\nno_such_video\n")
    with pytest.raises(DataError, match=r"frames not found: .*data/no_such_video/origin"):
        VSPWDataset(str(root), set="val")


def test_pipeline_outputs(tmp_path):
    frames = {f"{k:08d}": blocks(26, 30, [0, 1, 5, 9, 254], seed=k) for k in range(3)}
    make_vspw(tmp_path, "train", {"v1": frames})
    assert_pipeline_outputs(VSPWDataset, tmp_path)
