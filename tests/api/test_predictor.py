"""segkit.load(...).predict: every input kind, the same result as segkit eval's inference, TTA and slide."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segkit
from segkit import api
from segkit.engine.evaluator import inference_kwargs
from segkit.errors import SegkitError
from segkit.evaluation.inference import predict_logits


@pytest.fixture(scope="module")
def seg(trained_run):
    return segkit.load(trained_run)


def val_image(synthetic_root, name="val_00001"):
    return synthetic_root / "images" / "val" / f"{name}.png"


def test_input_kinds_agree(seg, synthetic_root):
    path = val_image(synthetic_root)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    from_path = seg.predict(path)
    assert from_path.shape == rgb.shape[:2] and from_path.dtype == np.int64
    assert np.array_equal(seg.predict(str(path)), from_path)
    assert np.array_equal(seg.predict(rgb), from_path)
    assert np.array_equal(seg.predict(Image.open(path)), from_path)
    assert np.array_equal(seg.predict(np.ascontiguousarray(rgb[:, :, ::-1]), bgr=True), from_path)
    assert np.array_equal(seg.predict(rgb.astype(np.float32) / 255.0), from_path)
    grey = seg.predict(rgb[:, :, 0])
    assert grey.shape == rgb.shape[:2]
    listed = seg.predict([rgb, path])
    assert isinstance(listed, list) and all(np.array_equal(x, from_path) for x in listed)


def test_matches_the_eval_pipeline_and_keeps_odd_sizes(seg, trained_run, synthetic_root):
    """The label map equals argmax of predict_logits on the dataset's own test sample (what eval scores)."""
    from segkit.data.datasets.build import build_dataset

    rec = seg.recipe
    dataset = build_dataset(rec.dataset.model_dump(), mode="TEST", seed=rec.seed)
    sample = dataset[1]
    with torch.no_grad():
        logits = predict_logits(seg.model, sample["image"][None], output_size=tuple(sample["seg_target"].shape),
                                **inference_kwargs(rec.inference, rec.num_classes, rec.align_corners))
    assert np.array_equal(seg.predict(val_image(synthetic_root)), logits.argmax(1)[0].numpy())
    odd = np.random.default_rng(0).integers(0, 255, (37, 61, 3), dtype=np.uint8)
    assert seg.predict(odd).shape == (37, 61)


def test_tta_and_slide_settings_are_used(trained_run, synthetic_root):
    path = val_image(synthetic_root)
    flipped = api.load(trained_run, tta="flip")
    assert flipped.infer_kwargs["flip"] is True
    plain = api.load(trained_run)
    logits_flip, logits_plain = flipped.logits(path), plain.logits(path)
    assert not torch.allclose(logits_flip, logits_plain)  # flip TTA averages a second pass
    slide = api.load(trained_run, overrides=['inference.forward.mode="slide"', "inference.forward.cropsize=[32, 32]",
                                             "inference.forward.stride=[16, 16]"])
    assert slide.infer_kwargs["mode"] == "slide"
    assert slide.predict(path).shape == (48, 48)
    assert not torch.allclose(slide.logits(path), logits_plain)


def test_overlay_classnames_palette(seg, synthetic_root):
    assert seg.classnames == ["background", "disc", "square", "triangle", "ring"]
    assert seg.palette.shape == (5, 3) and seg.palette[1].tolist() == [230, 25, 75]
    path = val_image(synthetic_root)
    labels = seg.predict(path)
    picture = seg.overlay(path, legend=False, alpha=1.0)
    assert picture.shape == (48, 48, 3)
    assert np.array_equal(picture, seg.palette[labels])  # alpha 1: the colours alone
    with_legend = seg.overlay(path)
    assert with_legend.shape[0] > 48 and np.array_equal(with_legend[:48, :48], seg.overlay(path, legend=False))


def test_bad_inputs_are_user_errors(seg, trained_run):
    with pytest.raises(SegkitError, match="HxWx3"):
        seg.predict(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(SegkitError, match="cannot read"):
        seg.predict(trained_run / "recipe.toml")
    with pytest.raises(SegkitError, match="give the weights with --checkpoint"):
        segkit.load(trained_run / "recipe.toml")


def test_api_all_lists_public_functions():
    assert {"train", "evaluate", "infer", "export", "load", "prepare_data", "list_registry"} <= set(api.__all__)
    assert all(callable(getattr(api, name)) for name in api.__all__)
    assert segkit.load is api.load
