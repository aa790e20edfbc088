"""``segkit infer --model``: prompts from options and JSON, --everything, the files written, and exit 2 on bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from segkit import cli
from segkit.promptable import SamPredictor, build_promptable
from segkit.promptable.render import mask_colours

from .official import randomize
from .test_automatic import DiskSam


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    image = np.full((48, 64, 3), (40, 120, 200), np.uint8)
    cv2.rectangle(image, (8, 6), (30, 30), (30, 30, 220), -1)
    cv2.imwrite(str(folder / "a.png"), image)
    cv2.imwrite(str(folder / "nested" / "b.png"), image[::-1].copy())
    return folder


@pytest.fixture
def disk_model(monkeypatch):
    """``--model`` names resolve to a model with known disk-shaped answers (64 px input)."""
    model = DiskSam().eval()
    monkeypatch.setattr("segkit.promptable.checkpoint.load_promptable", lambda name, **kwargs: model)
    return model


def test_points_and_box_write_masks_overlay_and_json(images, tmp_path, disk_model):
    out = tmp_path / "out"
    assert run(["infer", "--model", "sam_vit_b", str(images), "--point", "20,16", "--box", "4,4,40,30",
                "--out", str(out)]) == 0
    for name in ("a", "nested/b"):
        summary = json.loads((out / f"{name}.json").read_text())
        assert summary["model"] == "sam_vit_b" and (summary["height"], summary["width"]) == (48, 64)
        (record,) = summary["masks"]
        assert record["prompt"] == {"points": [[20.0, 16.0]], "labels": [1], "box": [4.0, 4.0, 40.0, 30.0]}
        mask = cv2.imread(str(out / f"{name}_mask_1.png"), cv2.IMREAD_UNCHANGED) > 0
        ids = cv2.imread(str(out / f"{name}_masks.png"), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16 and set(np.unique(ids)) == {0, 1}
        np.testing.assert_array_equal(ids == 1, mask)
        predictor = SamPredictor(disk_model)
        predictor.set_image(np.zeros((48, 64, 3), np.uint8))
        expected, scores, _ = predictor.predict(np.array([[20.0, 16.0]]), np.array([1]), np.array([4, 4, 40, 30]),
                                                multimask_output=False)
        np.testing.assert_array_equal(mask, expected[0])  # the 5 px disk of the single-mask output
        assert record["area"] == mask.sum() and abs(record["score"] - scores[0]) < 1e-6
        ys, xs = np.nonzero(mask)
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert record["rle_format"] == "coco"
        overlay = cv2.imread(str(out / f"{name}_overlay.png"))[..., ::-1]
        assert overlay.shape[1] == 64 and overlay.shape[0] > 48  # the image, then the legend strip
        legend = overlay[48:]
        assert (legend == 255).all(axis=-1).mean() > 0.5  # a white strip with a swatch of mask 1's colour
        colour = mask_colours(1)[0].astype(np.uint8)
        assert (np.abs(legend.astype(int) - colour).max(axis=-1) <= 1).sum() >= 16
    lines = (out / "masks.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == ["a.png", "nested/b.png"]


def test_everything_writes_every_generated_mask(images, tmp_path, disk_model):
    from pycocotools import mask as mask_utils

    from segkit.promptable import AutomaticMaskGenerator

    out = tmp_path / "everything"
    options = ["points_per_side=4", "pred_iou_thresh=0.858", "stability_score_thresh=0.6"]
    assert run(["infer", "--model", "sam_vit_b", str(images / "a.png"), "--everything", "--out", str(out),
                *[x for o in options for x in ("--amg", o)]]) == 0
    summary = json.loads((out / "a.json").read_text())
    expected = AutomaticMaskGenerator(disk_model, points_per_side=4, pred_iou_thresh=0.858,
                                      stability_score_thresh=0.6).generate(
        cv2.cvtColor(cv2.imread(str(images / "a.png")), cv2.COLOR_BGR2RGB))
    assert len(summary["masks"]) == len(expected) > 4
    ids = cv2.imread(str(out / "a_masks.png"), cv2.IMREAD_UNCHANGED)
    for record, reference in zip(summary["masks"], expected, strict=True):
        rle = {**record["rle"], "counts": record["rle"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), reference["segmentation"])
        assert record["area"] == reference["area"] and record["point_coords"] == reference["point_coords"]
        visible = ids == record["id"]
        assert (visible <= reference["segmentation"]).all()  # drawn where not covered by a smaller mask
    assert not list(out.glob("a_mask_*.png"))  # one id map, no file per automatic mask


def test_prompts_file_gives_each_image_its_prompts(images, tmp_path, disk_model, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"a.png": [{"points": [[10, 10]], "labels": [1]}, {"box": [30, 20, 60, 45]}],
                                   "*": {"points": [[50, 40], [5, 5]], "labels": [1, 0]}}))
    out = tmp_path / "out"
    assert run(["infer", "--model", "sam_vit_b", str(images), "--prompts", str(prompts), "--out", str(out)]) == 0
    assert len(json.loads((out / "a.json").read_text())["masks"]) == 2
    (record,) = json.loads((out / "nested" / "b.json").read_text())["masks"]
    assert record["prompt"]["labels"] == [1, 0]
    prompts.write_text(json.dumps({"other.png": {"box": [0, 0, 5, 5]}}))
    assert run(["infer", "--model", "sam_vit_b", str(images), "--prompts", str(prompts), "--out", str(out)]) == 2
    assert "--prompts has no entry for a.png" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--point", "1,2,3,4"], "expected X,Y or X,Y,LABEL"),
    (["--point", "1,2,7"], "LABEL 1 (foreground) or 0"),
    (["--box", "10,10,5,20"], "X1 > X0"),
    ([], "say what to segment"),
    (["--everything", "--point", "3,3"], "exactly one of these"),
    (["--point", "3,3", "--amg", "points_per_side=4"], "--amg sets options of --everything"),
    (["--everything", "--amg", "points_per_sid=4"], "did you mean 'points_per_side'"),
    (["--everything", "--amg", "points_per_side=x"], "takes an integer"),
    (["--point", "500,3"], "outside the 64x48 image"),
])
def test_bad_prompts_exit_2_with_a_message(images, disk_model, capsys, argv, message):
    assert run(["infer", "--model", "sam_vit_b", str(images / "a.png"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_bad_prompt_files_and_models_exit_2(images, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"a.png": {"points": [[1, 2]], "labels": [1, 1]}}))
    cases = [(["--prompts", str(broken)], "cannot read it as JSON"),
             (["--prompts", str(wrong)], "a.png.labels: expected one label"),
             (["--model", "sam_vit_bb", "--point", "3,3"], "did you mean 'sam_vit_b'"),
             (["--point", "3,3", "--checkpoint", str(tmp_path / "absent.pt")], "no such file")]
    for argv, message in cases:
        model = [] if "--model" in argv else ["--model", "sam_vit_b"]
        assert run(["infer", *model, str(images / "a.png"), *argv]) == 2
        assert message in " ".join(capsys.readouterr().err.split()), message


def test_a_real_model_runs_from_its_checkpoint(images, tmp_path):
    """mobile_sam by name, loaded strictly from a checkpoint in the official layout (random weights)."""
    model = randomize(build_promptable("mobile_sam"), seed=5).eval()
    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save({**model.state_dict(), "image_encoder.head.weight": torch.zeros(1000, 320)}, checkpoint)
    out = tmp_path / "out"
    assert run(["infer", "--model", "mobile_sam", str(images / "a.png"), "--checkpoint", str(checkpoint),
                "--point", "20,16", "--out", str(out), "--device", "cpu"]) == 0
    (record,) = json.loads((out / "a.json").read_text())["masks"]
    predictor = SamPredictor(model)
    predictor.set_image(cv2.cvtColor(cv2.imread(str(images / "a.png")), cv2.COLOR_BGR2RGB))
    masks, scores, _ = predictor.predict(np.array([[20.0, 16.0]]), np.array([1]))
    best = int(np.argmax(scores))
    assert abs(record["score"] - scores[best]) < 1e-5
    np.testing.assert_array_equal(cv2.imread(str(out / "a_mask_1.png"), cv2.IMREAD_UNCHANGED) > 0, masks[best])


def test_overlay_legend_names_each_mask_by_id():
    from segkit.promptable.render import LEGEND_ENTRIES, legend_names, with_legend

    records = [{"predicted_iou": 0.914, "area": 30}, {"predicted_iou": None, "area": 0}]
    assert legend_names(records, "mask") == ["mask 1 iou 0.91", "mask 2 absent"]
    assert legend_names(records[1:], "object") == ["object 1 absent"]
    picture = np.zeros((40, 300, 3), np.uint8)
    one_row = with_legend(picture, records, "mask")
    assert one_row.shape[1] == 300 and one_row.shape[0] > 40
    np.testing.assert_array_equal(one_row[:40], picture)
    many = with_legend(picture, [{"predicted_iou": 0.5, "area": 1}] * (LEGEND_ENTRIES + 5), "mask")
    assert many.shape[0] > one_row.shape[0]  # wrapped onto more rows, the last entry counting the rest
    assert with_legend(picture, [], "mask").shape[0] > 40  # "no masks"
