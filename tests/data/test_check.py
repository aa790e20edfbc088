"""``segkit check-data``: a corrupt image, a size mismatch and out-of-range labels are found and named; exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit import api
from segkit.cli import main
from segkit.data.check import check_dataset
from segkit.data.datasets.base import BaseDataset
from segkit.data.datasets.folder import FolderDataset

from .helpers import CLASSNAMES, make_folder

REPO = Path(__file__).resolve().parents[2]


def broken_folder(root: Path) -> Path:
    """Six good samples, then: img01 corrupt, img02 label map of another size, img03 labels 7 and 9, img04 no mask."""
    make_folder(root, [(12, 16)] * 6)
    (root / "images" / "train" / "img01.png").write_bytes(b"\x89PNG not really")
    cv2.imwrite(str(root / "annotations" / "train" / "img02.png"), np.zeros((10, 16), np.uint8))
    labels = np.zeros((12, 16), np.uint8)
    labels[0, :3] = [7, 9, 255]
    cv2.imwrite(str(root / "annotations" / "train" / "img03.png"), labels)
    (root / "annotations" / "train" / "img04.png").unlink()
    return root


def dataset(root: Path, **kwargs) -> FolderDataset:
    return FolderDataset(str(root), "train", classnames=CLASSNAMES, image_ext=".png", **kwargs)


def test_finds_and_names_each_problem(tmp_path):
    root = broken_folder(tmp_path / "data")
    report = check_dataset(dataset(root, clsid2label={255: -100}))
    found = {(p["kind"], Path(p["file"]).relative_to(root).as_posix()): p["message"] for p in report["problems"]}
    assert set(found) == {
        ("unreadable", "images/train/img01.png"),
        ("size_mismatch", "annotations/train/img02.png"),
        ("label_out_of_range", "annotations/train/img03.png"),
        ("unreadable", "annotations/train/img04.png"),
    }
    assert "corrupt" in found["unreadable", "images/train/img01.png"]
    assert "16x10 but its image" in found["size_mismatch", "annotations/train/img02.png"]
    assert "[7, 9]" in found["label_out_of_range", "annotations/train/img03.png"]  # 255 is mapped to void
    assert report["checked"] == 6
    assert report["counts"] == {"unreadable": 2, "size_mismatch": 1, "label_out_of_range": 1}


def test_each_sample_is_read_once_whatever_repeat_times(tmp_path):
    root = make_folder(tmp_path / "data", [(12, 16)] * 3)
    seen = []
    report = check_dataset(dataset(root, repeat_times=50), progress=lambda split, done, total: seen.append(total))
    assert report["checked"] == 3 and report["problems"] == [] and seen == [3, 3, 3]


def test_auto_corrected_labels_are_not_problems(tmp_path):
    root = broken_folder(tmp_path / "data")
    report = check_dataset(dataset(root, auto_correct_invalid_seg_target=True))
    assert report["counts"]["label_out_of_range"] == 0 and report["counts"]["unreadable"] == 2


class OwnReadDataset(BaseDataset):
    """A dataset with its own ``read`` (as MHP or COCO-Stuff 10k have): checked through it."""

    num_classes = 5

    def read(self, imageid: str) -> dict:
        if imageid == "img01":
            raise ValueError("decoder exploded")
        return super().read(imageid)


def test_a_dataset_with_its_own_read_is_checked_through_it(tmp_path):
    root = broken_folder(tmp_path / "data")
    report = check_dataset(OwnReadDataset(str(root), "train", image_ext=".png"))
    kinds = {p["file"]: p["kind"] for p in report["problems"]}
    assert kinds == {"img01": "unreadable", "img02": "size_mismatch", "img03": "label_out_of_range",
                     "img04": "unreadable"}
    assert "ValueError: decoder exploded" in report["problems"][0]["message"]


def recipe(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "folder.toml"
    path.write_text(f"""
extends = ["{REPO}/recipes/_base/segmentors/fcn.toml"]
num_classes = 5
[backbone]
structure_type = "resnet18"
pretrained = false
[dataset]
type = "FolderDataset"
rootdir = "{root}"
classnames = {CLASSNAMES!r}
image_ext = ".png"
clsid2label = {{255 = -100}}
[dataset.train]
set = "train"
[dataset.test]
set = "val"
""".replace("'", '"'))
    return path


def test_api_and_cli_report_then_exit_2(tmp_path, capsys):
    root = broken_folder(tmp_path / "data")
    make_folder(root, [(12, 16)] * 2, split="val")
    path = recipe(tmp_path, root)
    report = api.check_data(path, split="both")
    assert report["num_problems"] == 4 and report["splits"]["test"]["problems"] == []
    assert report["summary"].startswith("4 problems in 8 samples (2 unreadable; 1 size mismatch; 1 label out of range")
    assert api.check_data(path, split="test")["num_problems"] == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", str(path), "--split", "train"])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert "img01.png" in out and "size_mismatch" in out and "4 problems in 6 samples" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", str(path), "--split", "test"])
    assert exit_info.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", str(path), "--split", "train", "--json"])
    assert exit_info.value.code == 2
    printed = json.loads(capsys.readouterr().out)
    labels = [p for p in printed["splits"]["train"]["problems"] if p["kind"] == "label_out_of_range"]
    assert labels[0]["file"].endswith("img03.png") and "[7, 9]" in labels[0]["message"]


def test_bad_split_name_is_a_usage_error(tmp_path):
    path = recipe(tmp_path, make_folder(tmp_path / "data", [(12, 16)]))
    with pytest.raises(SystemExit) as exit_info:
        main(["check-data", str(path), "--split", "validation"])
    assert exit_info.value.code == 2
