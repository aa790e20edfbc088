"""CityScapesDataset: labelId -> trainId for all 34 ids (and -1 / 255), layout, server mode, formatresults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segkit import DATASETS
from segkit.data.datasets.cityscapes import CityScapesDataset
from segkit.errors import DataError

from .layouts import CITYSCAPES_TRAINIDS, write_cityscapes

FIRST = "frankfurt/frankfurt_000000_000294_leftImg8bit"


def to_trainids(raw: np.ndarray) -> np.ndarray:
    """The expected remap, from cityscapesScripts' table (255 / -1 -> void)."""
    table = np.array(CITYSCAPES_TRAINIDS + [255] * (256 - 34))
    trainids = table[np.clip(raw, 0, 255)]
    trainids[raw < 0] = 255
    return np.where(trainids == 255, -100, trainids)


@pytest.fixture
def root(tmp_path):
    write_cityscapes(tmp_path, "val")
    return tmp_path


def test_python_builder_example_gives_the_remapped_numpy_label_map(root):
    cfg = {"type": "CityScapesDataset", "rootdir": str(root), "set": "val", "data_pipelines": []}
    seg = DATASETS.build(cfg)[0]["seg_target"]
    assert isinstance(seg, np.ndarray) and seg.dtype == np.int64
    raw = np.resize(np.append(np.arange(34), 255), seg.shape)
    np.testing.assert_array_equal(seg, to_trainids(raw))


def test_every_label_id_maps_to_its_train_id(root):
    dataset = CityScapesDataset(str(root), set="val")
    assert (
        dataset.num_classes == 19 and dataset.classnames[0] == "road" and dataset.classnames[18] == "bicycle"
    )
    assert dataset.palette[0] == (128, 64, 128) and dataset.palette[18] == (119, 11, 32)
    seg = dataset[0]["seg_target"]
    raw = np.resize(np.append(np.arange(34), 255), seg.shape)
    for label_id in range(34):
        trainid = CITYSCAPES_TRAINIDS[label_id]
        assert set(seg[raw == label_id].tolist()) == {trainid if trainid != 255 else -100}, label_id
    assert set(seg[raw == 255].tolist()) == {-100}
    assert sorted(set(seg.ravel().tolist()) - {-100}) == list(range(19))


def test_minus_one_license_plate_is_void_in_integer_maps(root):
    dataset = CityScapesDataset(str(root), set="val", ignore_index=255)
    raw = np.array([[-1, 7, 26], [33, 0, 255]], np.int16)
    np.testing.assert_array_equal(dataset.remap(raw), [[255, 0, 13], [18, 255, 255]])


def test_ids_paths_and_listing_without_split_file(tmp_path):
    raws = write_cityscapes(tmp_path, "train", split_file=False)
    dataset = CityScapesDataset(str(tmp_path), set="train")
    assert dataset.imageids == ["frankfurt/frankfurt_000000_000294", "lindau/lindau_000000_000019"]
    sample = dataset[1]
    assert sample["id"] == "lindau/lindau_000000_000019_leftImg8bit"
    np.testing.assert_array_equal(sample["seg_target"], to_trainids(raws[sample["id"]]))


def test_server_mode_reads_no_annotations(root):
    for path in (root / "gtFine").rglob("*_labelIds.png"):
        path.unlink()
    dataset = CityScapesDataset(str(root), set="val", mode="TEST", eval_env="server")
    sample = dataset[0]
    assert sample["id"] == FIRST and sample["seg_target"].shape == (16, 24)
    assert (sample["seg_target"] == -100).all()
    with pytest.raises(DataError, match="annotation not found"):
        CityScapesDataset(str(root), set="val", mode="TEST")[0]


def test_formatresults_writes_label_id_pngs_that_round_trip(root, tmp_path):
    dataset = CityScapesDataset(str(root), set="val")
    rng = np.random.default_rng(0)
    preds = [np.arange(19 * 3).reshape(3, 19) % 19, torch.from_numpy(rng.integers(0, 19, (5, 7)))]
    ids = [FIRST, "lindau/lindau_000000_000019_leftImg8bit"]
    written = CityScapesDataset.formatresults(preds, ids, str(tmp_path / "server"))
    assert [p.split("/")[-1] for p in written] == [
        "frankfurt_000000_000294_leftImg8bit.png",
        "lindau_000000_000019_leftImg8bit.png",
    ]
    for pred, path in zip(preds, written, strict=True):
        with Image.open(path) as png:
            assert png.mode == "P"
            label_ids = np.array(png)
            palette = np.array(png.getpalette()[: 34 * 3]).reshape(34, 3)
        assert set(np.unique(label_ids).tolist()) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                                        28, 31, 32, 33}  # fmt: skip
        np.testing.assert_array_equal(dataset.remap(label_ids), np.asarray(pred))
    assert tuple(palette[7]) == (128, 64, 128) and tuple(palette[26]) == (0, 0, 142)


def test_formatresults_void_predictions_become_unlabeled(tmp_path):
    (path,) = CityScapesDataset.formatresults(
        [np.array([[-100, 255, 0]])], ["a/x_leftImg8bit"], str(tmp_path)
    )
    with Image.open(path) as png:
        np.testing.assert_array_equal(np.array(png), [[0, 0, 7]])
    with pytest.raises(DataError, match="2 results but 1 filenames"):
        CityScapesDataset.formatresults([np.zeros((2, 2))] * 2, ["a"], str(tmp_path))
