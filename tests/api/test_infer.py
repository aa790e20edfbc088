"""segkit infer: palette PNGs with the ids, overlays with a legend, side-by-side, folder structure, jsonl."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from segkit import api
from segkit.errors import SegkitError


@pytest.fixture(scope="module")
def nested(tmp_path_factory, synthetic_root):
    """Two folders of images, one with a subfolder, plus their ground truth in the same layout."""
    root = tmp_path_factory.mktemp("nested")
    for folder, names in {"a": ["val_00000", "val_00001"], "b/deep": ["val_00002"]}.items():
        (root / "in" / folder).mkdir(parents=True)
        (root / "gt" / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(synthetic_root / "images" / "val" / f"{name}.png", root / "in" / folder / f"{name}.png")
            shutil.copy(synthetic_root / "annotations" / "val" / f"{name}.png", root / "gt" / folder / f"{name}.png")
    return root


def test_infer_writes_what_a_person_can_open(trained_run, nested, tmp_path):
    out = tmp_path / "pred"
    records = api.infer(trained_run, [nested / "in"], out, side_by_side=True, gt_dir=nested / "gt")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png") if "_" not in p.stem.split("val_")[-1]) == [
        "a/val_00000.png", "a/val_00001.png", "b/deep/val_00002.png"]
    seg = api.load(trained_run)
    for record in records:
        with Image.open(record["labels"]) as labels:
            assert labels.mode == "P"  # palette PNG: ids kept, colours visible
            ids = np.asarray(labels)
            assert np.array_equal(np.asarray(labels.convert("RGB")), seg.palette[ids])
        assert np.array_equal(ids, seg.predict(record["image"]))
        with Image.open(record["overlay"]) as overlay:
            assert overlay.size[0] == 200 and overlay.size[1] > 48  # a legend below, at least 200 pixels wide
            assert np.array_equal(np.asarray(overlay)[:48, 48:], np.full((48, 152, 3), 255))  # white padding
        with Image.open(record["side_by_side"]) as side:
            assert side.size[0] > 3 * 192  # image | ground truth | prediction, enlarged
        present = sorted(int(c) for c in np.unique(ids))
        assert record["class_ids"] == present
        assert record["classes_present"] == [seg.classnames[c] for c in present]
        assert sum(record["pixel_fraction"].values()) == pytest.approx(1.0, abs=1e-4)
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert lines == records


def test_two_folders_are_kept_apart_and_collisions_refused(trained_run, nested, tmp_path):
    records = api.infer(trained_run, [nested / "in" / "a", nested / "in" / "b"], tmp_path / "two")
    assert {r["labels"].split("two/")[1] for r in records} == {"a/val_00000.png", "a/val_00001.png",
                                                                "b/deep/val_00002.png"}
    image = nested / "in" / "a" / "val_00000.png"
    with pytest.raises(SegkitError, match="would both be written"):
        api.infer(trained_run, [image, image], tmp_path / "clash")
