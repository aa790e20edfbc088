"""Portable ONNX: free batch/height/width verified at two sizes, metadata in the file and model.json,
align_corners honoured, optional baked preprocessing, a fixed size when the model needs one."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from segkit import api
from segkit.export import LogitsExportWrapper, export_model


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_dynamic_onnx_with_metadata(trained_run, tmp_path):
    out = tmp_path / "model.onnx"
    report = api.export(trained_run, out=out, input_size=(48, 64))
    assert report["dynamic"] and report["dynamic_error"] is None
    assert report["verified_shapes"] == [[1, 3, 48, 64], [2, 3, 80, 96]]
    assert report["axes"] == {"images": ["batch", 3, "height", "width"], "logits": ["batch", 5, "height", "width"]}
    sess = session(out)
    seg = api.load(trained_run)
    wrapper = LogitsExportWrapper(seg.model, align_corners=False).eval()
    for shape in [(3, 3, 40, 56), (1, 3, 33, 71)]:  # sizes never seen at export
        images = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = wrapper(images)
        actual = torch.from_numpy(sess.run(None, {"images": images.numpy()})[0])
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["classnames"]) == ["background", "disc", "square", "triangle", "ring"]
    assert json.loads(props["palette"])[1] == [230, 25, 75]
    assert json.loads(props["mean"]) == [123.675, 116.28, 103.53] and props["channel_order"] == "RGB"
    assert props["align_corners"] == "false" and props["segkit_version"]
    beside = json.loads((tmp_path / "model.json").read_text())
    assert beside["classnames"] == json.loads(props["classnames"]) and beside["export"]["dynamic"] is True


def test_export_honours_align_corners(trained_run, tmp_path):
    out = tmp_path / "ac.onnx"
    api.export(trained_run, out=out, input_size=(48, 48), overrides=["align_corners=true"])
    model = api.load(trained_run).model
    images = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with_ac = LogitsExportWrapper(model, align_corners=True).eval()(images)
        without = LogitsExportWrapper(model, align_corners=False).eval()(images)
    assert (with_ac - without).abs().max() > 1e-3  # the setting matters for this model
    actual = torch.from_numpy(session(out).run(None, {"images": images.numpy()})[0])
    torch.testing.assert_close(actual, with_ac, atol=1e-4, rtol=1e-4)
    assert session(out).get_modelmeta().custom_metadata_map["align_corners"] == "true"


def test_baked_preprocessing_matches_the_predictor(trained_run, synthetic_root, tmp_path):
    out = tmp_path / "baked.onnx"
    report = api.export(trained_run, out=out, input_size=(48, 48), bake_preprocessing=True)
    assert report["preprocessing_baked"]
    path = synthetic_root / "images" / "val" / "val_00003.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    batch = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    logits = session(out).run(None, {"images": batch})[0]
    labels = logits.argmax(1)[0]
    expected = api.load(trained_run).predict(rgb)
    assert (labels == expected).mean() > 0.999


class FixedSize(nn.Module):
    """A head that flattens the features into a Linear layer: only its traced size works."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, stride=4, padding=1)
        self.mix = nn.Linear(2 * 8 * 8, 2 * 8 * 8)

    def forward(self, images):
        x = self.conv(images)
        return {"out": self.mix(x.flatten(1)).view(x.shape[0], 2, 8, 8)}


def test_a_model_with_a_fixed_size_is_exported_at_that_size(tmp_path):
    out = tmp_path / "fixed.onnx"
    report = export_model(FixedSize(), out, input_shape=(1, 3, 32, 32), dynamic=True)
    assert report["passed"] and report["dynamic"] is False and report["dynamic_error"]
    assert report["axes"]["images"] == [1, 3, 32, 32]
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = LogitsExportWrapper(FixedSize().eval())(images)
    torch.testing.assert_close(torch.from_numpy(session(out).run(None, {"images": images.numpy()})[0]), expected,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dynamic", [False])
def test_static_on_request(trained_run, tmp_path, dynamic):
    report = api.export(trained_run, out=tmp_path / "s.onnx", input_size=(48, 48), dynamic=dynamic)
    assert report["dynamic"] is False and report["axes"]["images"] == [1, 3, 48, 48]


def test_torchscript_metadata_does_not_replace_the_onnx_one(trained_run, tmp_path):
    api.export(trained_run, out=tmp_path / "model.onnx", input_size=(48, 48), dynamic=False)
    report = api.export(trained_run, format="torchscript", out=tmp_path / "model.ts", input_size=(48, 48))
    assert report["metadata_file"] == str(tmp_path / "model.ts.json")
    assert json.loads((tmp_path / "model.json").read_text())["export"]["format"] == "onnx"
    assert json.loads((tmp_path / "model.ts.json").read_text())["classnames"][0] == "background"
