"""Parity with the official packages: the same random weights in both -> the same masks, IoU predictions and
low-resolution logits (1e-4 relative in float32), and the same automatic masks.

Marked ``official``: run by ``nox -s promptable_parity``, which installs segment-anything, segment-anything-hq and
sam2 beside segkit (segkit never depends on them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segkit.promptable import AutomaticMaskGenerator, SamPredictor, load_promptable
from segkit.promptable.amg_utils import rle_to_mask

from .official import build_official_sam, randomize

pytestmark = pytest.mark.official
RTOL = 1e-4


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |a|; both must be finite (NaNs would compare as equal otherwise)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


@pytest.fixture(scope="module")
def sam_pair(tmp_path_factory):
    """(official SAM ViT-B, segkit's sam_vit_b loaded from the official model's state dict) at 256 px."""
    official = randomize(build_official_sam(256))
    with torch.no_grad():  # sharper masks, so the automatic generator keeps some
        for mlp in official.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10)
            mlp.layers[-1].bias.mul_(10)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), path)
    return official, load_promptable("sam_vit_b", checkpoint=path, image_size=256)


def synthetic_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((180, 240, 3), (40, 120, 200), np.uint8)
    image[30:110, 40:140] = (220, 40, 40)
    image[120:170, 150:230] = (30, 200, 60)
    return (image + rng.integers(0, 12, image.shape)).astype(np.uint8)


PROMPTS = [
    {"point_coords": np.array([[100, 70]]), "point_labels": np.array([1])},
    {"point_coords": np.array([[100, 70], [10, 10]]), "point_labels": np.array([1, 0]),
     "box": np.array([50, 30, 160, 110])},
    {"box": np.array([50, 30, 160, 110]), "multimask_output": False},
]


def compare_predictors(official_predictor, predictor, image, prompts) -> dict[str, float]:
    official_predictor.set_image(image)
    predictor.set_image(image)
    worst = {"embedding": relative(official_predictor.features.numpy(), predictor.features.numpy())}
    for prompt in prompts:
        logits_a = official_predictor.predict(**prompt, return_logits=True)
        logits_b = predictor.predict(**prompt, return_logits=True)
        for name, a, b in zip(("masks", "iou_predictions", "low_res_logits"), logits_a, logits_b, strict=True):
            assert a.shape == b.shape
            worst[name] = max(worst.get(name, 0.0), relative(a, b))
        low_res = logits_a[2][:1]
        masks_a = official_predictor.predict(**prompt, mask_input=low_res)[0]
        masks_b = predictor.predict(**prompt, mask_input=low_res)[0]
        worst["binary_mask_pixels_differing"] = max(worst.get("binary_mask_pixels_differing", 0),
                                                     int((masks_a != masks_b).sum()))
    return worst


def test_sam_vit_b_predictor_matches_segment_anything(sam_pair):
    from segment_anything import SamPredictor as OfficialPredictor

    official, ours = sam_pair
    worst = compare_predictors(OfficialPredictor(official), SamPredictor(ours), synthetic_image(), PROMPTS)
    print(json.dumps(worst))
    for name in ("masks", "iou_predictions", "low_res_logits"):
        assert worst[name] < RTOL, worst
    assert worst["binary_mask_pixels_differing"] == 0


def test_sam_vit_b_at_1024_matches_segment_anything(tmp_path):
    from segment_anything import SamPredictor as OfficialPredictor

    official = randomize(build_official_sam(1024), seed=1)
    path = tmp_path / "sam_vit_b_1024.pth"
    torch.save(official.state_dict(), path)
    ours = load_promptable("sam_vit_b", checkpoint=path)
    worst = compare_predictors(OfficialPredictor(official), SamPredictor(ours), synthetic_image(), PROMPTS[:2])
    print(json.dumps(worst))
    for name in ("masks", "iou_predictions", "low_res_logits"):
        assert worst[name] < RTOL, worst


AMG_OPTIONS = [
    {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.5, "box_nms_thresh": 1.0},
    {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.5},
    {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.5, "box_nms_thresh": 1.0,
     "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 50,
     "output_mode": "uncompressed_rle"},
]


@pytest.mark.parametrize("options", AMG_OPTIONS)
def test_automatic_mask_generator_returns_the_same_masks(sam_pair, options):
    """Same count, and record by record the same prompt point, crop, box, scores and mask (IoU >= 0.9999: a
    pixel whose logit is within float noise of 0 may differ, as between two batch sizes of the official code)."""
    from segment_anything import SamAutomaticMaskGenerator

    official, ours = sam_pair
    image = synthetic_image()
    expected = SamAutomaticMaskGenerator(official, **options).generate(image)
    actual = AutomaticMaskGenerator(ours, **options).generate(image)
    print(f"{len(expected)} official masks, {len(actual)} segkit masks")
    assert len(actual) == len(expected) > 0
    for a, b in zip(expected, actual, strict=True):
        assert a["point_coords"] == b["point_coords"] and a["crop_box"] == b["crop_box"]
        assert np.abs(np.array(a["bbox"]) - np.array(b["bbox"])).max() <= 1
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-4
        assert abs(a["stability_score"] - b["stability_score"]) < 1e-3
        mask_a, mask_b = a["segmentation"], b["segmentation"]
        if isinstance(mask_a, dict):
            mask_a, mask_b = rle_to_mask(mask_a), rle_to_mask(mask_b)
        assert (mask_a & mask_b).sum() / max((mask_a | mask_b).sum(), 1) >= 0.9999
        assert abs(a["area"] - b["area"]) <= max(1, 1e-4 * a["area"])


def test_official_layouts_file_is_current(tmp_path):
    """data/official_layouts.json (used by the default suite) is what the installed official packages build."""
    script = Path(__file__).with_name("make_official_layouts.py")
    stored = json.loads((Path(__file__).with_name("data") / "official_layouts.json").read_text())
    copy = tmp_path / "make_official_layouts.py"
    copy.write_text(script.read_text())
    (tmp_path / "data").mkdir()
    subprocess.run([sys.executable, str(copy), "sam", "sam_hq", "edgesam"], check=True, capture_output=True)
    fresh = json.loads((tmp_path / "data" / "official_layouts.json").read_text())
    for name, layout in fresh.items():
        assert stored[name] == layout, name


def save_random(model: torch.nn.Module, path: Path, seed: int = 0) -> Path:
    randomize(model, seed=seed)
    model.eval()  # TinyViT caches its attention biases in eval(): refresh them from the new weights
    torch.save(model.state_dict(), path)
    return path


class Official:
    """Adapts an official predictor whose ``predict`` takes extra keywords (SAM-HQ's ``hq_token_only``)."""

    def __init__(self, predictor, **options) -> None:
        self.predictor, self.options = predictor, options

    def set_image(self, image):
        self.predictor.set_image(image)

    @property
    def features(self):
        return self.predictor.features

    def predict(self, **kwargs):
        return self.predictor.predict(**kwargs, **self.options)


@pytest.mark.parametrize("hq_token_only", [False, True])
def test_sam_hq_vit_b_matches_segment_anything_hq(tmp_path, hq_token_only):
    from segment_anything_hq import SamPredictor as OfficialPredictor

    official = build_official_sam(256, package="segment_anything_hq")
    path = save_random(official, tmp_path / "sam_hq_vit_b.pth")
    ours = load_promptable("sam_hq_vit_b", checkpoint=path, image_size=256)
    ours.hq_token_only = hq_token_only
    worst = compare_predictors(Official(OfficialPredictor(official), hq_token_only=hq_token_only),
                               SamPredictor(ours), synthetic_image(), PROMPTS)
    print(json.dumps(worst))
    for name in ("masks", "iou_predictions", "low_res_logits"):
        assert worst[name] < RTOL, worst


@pytest.mark.parametrize("name", ["sam_hq_vit_tiny", "mobile_sam"])
def test_tiny_vit_models_match_the_official_code(tmp_path, name):
    """SAM-HQ tiny and MobileSAM (TinyViT-5M; the official TinyViT code fixes a 1024 input)."""
    from segment_anything import SamPredictor as SamOfficialPredictor
    from segment_anything_hq import SamPredictor as HQOfficialPredictor

    from .official import build_official_tiny

    hq = name == "sam_hq_vit_tiny"
    official = build_official_tiny(hq)
    path = save_random(official, tmp_path / f"{name}.pth", seed=2)
    ours = load_promptable(name, checkpoint=path)
    predictor = HQOfficialPredictor(official) if hq else SamOfficialPredictor(official)
    worst = compare_predictors(Official(predictor), SamPredictor(ours), synthetic_image(), PROMPTS[:2])
    print(json.dumps(worst))
    for key in ("masks", "iou_predictions", "low_res_logits"):
        assert worst[key] < RTOL, worst


def test_edge_sam_matches_ssseg_edgesam(tmp_path):
    """EdgeSAM is not on the package registry: SSSegmentation 1.7.0's port (which loads the official checkpoints
    strictly) is the reference, for its 1-, 3- and 4-mask outputs and stability scoring."""
    from ssseg.modules.models.segmentors.edgesam.edgesam import EdgeSAMPredictor

    reference = EdgeSAMPredictor(device="cpu")
    path = save_random(reference.model, tmp_path / "edge_sam.pth", seed=3)
    ours = load_promptable("edge_sam", checkpoint=path)
    image = synthetic_image()
    reference.setimage(image)
    predictor = SamPredictor(ours)
    predictor.set_image(image)
    assert relative(reference.features.numpy(), predictor.features.numpy()) < RTOL
    for count in (1, 3, 4):
        for stability in (False, True):
            prompt = {"point_coords": np.array([[100, 70]]), "point_labels": np.array([1]),
                      "box": np.array([50, 30, 160, 110])}
            expected = reference.predict(**prompt, num_multimask_outputs=count, return_logits=True,
                                         use_stability_score=stability)
            actual = predictor.predict(**prompt, num_multimask_outputs=count, return_logits=True,
                                       use_stability_score=stability)
            for a, b in zip(expected, actual, strict=True):
                assert a.shape == b.shape and relative(a, b) < RTOL
