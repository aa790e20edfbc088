"""SAM 2 video predictor: frame sources, prompts, propagation both ways, the bounded memory bank (small inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.promptable import Sam2VideoPredictor, build_promptable
from segkit.promptable.sam2_video import load_frames

SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    sam2 = build_promptable("sam2.1_hiera_tiny", image_size=SIZE)
    with torch.no_grad():  # random weights of a useful scale: objects present, masks of both signs
        for mlp in sam2.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.normal_(0, 2.0)
        sam2.mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(3.0)
        for parameter in (sam2.maskmem_tpos_enc, sam2.no_obj_ptr, sam2.no_mem_embed):
            parameter.normal_(0, 0.1)
    return sam2


def frames(count: int = 6) -> list[np.ndarray]:
    out = []
    for index in range(count):
        frame = np.full((40, 56, 3), 30, np.uint8)
        frame[8 + index: 24 + index, 10 + 2 * index: 30 + 2 * index] = (220, 60, 40)
        out.append(frame)
    return out


def test_frames_come_from_arrays_a_folder_or_a_video_file(tmp_path):
    import cv2
    from PIL import Image

    source = frames(4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(source):  # numbered names sort by number, not as text
        Image.fromarray(frame).save(folder / f"{index * 5}.png")
    loaded = load_frames(folder)
    assert len(loaded) == 4 and all(np.array_equal(a, b) for a, b in zip(loaded, source, strict=True))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (56, 40))
    for frame in source:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = load_frames(video)
    assert len(decoded) == 4 and decoded[0].shape == (40, 56, 3)
    assert np.abs(decoded[2].astype(int) - source[2]).mean() < 10  # RGB order kept (JPEG-compressed)
    with pytest.raises(ValueError, match="no frames"):
        load_frames(tmp_path / "missing.avi")


def test_prompts_then_propagation_forwards_and_backwards(model):
    predictor = Sam2VideoPredictor(model)
    state = predictor.init_state(frames())
    assert state.images.shape == (6, 3, SIZE, SIZE) and (state.video_height, state.video_width) == (40, 56)
    frame_idx, obj_ids, masks = predictor.add_new_points_or_box(state, 2, obj_id=7, points=[[20, 16]], labels=[1])
    assert (frame_idx, obj_ids, tuple(masks.shape)) == (2, [7], (1, 1, 40, 56))
    _, obj_ids, masks = predictor.add_new_points_or_box(state, 2, obj_id=9, box=[5, 5, 30, 30])
    assert obj_ids == [7, 9] and masks.shape == (2, 1, 40, 56)
    forward = list(predictor.propagate_in_video(state))
    assert [t for t, _, _ in forward] == [2, 3, 4, 5]
    backward = list(predictor.propagate_in_video(state, reverse=True))
    assert [t for t, _, _ in backward] == [2, 1, 0]
    for _, _, masks in forward + backward:
        assert masks.shape == (2, 1, 40, 56) and torch.isfinite(masks).all()
    assert (forward[1][2] > 0).any() and (forward[1][2] <= 0).any()  # tracked masks are real masks
    track = state.objects[7]
    assert set(track.cond) == {2} and set(track.non_cond) == {0, 1, 3, 4, 5}
    assert all(out.maskmem_features.dtype == torch.bfloat16 for out in track.non_cond.values())
    predictor.remove_object(state, 9)
    assert state.obj_ids == [7]


def test_memory_bank_is_bounded_without_changing_the_masks(model, monkeypatch):
    video = frames(12)

    def run(bounded: bool):
        predictor = Sam2VideoPredictor(model, max_obj_ptrs=3)
        if not bounded:
            monkeypatch.setattr(predictor, "_bound_memory", lambda track, frame_idx: None)
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
        sizes, masks = [], []
        for _, _, frame_masks in predictor.propagate_in_video(state):
            sizes.append(len(state.objects[1].non_cond))
            masks.append(frame_masks)
        return sizes, torch.stack(masks)

    bounded_sizes, bounded_masks = run(True)
    unbounded_sizes, unbounded_masks = run(False)
    assert max(bounded_sizes) <= 7 and unbounded_sizes[-1] == 11  # the bank stops growing (7 mask memories)
    torch.testing.assert_close(bounded_masks, unbounded_masks, rtol=0, atol=0)


def test_memory_changes_the_tracked_masks(model):
    """A tracked frame is conditioned on the memory: its masks differ from decoding it as a fresh prompt-less
    frame would (the memory attention is really used)."""
    predictor = Sam2VideoPredictor(model)
    state = predictor.init_state(frames(3))
    predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
    tracked = dict((t, m) for t, _, m in predictor.propagate_in_video(state))
    other = Sam2VideoPredictor(model)
    state_b = other.init_state(frames(3))
    other.add_new_points_or_box(state_b, 0, obj_id=1, points=[[40, 30]], labels=[1])
    tracked_b = dict((t, m) for t, _, m in other.propagate_in_video(state_b))
    assert not torch.allclose(tracked[2], tracked_b[2])  # frame 2 depends on what frame 0's prompt selected


def test_bad_use_is_refused(model):
    predictor = Sam2VideoPredictor(model)
    state = predictor.init_state(frames(2))
    with pytest.raises(RuntimeError, match="before propagating"):
        next(predictor.propagate_in_video(state))
    with pytest.raises(ValueError, match="outside the video"):
        predictor.add_new_points_or_box(state, 5, obj_id=1, points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="together"):
        predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[1, 1]])
    with pytest.raises(TypeError, match="SAM 2"):
        Sam2VideoPredictor(build_promptable("mobile_sam", image_size=64))


def run_cli(argv: list[str]) -> int:
    from segkit import cli

    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


def test_segkit_infer_video_writes_every_frame(model, tmp_path, monkeypatch, capsys):
    import json

    import cv2

    monkeypatch.setattr("segkit.promptable.checkpoint.load_promptable", lambda name, **kwargs: model)
    made = []

    class Recording(Sam2VideoPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr("segkit.promptable.sam2_video.Sam2VideoPredictor", Recording)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (56, 40))
    for frame in frames(4):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    code = run_cli(["infer", str(clip), "--model", "sam2.1_hiera_tiny", "--video", "--box", "8,6,32,26",
                    "--box", "30,2,55,20", "--out", str(out)])
    assert code in (0, None), capsys.readouterr().err
    lines = [json.loads(line) for line in (out / "masks.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    for index in range(4):
        ids = cv2.imread(str(out / "clip" / f"{index:05d}_masks.png"), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (40, 56) and set(np.unique(ids)) <= {0, 1, 2}
        overlay = cv2.imread(str(out / "clip" / f"{index:05d}_overlay.png"))
        assert overlay.shape[1] == 56 and overlay.shape[0] > 40  # the frame, then the legend of the objects
        record = json.loads((out / "clip" / f"{index:05d}.json").read_text())
        assert len(record["masks"]) == 2
    assert [p.fill_hole_area for p in made] == [8]  # the official video predictor's post-processing
    first = json.loads((out / "clip" / "00000.json").read_text())
    assert first["masks"][0]["prompt"] == {"box": [8.0, 6.0, 32.0, 26.0]}  # prompts drawn on the prompted frame


def test_segkit_infer_video_refuses_bad_input(tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")
    assert run_cli(["infer", str(clip), "--model", "mobile_sam", "--video", "--point", "1,1"]) == 2
    assert "SAM 2" in capsys.readouterr().err
    assert run_cli(["infer", str(clip), "--model", "sam2.1_hiera_tiny", "--video"]) == 2
    assert "--point" in capsys.readouterr().err
    assert run_cli(["infer", str(tmp_path / "a.png"), "--model", "sam2.1_hiera_tiny", "--video", "--point",
                    "1,1"]) == 2
    assert "one video file" in capsys.readouterr().err


def test_segkit_infer_video_options_reach_the_predictor(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("segkit.promptable.checkpoint.load_promptable", lambda name, **kwargs: model)
    made, states = [], []

    class Recording(Sam2VideoPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

        def init_state(self, frames, **kwargs):
            states.append(kwargs)
            return super().init_state(frames, **kwargs)

    monkeypatch.setattr("segkit.promptable.sam2_video.Sam2VideoPredictor", Recording)
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for index, frame in enumerate(frames(2)):
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), frame)
    argv = ["infer", str(folder), "--model", "sam2.1_hiera_tiny", "--video", "--box", "8,6,32,26",
            "--out", str(tmp_path / "out")]
    options = ["--video-option", "fill_hole_area=0", "--video-option", "non_overlap_masks=true",
               "--video-option", "offload_state_to_cpu=yes"]
    assert run_cli(argv + options) in (0, None), capsys.readouterr().err
    assert [(p.fill_hole_area, p.non_overlap_masks, p.non_overlap_masks_for_mem_enc) for p in made] == [(0, True, False)]
    assert states == [{"offload_state_to_cpu": True}]
    for bad, says in [("fill_hole_are=3", "did you mean 'fill_hole_area'"), ("non_overlap_masks=maybe", "boolean"),
                      ("fill_hole_area=-1", "0 (off)"), ("fill_hole_area=x", "integer")]:
        assert run_cli(argv + ["--video-option", bad]) == 2
        assert says in capsys.readouterr().err
    assert len(made) == 1  # refused before a model was built
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), frames(1)[0])
    assert run_cli(["infer", str(image), "--model", "sam2.1_hiera_tiny", "--point", "1,1",
                    "--video-option", "non_overlap_masks=true"]) == 2
    assert "add --video" in capsys.readouterr().err


def test_a_mask_prompt_is_the_frame_output_and_is_tracked(model):
    predictor = Sam2VideoPredictor(model)
    state = predictor.init_state(frames(3))
    given = np.zeros((40, 56), bool)
    given[8:24, 10:30] = True
    _, _, masks = predictor.add_new_mask(state, 0, obj_id=1, mask=given)
    got = masks[0, 0].numpy() > 0
    assert (got & given).sum() / (got | given).sum() > 0.9  # the given mask comes back (through 1/4 resolution)
    _, _, masks = predictor.add_new_mask(state, 0, obj_id=2, mask=np.zeros((40, 56), bool))
    assert (masks[1] <= 0).all()  # an empty mask: the object is absent
    assert state.objects[2].cond[0].object_score_logits.item() < 0
    tracked = list(predictor.propagate_in_video(state))
    assert [t for t, _, _ in tracked] == [0, 1, 2]
    with pytest.raises(ValueError, match="40x56"):
        predictor.add_new_mask(state, 1, obj_id=1, mask=np.zeros((10, 10), bool))


# ------------------------------------------------------------------------ options of the official predictor
def test_fill_holes_fills_background_regions_up_to_the_area():
    from segkit.promptable.sam2_video import fill_holes

    logits = torch.full((1, 1, 32, 32), 5.0)
    logits[0, 0, 2:5, 2:5] = -3.0  # a 9-pixel hole: filled
    logits[0, 0, 10:16, 10:16] = -3.0  # a 36-pixel hole: kept
    for i in range(12):  # a diagonal line of 12 pixels: one 8-connected region larger than the area, kept
        logits[0, 0, 18 + i, 1 + i] = -1.0
    logits[0, 0, 0, 20:23] = -2.0  # 3 pixels on the border: filled too (as the official post-processing)
    filled = fill_holes(logits, 9)
    assert (filled[0, 0, 2:5, 2:5] == 0.1).all() and (filled[0, 0, 0, 20:23] == 0.1).all()
    assert torch.equal(filled[0, 0, 10:16, 10:16], logits[0, 0, 10:16, 10:16])
    assert all(filled[0, 0, 18 + i, 1 + i] == -1.0 for i in range(12))
    assert torch.equal(filled[logits > 0], logits[logits > 0])  # foreground untouched
    with pytest.raises(ValueError, match="positive"):
        fill_holes(logits, 0)
    with pytest.raises(ValueError, match="fill_hole_area"):
        Sam2VideoPredictor(build_promptable("sam2.1_hiera_tiny", image_size=SIZE), fill_hole_area=-1)


def test_fill_holes_matches_a_connected_component_reference():
    from scipy import ndimage

    from segkit.promptable.sam2_video import fill_holes

    logits = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = logits.clone()
    for index in range(3):
        labels, _ = ndimage.label((logits[index, 0] <= 0).numpy(), structure=np.ones((3, 3)))
        areas = np.bincount(labels.ravel())
        hole = (labels > 0) & (areas[labels] <= 4)
        expected[index, 0][torch.from_numpy(hole)] = 0.1
    filled = fill_holes(logits, 4)
    assert torch.equal(filled, expected)
    assert (filled == 0.1).any() and (filled <= 0).any()  # some regions filled, larger ones kept


def test_non_overlapping_keeps_the_highest_object_per_pixel():
    from segkit.promptable.sam2_video import non_overlapping

    logits = 20 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    out = non_overlapping(logits)
    winner = logits.argmax(dim=0, keepdim=True)
    assert ((out > 0).sum(dim=0) <= 1).all() and ((logits > 0).sum(dim=0) > 1).any()
    assert torch.equal(out.gather(0, winner), logits.gather(0, winner))  # the winner keeps its logit
    losers = torch.ones_like(logits, dtype=torch.bool).scatter_(0, winner, False)
    assert torch.equal(out[losers], logits[losers].clamp(max=-10.0))
    single = logits[:1]
    assert non_overlapping(single) is single


def track_two_objects(model, **options):
    """A click and an overlapping box on frame 0 of 4 frames, propagated: (predictor, state, masks [T, 2, 1,
    H, W])."""
    predictor = Sam2VideoPredictor(model, **options)
    state = predictor.init_state(frames(4))
    predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
    predictor.add_new_points_or_box(state, 0, obj_id=2, box=[5, 5, 40, 30])
    masks = torch.stack([m for _, _, m in predictor.propagate_in_video(state)])
    return predictor, state, masks


def test_non_overlap_masks_constrains_the_outputs_only(model):
    from segkit.promptable.sam2_video import non_overlapping

    _, plain_state, plain = track_two_objects(model)
    _, state, constrained = track_two_objects(model, non_overlap_masks=True)
    assert ((plain > 0).sum(dim=1) > 1).any()  # the two objects overlapped
    assert ((constrained > 0).sum(dim=1) <= 1).all()
    torch.testing.assert_close(constrained, torch.stack([non_overlapping(m) for m in plain]), rtol=0, atol=0)
    for obj_id in (1, 2):  # the tracking itself is unchanged
        torch.testing.assert_close(state.objects[obj_id].non_cond[3].pred_masks,
                                   plain_state.objects[obj_id].non_cond[3].pred_masks, rtol=0, atol=0)


def test_fill_hole_area_fills_the_stored_and_returned_masks(model):
    from segkit.promptable.sam2_video import fill_holes

    area = 12
    _, plain_state, plain = track_two_objects(model)
    _, state, filled = track_two_objects(model, fill_hole_area=area)
    prompted = plain_state.objects[2].cond[0].pred_masks
    assert not torch.equal(fill_holes(prompted, area), prompted)  # the box's mask had a small hole
    torch.testing.assert_close(state.objects[2].cond[0].pred_masks, fill_holes(prompted, area), rtol=0, atol=0)
    for track in state.objects.values():  # no stored mask keeps a background region of at most `area` pixels
        for out in [*track.cond.values(), *track.non_cond.values()]:
            assert torch.equal(fill_holes(out.pred_masks, area), out.pred_masks)
    assert not torch.equal(filled, plain)


def test_non_overlap_masks_for_mem_enc_encodes_memories_from_the_constrained_masks(model):
    from segkit.promptable.sam2_video import non_overlapping

    _, plain_state, plain = track_two_objects(model)
    predictor, state, masks = track_two_objects(model, non_overlap_masks_for_mem_enc=True)
    outs = [state.objects[obj_id].cond[0] for obj_id in (1, 2)]
    high_res = non_overlapping(torch.cat([predictor._to_input_size(out.pred_masks) for out in outs]))
    for index, out in enumerate(outs):  # prompted frame: memory from the binarised, constrained mask
        expected = predictor._encode_memory(state, 0, high_res[index: index + 1], out.object_score_logits,
                                            binarize=True)
        torch.testing.assert_close(out.maskmem_features, expected, rtol=0, atol=0)
    assert any(not torch.equal(state.objects[i].cond[0].maskmem_features,
                               plain_state.objects[i].cond[0].maskmem_features) for i in (1, 2))
    torch.testing.assert_close(masks[0], plain[0], rtol=0, atol=0)  # the prompted frame's output is unchanged
    assert not torch.equal(masks[1:], plain[1:])  # tracked frames see the constrained memories
    # one object alone: nothing to constrain
    single = [Sam2VideoPredictor(model, non_overlap_masks_for_mem_enc=flag) for flag in (False, True)]
    outputs = []
    for predictor in single:
        state = predictor.init_state(frames(3))
        predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
        outputs.append(torch.stack([m for _, _, m in predictor.propagate_in_video(state)]))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_offload_options_on_the_cpu(model):
    predictor = Sam2VideoPredictor(model)
    state = predictor.init_state(frames(3), offload_video_to_cpu=True, offload_state_to_cpu=True)
    assert state.images.device.type == "cpu" and state.storage_device == torch.device("cpu")
    predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
    offloaded = torch.stack([m for _, _, m in predictor.propagate_in_video(state)])
    state = predictor.init_state(frames(3))
    predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
    torch.testing.assert_close(offloaded, torch.stack([m for _, _, m in predictor.propagate_in_video(state)]),
                               rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_options_keep_frames_and_state_on_the_cpu_with_a_cuda_model(model):
    import copy

    predictor = Sam2VideoPredictor(copy.deepcopy(model).cuda(), fill_hole_area=8)
    results = {}
    for offload in (False, True):
        state = predictor.init_state(frames(4), offload_video_to_cpu=offload, offload_state_to_cpu=offload)
        expected_storage = "cpu" if offload else "cuda"
        assert state.images.device.type == expected_storage and state.storage_device.type == expected_storage
        predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[20, 16]], labels=[1])
        masks = [m for _, _, m in predictor.propagate_in_video(state)]
        assert all(m.device.type == "cuda" for m in masks)  # outputs on the model's device, as the official
        for out in [*state.objects[1].cond.values(), *state.objects[1].non_cond.values()]:
            assert out.pred_masks.device.type == expected_storage
            assert out.maskmem_features.device.type == expected_storage
            assert out.obj_ptr.device.type == "cuda"  # pointers stay on the GPU
        results[offload] = torch.stack(masks).cpu()
    torch.testing.assert_close(results[True], results[False], rtol=1e-5, atol=1e-5)
