"""The run folder's pictures and tables (plots/, eval/, vis/) and the drawing helpers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from segkit.viz import draw


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_run_folder_pictures(trained_run):
    for name in ("loss", "lr", "miou"):
        width, height = png_size(trained_run / "plots" / f"{name}.png")
        assert width >= 400 and height >= 300
    width, height = png_size(trained_run / "eval" / "confusion_matrix.png")
    assert width > 1.8 * height  # raw and row-normalised side by side
    for epoch in (1, 2):
        panels = sorted((trained_run / "vis" / f"epoch_{epoch}").glob("*.png"))
        assert len(panels) == 4
        width, height = png_size(panels[0])
        assert width > 3 * 192  # three panels, each enlarged to at least 192 pixels


def test_confusion_and_per_class_csv_agree_with_metrics(trained_run):
    metrics = json.loads((trained_run / "eval" / "metrics.json").read_text())
    with (trained_run / "eval" / "confusion_matrix.csv").open() as fh:
        rows = list(csv.reader(fh))
    names = rows[0][1:]
    assert names == list(metrics["IoU"])
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == names
    assert matrix.sum() == 8 * 48 * 48  # every labelled pixel of the 8 validation images
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    assert iou == pytest.approx([metrics["IoU"][n] for n in names], abs=1e-6)
    with (trained_run / "eval" / "per_class.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["class"] for r in table] == names
    for row in table:
        assert float(row["IoU"]) == pytest.approx(metrics["IoU"][row["class"]], abs=1e-6)
        assert int(row["gt_pixels"]) == matrix[names.index(row["class"])].sum()


def test_palette_png_keeps_ids(tmp_path):
    labels = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)
    palette = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25)]
    path = draw.write_png(tmp_path / "l.png", labels, palette=palette, num_classes=5)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image), labels)  # the ids, not colours
        assert np.array_equal(np.array(image.convert("RGB"))[0, 1], palette[1])


def test_panel_and_legend_shapes():
    image = np.full((50, 60, 3), 100, np.uint8)
    labels = np.zeros((50, 60), np.int64)
    labels[:, 30:] = 2
    names = ["bg", "a", "b"]
    panel = draw.sample_panel(image, labels, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], names, target=labels)
    assert panel.shape[1] > 3 * 192 and panel.dtype == np.uint8
    prediction = panel[18:18 + 192 * 50 // 50, -10]  # the right edge of the prediction panel: class 2 (green)
    assert prediction[:, 1].mean() > prediction[:, 0].mean()
    strip = draw.legend(names, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], [0, 2], width=100)
    assert strip.shape[1] == 100 and (strip < 255).any()


def test_plot_compare_two_runs(trained_run, tmp_path):
    from segkit.viz.plots import plot_compare

    out = plot_compare([trained_run, trained_run], tmp_path / "compare.png")
    width, height = png_size(out)
    assert width >= 1000 and height >= 600


def test_evaluation_plot_draws_only_the_recorded_metrics(tmp_path, monkeypatch):
    """metric_list keeps mAcc/aAcc out of metrics.jsonl: the plot's legend must not list them."""
    import json

    from matplotlib.axes import Axes

    from segkit.viz.plots import plot_run

    rows = [{"kind": "train", "iter": i, "epoch": 1, "loss_total": 1.0 / i, "lr": 0.01} for i in range(1, 4)]
    rows += [{"kind": "eval", "epoch": e, "iter": 3 * e, "mIoU": 0.5 + 0.1 * e, "mDice": 0.6 + 0.1 * e}
             for e in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = []
    original = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda self, *a, **k: labels.append(k.get("label")) or original(self, *a, **k))
    written = plot_run(tmp_path)
    assert [p.name for p in written] == ["loss.png", "lr.png", "miou.png"] and all(p.stat().st_size for p in written)
    assert [label for label in labels if label in ("mIoU", "mAcc", "aAcc", "mDice", "mFscore")] == ["mIoU", "mDice"]
