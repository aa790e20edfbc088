"""ONNX and TorchScript export: round trip within atol, refusal (nothing written) when the result differs."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import segkit.export.torchscript as torchscript_backend
from segkit.errors import SegkitError
from segkit.export import LogitsExportWrapper, export_model

pytest.importorskip("onnxruntime")


class TinySegmentor(nn.Module):
    """A segkit-like segmentor: conv-BN-ReLU at stride 2, 1x1 classifier, ``{"out": logits at 1/2}``."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Conv2d(8, num_classes, 1)
        self.dropout = nn.Dropout2d(0.5)  # active only in train mode: export must use eval mode

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.dropout(self.stem(images)))}


class NoisySegmentor(TinySegmentor):
    """Adds fresh random noise on every call: no exported copy can reproduce the eager output."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = super().forward(images)["out"]
        return {"out": logits + torch.rand_like(logits)}


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt,loader", [("onnx", "onnx"), ("torchscript", "jit")])
def test_round_trip_within_atol(tmp_path, fmt, loader):
    model = TinySegmentor()
    model.train()  # the caller's training flag is restored afterwards
    out = tmp_path / "export" / f"model.{fmt}"
    report = export_model(model, out, format=fmt, input_shape=(1, 3, 32, 48))
    assert report["passed"] and report["max_abs_diff"] < 1e-4
    assert report["format"] == fmt and report["path"] == str(out) and report["input_shape"] == [1, 3, 32, 48]
    assert model.training
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary files left

    images = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        expected = LogitsExportWrapper(model.eval())(images)
    assert expected.shape == (1, 3, 32, 48)  # logits resized to the input size
    if loader == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])
    else:
        actual = torch.jit.load(str(out))(images)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_mismatch_is_refused_and_nothing_is_written(tmp_path, fmt):
    out = tmp_path / "model.out"
    with pytest.raises(SegkitError, match=r"differs from eager PyTorch by .* more than atol=0.0001"):
        export_model(NoisySegmentor(), out, format=fmt, input_shape=(1, 3, 16, 16))
    assert list(tmp_path.iterdir()) == []


def test_mismatching_runner_keeps_the_existing_file(tmp_path, monkeypatch):
    out = tmp_path / "model.ts"
    out.write_text("previous export")
    real_run = torchscript_backend.run
    monkeypatch.setattr(torchscript_backend, "run", lambda path, images: real_run(path, images) + 1e-3)
    with pytest.raises(SegkitError, match="atol"):
        export_model(TinySegmentor(), out, format="torchscript", input_shape=(1, 3, 16, 16))
    assert out.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.ts"]
    report = export_model(TinySegmentor(), out, format="torchscript", input_shape=(1, 3, 16, 16), atol=1e-2)
    assert report["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)


def test_missing_onnxruntime_asks_for_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(SegkitError, match=r'pip install "segkit\[onnx\]"'):
        export_model(TinySegmentor(), tmp_path / "m.onnx", format="onnx", input_shape=(1, 3, 16, 16))
    assert list(tmp_path.iterdir()) == []


def test_onnx_falls_back_to_the_torchscript_based_exporter(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the torch.export-based exporter needs it
    report = export_model(TinySegmentor(), tmp_path / "m.onnx", format="onnx", input_shape=(1, 3, 16, 16))
    assert report["passed"] and report["max_abs_diff"] < 1e-4 and (tmp_path / "m.onnx").is_file()


def test_bad_arguments(tmp_path):
    with pytest.raises(SegkitError, match="did you mean 'onnx'"):
        export_model(TinySegmentor(), tmp_path / "m", format="onxx")
    with pytest.raises(SegkitError, match="input_shape"):
        export_model(TinySegmentor(), tmp_path / "m", format="torchscript", input_shape=(3, 16, 16))
