"""Parity of SAM 2.1 tiny (image model) with the official ``sam2`` package's ``SAM2ImagePredictor``: the same
random weights in both -> the same embeddings, masks, IoU predictions and low-resolution logits (1e-4 relative
in float32).

Marked ``official``: run in the parity environment (``nox -s promptable_parity``), which has ``sam2`` installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.promptable import SamPredictor, load_promptable

from .official import randomize
from .test_official_parity import RTOL, relative, synthetic_image

pytestmark = pytest.mark.official
SIZE = 256


@pytest.fixture(scope="module")
def sam2_pair(tmp_path_factory):
    """(official SAM2ImagePredictor, segkit's predictor) for SAM 2.1 tiny at 256 px with the same weights."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    official = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
                          hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    randomize(official, seed=1)
    with torch.no_grad():  # sharper masks, so thresholds and the stability fallback see both signs
        for mlp in official.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10)
    official.eval()
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": official.state_dict()}, path)
    official_predictor = SAM2ImagePredictor(official)
    official_predictor._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]
    model = load_promptable("sam2.1_hiera_tiny", checkpoint=path, image_size=SIZE)
    return official_predictor, SamPredictor(model)


PROMPTS = [
    {"point_coords": np.array([[100, 70]]), "point_labels": np.array([1])},
    {"point_coords": np.array([[100, 70], [10, 10]]), "point_labels": np.array([1, 0]),
     "box": np.array([50, 30, 160, 110])},
    {"box": np.array([50, 30, 160, 110]), "multimask_output": False},
    {"point_coords": np.array([[190, 140], [60, 60]]), "point_labels": np.array([1, 1]), "multimask_output": False},
]


def test_sam2_1_tiny_matches_the_official_image_predictor(sam2_pair):
    official, predictor = sam2_pair
    assert type(predictor).__name__ == "Sam2Predictor"
    image = synthetic_image()
    official.set_image(image)
    predictor.set_image(image)
    worst = {"embedding": relative(official._features["image_embed"].numpy(), predictor.features.numpy())}
    for level, (a, b) in enumerate(zip(official._features["high_res_feats"],
                                       predictor.embedding.extras["high_res_features"], strict=True)):
        worst[f"high_res_{level}"] = relative(a.numpy(), b.numpy())
    differing = 0
    for prompt in PROMPTS:
        out_a = official.predict(**prompt, return_logits=True)
        out_b = predictor.predict(**prompt, return_logits=True)
        for name, a, b in zip(("masks", "iou_predictions", "low_res_logits"), out_a, out_b, strict=True):
            assert a.shape == b.shape, name
            worst[name] = max(worst.get(name, 0.0), relative(a, b))
        low_res = out_a[2][np.argmax(out_a[1])][None]
        masks_a = official.predict(**prompt, mask_input=low_res)[0]
        masks_b = predictor.predict(**prompt, mask_input=low_res)[0]
        assert masks_a.any() and not masks_a.all()  # a real mask, not a trivial one
        differing = max(differing, int((masks_a != masks_b).sum()))
    print("SAM 2.1 tiny parity (max relative difference):", worst, "binary mask pixels differing:", differing)
    assert max(worst.values()) < RTOL, worst
    assert differing <= 2


def test_sam2_batched_points_match(sam2_pair):
    """Several objects at once (``predict_torch`` with a batch of prompt sets) as the official batched path."""
    official, predictor = sam2_pair
    image = synthetic_image()
    official.set_image(image)
    predictor.set_image(image)
    points = np.array([[[100, 70]], [[190, 140]], [[20, 160]]], dtype=np.float32)
    labels = np.ones((3, 1), dtype=np.int64)
    masks_a, iou_a, low_a = official.predict(point_coords=points, point_labels=labels, return_logits=True)
    coords = torch.as_tensor(predictor.transform.apply_coords(points, predictor.original_size))
    masks_b, iou_b, low_b = predictor.predict_torch(coords, torch.as_tensor(labels), return_logits=True)
    for a, b in ((masks_a, masks_b), (iou_a, iou_b), (low_a, low_b)):
        assert a.shape == tuple(b.shape)
        assert relative(a, b.numpy()) < RTOL


def test_sam2_memory_modules_match(sam2_pair):
    """The video model's memory encoder and memory attention (rotary attention over the grid, object-pointer
    tokens left unrotated) give the official outputs with the same weights."""
    official, predictor = sam2_pair
    model, reference = predictor.model, official.model
    generator = torch.Generator().manual_seed(3)
    grid = SIZE // 16
    pix_feat = torch.randn(2, 256, grid, grid, generator=generator)
    masks = 4 * torch.randn(2, 1, SIZE, SIZE, generator=generator)
    with torch.no_grad():
        expected = reference.memory_encoder(pix_feat, masks)
        features, pos = model.memory_encoder(pix_feat, masks)
    assert relative(expected["vision_features"].numpy(), features.numpy()) < RTOL
    assert relative(expected["vision_pos_enc"][0].numpy(), pos.numpy()) < RTOL
    tokens = grid * grid
    curr = torch.randn(tokens, 2, 256, generator=generator)
    curr_pos = torch.randn(tokens, 2, 256, generator=generator)
    pointers = 3 * 4  # three object pointers of 256 channels, split into 64-channel tokens
    memory = torch.randn(2 * tokens + pointers, 2, 64, generator=generator)
    memory_pos = torch.randn(2 * tokens + pointers, 2, 64, generator=generator)
    with torch.no_grad():
        expected = reference.memory_attention(curr=[curr], memory=memory, curr_pos=[curr_pos],
                                              memory_pos=memory_pos, num_obj_ptr_tokens=pointers)
        ours = model.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=pointers)
    assert relative(expected.numpy(), ours.numpy()) < RTOL


def moving_square_frames(count: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    frames = []
    for index in range(count):
        frame = np.full((120, 160, 3), (40, 90, 160), np.uint8)
        frame[30 + 4 * index: 80 + 4 * index, 40 + 6 * index: 100 + 6 * index] = (230, 50, 40)
        frame[85:115, 120:155] = (30, 200, 60)
        frames.append((frame + rng.integers(0, 10, frame.shape)).astype(np.uint8))
    return frames


def official_video_pair(version: str, tmp_path, overrides: tuple[str, ...] = (), **options):
    """(official SAM2VideoPredictor, segkit's Sam2VideoPredictor, frames folder): the tiny model at ``SIZE`` with
    the same random weights, the official one built with its post-processing defaults turned off and
    ``overrides`` added; ``options`` go to segkit's predictor."""
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    from segkit.promptable.sam2_video import Sam2VideoPredictor

    folder = "sam2.1" if version == "sam2.1" else "sam2"
    official = build_sam2_video_predictor(
        f"configs/{folder}/{version}_hiera_t.yaml", ckpt_path=None, device="cpu", apply_postprocessing=False,
        hydra_overrides_extra=[f"++model.image_size={SIZE}", "++model.fill_hole_area=0",
                               "++model.binarize_mask_from_pts_for_mem_enc=true",
                               "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
                               "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
                               "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
                               *overrides])
    randomize(official, seed=2)
    with torch.no_grad():
        for mlp in official.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10)
        official.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(3.0)  # objects mostly present
    official.eval()
    path = tmp_path / "weights.pt"
    torch.save({"model": official.state_dict()}, path)
    ours = Sam2VideoPredictor(load_promptable(f"{version}_hiera_tiny", checkpoint=path, image_size=SIZE),
                              **options)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for index, frame in enumerate(moving_square_frames()):
        Image.fromarray(frame).save(frames_dir / f"{index:05d}.jpg", quality=95)
    return official, ours, frames_dir


def prompt_both(official, state_a, ours, state_b, method: str = "add_new_points_or_box", **prompt) -> float:
    """The same prompt given to the official video predictor and to segkit's: their object ids agree; returns the
    relative difference of the masks they return."""
    with torch.inference_mode():
        _, ids_a, masks_a = getattr(official, method)(state_a, **prompt)
    _, ids_b, masks_b = getattr(ours, method)(state_b, **prompt)
    assert list(ids_a) == list(ids_b)
    return relative(masks_a.numpy(), masks_b.numpy())


@pytest.mark.parametrize("version", ["sam2.1", "sam2"])
def test_sam2_tiny_video_matches_the_official_video_predictor(version, tmp_path):
    """Three objects (a click, a box, a mask) on frame 0 of a 5-frame video, propagated, then corrected: every
    frame's masks of every object as the official SAM2VideoPredictor's, with the same random weights."""
    official, ours, frames_dir = official_video_pair(version, tmp_path)

    state_a = official.init_state(video_path=str(frames_dir))
    state_b = ours.init_state(frames_dir)
    prompts = [dict(frame_idx=0, obj_id=1, points=np.array([[70.0, 55.0]]), labels=np.array([1])),
               dict(frame_idx=0, obj_id=2, box=np.array([118.0, 83.0, 157.0, 117.0]))]
    worst = 0.0
    for prompt in prompts:
        worst = max(worst, prompt_both(official, state_a, ours, state_b, **prompt))
    given = np.zeros((120, 160), bool)  # a third object given as a mask
    given[10:40, 110:150] = True
    worst = max(worst, prompt_both(official, state_a, ours, state_b, "add_new_mask", frame_idx=0, obj_id=3,
                                   mask=given))
    with torch.inference_mode():
        expected = {t: m.clone() for t, _, m in official.propagate_in_video(state_a)}
    got = {t: m for t, _, m in ours.propagate_in_video(state_b)}
    assert sorted(expected) == sorted(got) == list(range(5))
    for t in expected:
        a, b = expected[t].numpy(), got[t].numpy()
        assert (a > 0).any() and (a < 0).any()
        worst = max(worst, relative(a, b))
        assert int(((a > 0) != (b > 0)).sum()) <= 2
    # a correction (a background click on a tracked frame), then propagation again from that frame
    correction = dict(frame_idx=3, obj_id=1, points=np.array([[95.0, 70.0]]), labels=np.array([0]),
                      clear_old_points=False)
    worst = max(worst, prompt_both(official, state_a, ours, state_b, **correction))
    with torch.inference_mode():
        expected = {t: m.clone() for t, _, m in official.propagate_in_video(state_a, start_frame_idx=3)}
    got = {t: m for t, _, m in ours.propagate_in_video(state_b, start_frame_idx=3)}
    assert sorted(expected) == sorted(got) == [3, 4]
    for t in expected:
        worst = max(worst, relative(expected[t].numpy(), got[t].numpy()))
    print(f"{version} tiny video parity: max relative difference {worst:.2e}")
    assert worst < RTOL


def connected_components_reference(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What sam2's CUDA kernel ``get_connected_componnets`` returns (its docstring: 8-connected components of
    ``[N, 1, H, W]`` binary masks -> per-pixel label and component area, 0 off the masks), from SciPy, so that the
    official post-processing runs on the CPU (without its extension it warns and skips the hole filling)."""
    from scipy import ndimage

    labels = np.zeros(mask.shape, np.int32)
    counts = np.zeros(mask.shape, np.int32)
    for index, plane in enumerate(mask[:, 0].cpu().numpy().astype(bool)):
        plane_labels, _ = ndimage.label(plane, structure=np.ones((3, 3)))
        areas = np.bincount(plane_labels.ravel())
        labels[index, 0] = plane_labels
        counts[index, 0] = np.where(plane_labels > 0, areas[plane_labels], 0)
    return torch.from_numpy(labels), torch.from_numpy(counts)


def test_sam2_1_video_options_match_the_official_predictor(tmp_path, monkeypatch):
    """``fill_hole_area``, ``non_overlap_masks`` and both offload options of ``init_state``: three overlapping
    objects tracked through the 5-frame video give the official predictor's masks on every frame; without the
    options the masks differ (the objects overlap, the masks have small holes)."""
    import warnings

    import sam2.utils.misc

    from segkit.promptable.sam2_video import Sam2VideoPredictor

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components_reference)
    area = 24
    official, ours, frames_dir = official_video_pair(
        "sam2.1", tmp_path, (f"++model.fill_hole_area={area}", "++model.non_overlap_masks=true"),
        fill_hole_area=area, non_overlap_masks=True)
    plain = Sam2VideoPredictor(ours.model)
    offload = {"offload_video_to_cpu": True, "offload_state_to_cpu": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the official hole filling must not be skipped
        state_a = official.init_state(video_path=str(frames_dir), **offload)
        state_b = ours.init_state(frames_dir, **offload)
        state_c = plain.init_state(frames_dir)
        prompts = [dict(frame_idx=0, obj_id=1, points=np.array([[70.0, 55.0]]), labels=np.array([1])),
                   dict(frame_idx=0, obj_id=2, box=np.array([118.0, 83.0, 157.0, 117.0])),
                   dict(frame_idx=0, obj_id=3, box=np.array([20.0, 10.0, 110.0, 90.0]))]
        worst = 0.0
        for prompt in prompts:
            worst = max(worst, prompt_both(official, state_a, ours, state_b, **prompt))
            plain.add_new_points_or_box(state_c, **prompt)
        with torch.inference_mode():
            expected = {t: m.clone() for t, _, m in official.propagate_in_video(state_a)}
    got = {t: m for t, _, m in ours.propagate_in_video(state_b)}
    without = {t: m for t, _, m in plain.propagate_in_video(state_c)}
    assert sorted(expected) == sorted(got) == list(range(5))
    overlapped = holes = ties = 0
    for t in expected:
        a, b = expected[t].numpy(), got[t].numpy()
        assert ((a > 0).sum(axis=0) <= 1).all()
        # pixels where two objects' logits are within float noise of each other: which one wins the constraint is
        # decided by that noise in either implementation (random weights make some tracked objects alike)
        ours.non_overlap_masks = False
        top2 = np.sort(ours._video_masks(state_b, t).numpy(), axis=0)[-2:]
        ours.non_overlap_masks = True
        decided = np.broadcast_to(top2[1] - top2[0] > 1e-3, a.shape)
        ties += int((~decided[0]).sum())
        worst = max(worst, relative(a[decided], b[decided]))
        assert int(((a > 0) != (b > 0))[decided].sum()) <= 2
        overlapped += int(((without[t] > 0).sum(dim=0) > 1).sum())
        holes += sum(int((track.cond.get(t) or track.non_cond[t]).pred_masks.eq(0.1).sum())
                     for track in state_b.objects.values())
    print(f"sam2.1 tiny video options parity: max relative difference {worst:.2e}; overlapping pixels without "
          f"the constraint {overlapped}, filled low-res pixels {holes}, tied pixels left out {ties}")
    assert overlapped > 0 and holes > 0 and ties < 0.01 * overlapped
    assert worst < RTOL
