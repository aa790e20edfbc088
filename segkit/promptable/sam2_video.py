"""SAM 2 video predictor: prompts on some frames, masks propagated through the video with a bounded memory bank.

Behaviour follows the authors' ``SAM2VideoPredictor`` (reimplemented): each object is tracked on its own. A frame
with prompts is a *conditioning* frame: its mask comes from the prompts alone (the image embedding plus
``no_mem_embed``), and before propagation its memory is encoded from the binarised mask. Every other frame is
conditioned on the memory bank by memory attention: the conditioning frames' memories, the memories of the last
``num_maskmem - 1`` tracked frames (each with its temporal encoding) and the object pointers (the decoder's output
token, projected) of the conditioning frames in the past and of the last ``max_obj_ptrs - 1`` frames; its mask
then gives its own memory. Object-score logits below 0 mean the object is absent (its mask is set to -1024).

The bank is bounded: outputs of tracked frames farther than ``max(max_obj_ptrs, num_maskmem)`` frames from the frame
being tracked are dropped (they can no longer be attended to), so memory stays constant over any video length; only the
conditioning frames' memories are kept for the whole video. Memories are stored in bfloat16, as the official
predictor stores them.

Options of the official predictor: ``fill_hole_area`` (background regions of a frame's low-resolution mask of at
most that many pixels become foreground, on the CPU through OpenCV's connected components: the official package
needs its CUDA extension for this and silently skips it without one), ``non_overlap_masks`` (each output pixel
keeps only the object with the highest logit), ``non_overlap_masks_for_mem_enc`` (the same constraint on the masks a
frame's memories are encoded from) and ``init_state``'s ``offload_video_to_cpu`` / ``offload_state_to_cpu``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .sam2 import Sam2

NO_OBJECT_SCORE = -1024.0
SIGMOID_SCALE_FOR_MEMORY, SIGMOID_BIAS_FOR_MEMORY = 20.0, -10.0
MAX_OBJECT_POINTERS = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sine encoding of scalar positions ``[N]`` -> ``[N, dim]`` (sines then cosines)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions[:, None] / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Mask logits ``[N, 1, h, w]`` with every background region (logit <= 0, 8-connected) of at most ``max_area``
    pixels set to 0.1 (just foreground), as the official ``fill_holes_in_mask_scores``: a region is filled whether
    it is enclosed or touches the border. Connected components run on the CPU (OpenCV) whatever the device."""
    if max_area <= 0:
        raise ValueError(f"fill_hole_area must be positive, got {max_area}")
    import cv2

    background = (logits <= 0).to("cpu", torch.uint8).numpy()
    holes = np.zeros(background.shape, dtype=bool)
    for index, plane in enumerate(background[:, 0]):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(plane, connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area)
        small = small[small > 0]  # label 0 is the foreground here
        if small.size:
            holes[index, 0] = np.isin(labels, small)
    return torch.where(torch.from_numpy(holes).to(logits.device), torch.tensor(0.1, dtype=logits.dtype,
                                                                              device=logits.device), logits)


def non_overlapping(logits: torch.Tensor) -> torch.Tensor:
    """Objects' mask logits ``[N, 1, h, w]`` with each pixel kept by the object of the highest logit (the first on
    a tie); the others' logits there are capped at -10 (sigmoid 4.5e-5), as the official constraint."""
    if logits.shape[0] <= 1:
        return logits
    winner = logits.argmax(dim=0, keepdim=True)
    keep = winner == torch.arange(logits.shape[0], device=logits.device)[:, None, None, None]
    return torch.where(keep, logits, logits.clamp(max=-10.0))


def load_frames(source: str | os.PathLike | Sequence[np.ndarray]) -> list[np.ndarray]:
    """RGB uint8 frames from a list of arrays, a folder of images (sorted by the number in their names, else by
    name) or a video file (OpenCV)."""
    if not isinstance(source, (str, os.PathLike)):
        frames = [np.asarray(frame) for frame in source]
    elif Path(source).is_dir():
        files = [p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        files.sort(key=lambda p: (int(p.stem), p.name) if p.stem.isdigit() else (float("inf"), p.name))
        from PIL import Image

        frames = [np.array(Image.open(p).convert("RGB")) for p in files]
    else:
        import cv2

        capture = cv2.VideoCapture(str(source))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    if not frames:
        raise ValueError(f"no frames in {source}")
    for frame in frames:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.shape != frames[0].shape:
            raise ValueError(f"frames must be HxWx3 uint8 images of one size, got {frame.shape} {frame.dtype}")
    return frames


@dataclass
class FrameOutput:
    """What tracking one object on one frame keeps: low-resolution logits, object pointer, object score and
    (once encoded) the memory."""

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    maskmem_features: torch.Tensor | None = None


@dataclass
class ObjectTrack:
    points: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: set[int] = field(default_factory=set)


@dataclass
class VideoState:
    """A video being segmented: the normalised frames, their size, the tracked objects and a one-frame cache of
    image features. ``storage_device`` holds the per-frame masks and memories (the CPU with
    ``offload_state_to_cpu``); object pointers, scores and the cached features stay on the model's device."""

    images: torch.Tensor
    video_height: int
    video_width: int
    storage_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    objects: dict[int, ObjectTrack] = field(default_factory=dict)
    cached: tuple[int, dict] | None = None
    maskmem_pos_enc: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)


class Sam2VideoPredictor:
    """Track objects through a video with a :class:`~segkit.promptable.sam2.Sam2` model.

    ``init_state(frames)`` -> state; ``add_new_points_or_box(state, frame_idx, obj_id, points, labels, box)`` ->
    ``(frame_idx, obj_ids, masks)``; ``propagate_in_video(state)`` yields ``(frame_idx, obj_ids, masks)`` per
    frame, masks ``[objects, 1, H, W]`` logits at the video's size (``> 0`` is the object).

    ``fill_hole_area``: background regions of each frame's low-resolution mask (``image_size / 4`` square) of at
    most this many pixels become foreground before the mask is stored and returned (0: off; the official
    ``build_sam2_video_predictor`` sets 8). ``non_overlap_masks``: in the returned masks each pixel belongs to at
    most the object with the highest logit (the stored masks are untouched). ``non_overlap_masks_for_mem_enc``:
    the memory of each object on a frame is encoded from its mask with that constraint against the other objects
    on the same frame (sam2 1.1.0 tracks objects one at a time, so there the option no longer has an effect).
    """

    def __init__(self, model: Sam2, max_obj_ptrs: int = MAX_OBJECT_POINTERS, fill_hole_area: int = 0,
                 non_overlap_masks: bool = False, non_overlap_masks_for_mem_enc: bool = False) -> None:
        if not isinstance(model, Sam2):
            raise TypeError("the video predictor needs a SAM 2 model (sam2_hiera_* / sam2.1_hiera_*)")
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be 0 (off) or positive, got {fill_hole_area}")
        self.model = model
        self.max_obj_ptrs = max_obj_ptrs
        self.fill_hole_area = int(fill_hole_area)
        self.non_overlap_masks = non_overlap_masks
        self.non_overlap_masks_for_mem_enc = non_overlap_masks_for_mem_enc

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ----------------------------------------------------------------------------------------------- state
    def init_state(self, frames: str | os.PathLike | Sequence[np.ndarray], offload_video_to_cpu: bool = False,
                   offload_state_to_cpu: bool = False) -> VideoState:
        """Load and normalise the frames (each resized to the model's square as the official loader does).

        The normalised frames go to the model's device unless ``offload_video_to_cpu`` (then each frame is moved
        when it is encoded); the per-frame masks and memories stay on the model's device unless
        ``offload_state_to_cpu``. On a CPU model both are the CPU anyway."""
        from PIL import Image

        frames = load_frames(frames)
        size = self.model.image_size
        resized = [np.array(Image.fromarray(frame).resize((size, size))) / 255.0 for frame in frames]
        images = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
        mean, std = self.model.pixel_mean.cpu(), self.model.pixel_std.cpu()
        images = (images - mean) / std
        if not offload_video_to_cpu:
            images = images.to(self.device)
        storage = torch.device("cpu") if offload_state_to_cpu else self.device
        return VideoState(images, frames[0].shape[0], frames[0].shape[1], storage_device=storage)

    def reset_state(self, state: VideoState) -> None:
        state.objects.clear()
        state.cached = None

    def remove_object(self, state: VideoState, obj_id: int) -> None:
        state.objects.pop(obj_id, None)

    # ---------------------------------------------------------------------------------------------- prompts
    @torch.no_grad()
    def add_new_points_or_box(self, state: VideoState, frame_idx: int, obj_id: int, points=None, labels=None,
                              clear_old_points: bool = True, box=None):
        """Add clicks (``points`` ``[N, 2]`` x, y in video pixels, ``labels`` 1/0) and/or a ``box`` for one
        object on one frame; returns the frame's masks of every object at the video's size."""
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        if points is None and box is None:
            raise ValueError("give points or a box")
        if not 0 <= frame_idx < state.num_frames:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (0..{state.num_frames - 1})")
        coords = torch.as_tensor(np.zeros((0, 2)) if points is None else points, dtype=torch.float32).reshape(1, -1, 2)
        point_labels = torch.as_tensor(np.zeros(0) if labels is None else labels, dtype=torch.int32).reshape(1, -1)
        if coords.shape[1] != point_labels.shape[1]:
            raise ValueError("as many labels as points are needed")
        if box is not None:
            if not clear_old_points:
                raise ValueError("a box must come before the clicks: add it with clear_old_points=True")
            coords = torch.cat([torch.as_tensor(box, dtype=torch.float32).reshape(1, 2, 2), coords], dim=1)
            point_labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), point_labels], dim=1)
        coords = coords / torch.tensor([state.video_width, state.video_height]) * self.model.image_size
        track = state.objects.setdefault(obj_id, ObjectTrack())
        if not clear_old_points and frame_idx in track.points:
            old_coords, old_labels = track.points[frame_idx]
            coords, point_labels = torch.cat([old_coords, coords], 1), torch.cat([old_labels, point_labels], 1)
        track.points[frame_idx] = (coords, point_labels)
        is_init_cond = frame_idx not in track.tracked
        previous = track.cond.get(frame_idx) or track.non_cond.get(frame_idx)
        prev_logits = None if previous is None else previous.pred_masks.to(self.device).clamp(-32.0, 32.0)
        out, _ = self._track_frame(state, track, frame_idx, is_init_cond, (coords, point_labels), prev_logits,
                                   run_memory_encoder=False)
        if is_init_cond or frame_idx in track.cond:
            track.non_cond.pop(frame_idx, None)
            track.cond[frame_idx] = out
        else:  # a correction on a tracked frame stays a tracked frame (its memory is re-encoded before propagating)
            track.non_cond[frame_idx] = out
        return frame_idx, state.obj_ids, self._video_masks(state, frame_idx)

    @torch.no_grad()
    def add_new_mask(self, state: VideoState, frame_idx: int, obj_id: int, mask):
        """Give one object's mask (``[H, W]`` bool at the video's size) on one frame. The mask itself is the
        frame's output (as logits +-10); its object pointer comes from the decoder prompted by the mask."""
        if not 0 <= frame_idx < state.num_frames:
            raise ValueError(f"frame_idx {frame_idx} is outside the video (0..{state.num_frames - 1})")
        mask = torch.as_tensor(np.asarray(mask)).float()
        if mask.shape != (state.video_height, state.video_width):
            raise ValueError(f"the mask must be {state.video_height}x{state.video_width}, got {tuple(mask.shape)}")
        size = self.model.image_size
        mask = F.interpolate(mask[None, None], (size, size), mode="bilinear", align_corners=False, antialias=True)
        mask = (mask >= 0.5).float().to(self.device)
        track = state.objects.setdefault(obj_id, ObjectTrack())
        track.points.pop(frame_idx, None)
        model = self.model
        features = self._features(state, frame_idx)
        high_res = mask * SIGMOID_SCALE_FOR_MEMORY + SIGMOID_BIAS_FOR_MEMORY
        low_res = F.interpolate(high_res, (size // 4, size // 4), mode="bilinear", align_corners=False,
                                antialias=True)
        _, decoded_scores, token = self._decode(features["embedding"], features["high_res"], None,
                                                model.mask_downsample(mask), multimask=False)
        decoded = (decoded_scores > 0).float()  # the decoder's own object score gates the pointer first
        obj_ptr = decoded * model.obj_ptr_proj(token) + (1 - decoded) * model.no_obj_ptr
        present = mask.flatten(1).gt(0).any(dim=1, keepdim=True).float()  # then whether the mask is empty
        object_scores = SIGMOID_SCALE_FOR_MEMORY * present + SIGMOID_BIAS_FOR_MEMORY
        obj_ptr = present * obj_ptr + (1 - present) * model.no_obj_ptr
        out = FrameOutput(self._store_masks(state, low_res), obj_ptr, object_scores)
        if frame_idx not in track.tracked or frame_idx in track.cond:
            track.non_cond.pop(frame_idx, None)
            track.cond[frame_idx] = out
        else:
            track.non_cond[frame_idx] = out
        return frame_idx, state.obj_ids, self._video_masks(state, frame_idx)

    # ---------------------------------------------------------------------------------------------- tracking
    @torch.no_grad()
    def propagate_in_video(self, state: VideoState, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None,
                           reverse: bool = False) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every object from ``start_frame_idx`` (default: the first prompted frame) forwards (or
        backwards with ``reverse``), yielding each frame's masks."""
        if not state.objects or not all(track.cond for track in state.objects.values()):
            raise RuntimeError("add points or a box for every object before propagating")
        pending: dict[int, list[FrameOutput]] = {}  # prompted frames' outputs without a memory yet, by frame
        for track in state.objects.values():
            for frame_idx, out in [*track.non_cond.items(), *track.cond.items()]:
                if out.maskmem_features is None:
                    pending.setdefault(frame_idx, []).append(out)
        for frame_idx, outs in pending.items():  # memories of prompted frames, from their binarised masks
            masks = {id(out): self._to_input_size(out.pred_masks.to(self.device)) for out in outs}
            if self.non_overlap_masks_for_mem_enc:
                masks = self._non_overlapping_on_frame(state, frame_idx, masks, outs)
            for out in outs:
                out.maskmem_features = self._encode_memory(state, frame_idx, masks[id(out)],
                                                           out.object_score_logits, binarize=True)
        if start_frame_idx is None:
            start_frame_idx = min(t for track in state.objects.values() for t in track.cond)
        limit = state.num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            order = range(start_frame_idx, max(start_frame_idx - limit, 0) - 1, -1) if start_frame_idx > 0 else []
        else:
            order = range(start_frame_idx, min(start_frame_idx + limit, state.num_frames - 1) + 1)
        joint = self.non_overlap_masks_for_mem_enc and len(state.objects) > 1
        for frame_idx in order:
            tracked: list[tuple[FrameOutput, torch.Tensor]] = []
            for track in state.objects.values():
                if frame_idx not in track.cond:
                    out, raw = self._track_frame(state, track, frame_idx, False, None, None,
                                                 run_memory_encoder=not joint, reverse=reverse)
                    track.non_cond[frame_idx] = out
                    tracked.append((out, raw))
                track.tracked.add(frame_idx)
                self._bound_memory(track, frame_idx)
            if joint and tracked:  # every object decoded: encode the memories under the non-overlap constraint
                raws = {id(out): self._to_input_size(raw) for out, raw in tracked}
                masks = self._non_overlapping_on_frame(state, frame_idx, raws, [out for out, _ in tracked])
                for out, _ in tracked:
                    out.maskmem_features = self._encode_memory(state, frame_idx, masks[id(out)],
                                                               out.object_score_logits, binarize=False)
            yield frame_idx, state.obj_ids, self._video_masks(state, frame_idx)

    def _non_overlapping_on_frame(self, state: VideoState, frame_idx: int, masks: dict[int, torch.Tensor],
                                  outs: list[FrameOutput]) -> dict[int, torch.Tensor]:
        """``masks`` (input-size logits of ``outs``, keyed by ``id``) under the non-overlap constraint against
        every object's mask on the frame (the other objects' stored masks where they have no entry)."""
        stack, keys = [], []
        for track in state.objects.values():
            for out in (track.cond.get(frame_idx), track.non_cond.get(frame_idx)):
                if out is not None and id(out) not in masks:
                    stack.append(self._to_input_size(out.pred_masks.to(self.device)))
                    keys.append(None)
        stack += [masks[id(out)] for out in outs]
        keys += [id(out) for out in outs]
        constrained = non_overlapping(torch.cat(stack))
        return {key: constrained[i: i + 1] for i, key in enumerate(keys) if key is not None}

    def _store_masks(self, state: VideoState, low_res: torch.Tensor) -> torch.Tensor:
        """A frame's low-resolution logits as kept in the state: holes filled (``fill_hole_area``), on the
        storage device."""
        if self.fill_hole_area > 0:
            low_res = fill_holes(low_res, self.fill_hole_area)
        return low_res.to(state.storage_device, non_blocking=True)

    def _bound_memory(self, track: ObjectTrack, frame_idx: int) -> None:
        """Drop tracked (non-prompted) frames that no later frame can attend to any more (farther than both the
        mask-memory window and the object-pointer window)."""
        window = max(self.max_obj_ptrs, self.model.num_maskmem)
        for t in [t for t in track.non_cond if abs(t - frame_idx) >= window]:
            del track.non_cond[t]

    def _video_masks(self, state: VideoState, frame_idx: int) -> torch.Tensor:
        masks = []
        for track in state.objects.values():
            out = track.cond.get(frame_idx) or track.non_cond.get(frame_idx)
            size = self.model.image_size // 4
            masks.append(out.pred_masks.to(self.device) if out is not None else
                         torch.full((1, 1, size, size), NO_OBJECT_SCORE, device=self.device))
        masks = F.interpolate(torch.cat(masks), (state.video_height, state.video_width), mode="bilinear",
                              align_corners=False)
        return non_overlapping(masks) if self.non_overlap_masks else masks

    def _to_input_size(self, logits: torch.Tensor) -> torch.Tensor:
        size = self.model.image_size
        return F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)

    def _features(self, state: VideoState, frame_idx: int) -> dict:
        """The frame's stride-16 features (without ``no_mem_embed``), their sine encoding and the projected
        high-resolution maps, cached for the last frame."""
        if state.cached is not None and state.cached[0] == frame_idx:
            return state.cached[1]
        model = self.model
        image = state.images[frame_idx: frame_idx + 1].to(self.device)
        stride4, stride8, stride16 = model.image_encoder(image)
        features = {"embedding": stride16, "pos": model.image_encoder.neck.position_encoding(stride16),
                    "high_res": [model.mask_decoder.conv_s0(stride4), model.mask_decoder.conv_s1(stride8)]}
        state.cached = (frame_idx, features)
        return features

    def _track_frame(self, state: VideoState, track: ObjectTrack, frame_idx: int, is_init_cond: bool,
                     points: tuple[torch.Tensor, torch.Tensor] | None, mask_logits: torch.Tensor | None,
                     run_memory_encoder: bool, reverse: bool = False) -> tuple[FrameOutput, torch.Tensor]:
        """Decode one object on one frame; returns the stored output and the raw low-resolution logits (before
        hole filling), from which the memory is encoded (here with ``run_memory_encoder``, or later by the
        caller)."""
        model = self.model
        features = self._features(state, frame_idx)
        if is_init_cond:
            conditioned = features["embedding"] + model.no_mem_embed.reshape(1, -1, 1, 1)
        else:
            conditioned = self._condition_on_memory(state, track, frame_idx, features, reverse)
        num_points = 0 if points is None else points[1].shape[1]
        multimask = num_points <= 1  # SAM 2 outputs three masks for zero or one click (tracking included)
        low_res, object_scores, token = self._decode(conditioned, features["high_res"], points, mask_logits,
                                                     multimask)
        obj_ptr = model.obj_ptr_proj(token)
        present = (object_scores > 0).float()
        obj_ptr = present * obj_ptr + (1 - present) * model.no_obj_ptr
        out = FrameOutput(self._store_masks(state, low_res), obj_ptr, object_scores)
        if run_memory_encoder:
            out.maskmem_features = self._encode_memory(state, frame_idx, self._to_input_size(low_res),
                                                       object_scores, binarize=points is not None)
        return out, low_res

    def _decode(self, embedding: torch.Tensor, high_res: list[torch.Tensor],
                points: tuple[torch.Tensor, torch.Tensor] | None, mask_logits: torch.Tensor | None,
                multimask: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The SAM heads on memory-conditioned features: the chosen low-resolution mask ``[1, 1, h, w]``, the
        object score and the output token for the object pointer."""
        model, device = self.model, self.device
        if points is None:  # no clicks: one padding point
            points = (torch.zeros(1, 1, 2), -torch.ones(1, 1, dtype=torch.int32))
        coords, labels = points[0].to(device), points[1].to(device)
        if mask_logits is not None and tuple(mask_logits.shape[-2:]) != model.prompt_encoder.mask_input_size:
            mask_logits = F.interpolate(mask_logits.float(), model.prompt_encoder.mask_input_size,
                                        mode="bilinear", align_corners=False, antialias=True)
        sparse, dense = model.prompt_encoder((coords, labels), None, mask_logits)
        masks, iou, tokens, object_scores = model.mask_decoder.decode_all(
            embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, multimask, high_res)
        masks = torch.where(object_scores[:, :, None, None] > 0, masks, NO_OBJECT_SCORE).float()
        if multimask:
            best = iou.argmax(dim=-1)
            rows = torch.arange(masks.shape[0], device=device)
            return masks[rows, best][:, None], object_scores, tokens[rows, best]
        return masks, object_scores, tokens[:, 0]

    def _encode_memory(self, state: VideoState, frame_idx: int, high_res_masks: torch.Tensor,
                       object_scores: torch.Tensor, binarize: bool) -> torch.Tensor:
        model = self.model
        pix_feat = self._features(state, frame_idx)["embedding"]
        mask = (high_res_masks > 0).float() if binarize else high_res_masks.sigmoid()
        mask = mask * SIGMOID_SCALE_FOR_MEMORY + SIGMOID_BIAS_FOR_MEMORY
        features, pos = model.memory_encoder(pix_feat, mask, skip_mask_sigmoid=True)
        if model.no_obj_embed_spatial is not None:
            absent = (object_scores <= 0).float()
            features = features + absent[..., None, None] * model.no_obj_embed_spatial[..., None, None]
        if state.maskmem_pos_enc is None:
            state.maskmem_pos_enc = pos
        return features.to(torch.bfloat16).to(state.storage_device, non_blocking=True)

    def _condition_on_memory(self, state: VideoState, track: ObjectTrack, frame_idx: int, features: dict,
                             reverse: bool) -> torch.Tensor:
        """Memory attention of the frame's features over the memory bank (see the module docstring)."""
        model, device = self.model, self.device
        embedding = features["embedding"]
        batch, channels, height, width = embedding.shape
        sign = -1 if reverse else 1
        num_maskmem, mem_dim = model.num_maskmem, model.maskmem_tpos_enc.shape[-1]
        memories: list[tuple[int, FrameOutput]] = [(0, out) for out in track.cond.values()]
        for t_pos in range(1, num_maskmem):
            previous = frame_idx - sign * (num_maskmem - t_pos)
            out = track.non_cond.get(previous)
            if out is not None:
                memories.append((t_pos, out))
        pos_enc = state.maskmem_pos_enc.flatten(2).permute(2, 0, 1)
        memory = [out.maskmem_features.to(device).flatten(2).permute(2, 0, 1) for _, out in memories]
        memory_pos = [pos_enc + model.maskmem_tpos_enc[num_maskmem - t_pos - 1] for t_pos, _ in memories]
        max_ptrs = min(state.num_frames, self.max_obj_ptrs)
        pointers = [((frame_idx - t) * sign if model.version == "sam2.1" else abs(frame_idx - t), out.obj_ptr)
                    for t, out in track.cond.items() if (t >= frame_idx if reverse else t <= frame_idx)]
        for t_diff in range(1, max_ptrs):
            t = frame_idx - sign * t_diff
            if t < 0 or t >= state.num_frames:
                break
            out = track.non_cond.get(t)
            if out is not None:
                pointers.append((t_diff, out.obj_ptr))
        num_ptr_tokens = 0
        if pointers:
            positions = torch.tensor([p for p, _ in pointers], dtype=torch.float32, device=device)
            ptrs = torch.stack([ptr for _, ptr in pointers])  # [P, B, C]
            if model.version == "sam2.1":  # projected sine encoding of the signed frame distance
                ptr_pos = model.obj_ptr_tpos_proj(sine_encoding_1d(positions / (max_ptrs - 1), channels))
                ptr_pos = ptr_pos[:, None].expand(-1, batch, mem_dim)
            else:  # SAM 2: no temporal encoding of the pointers
                ptr_pos = ptrs.new_zeros(len(pointers), batch, mem_dim)
            split = channels // mem_dim  # each pointer becomes `split` tokens of mem_dim channels
            ptrs = ptrs.reshape(-1, batch, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            memory.append(ptrs)
            memory_pos.append(ptr_pos.repeat_interleave(split, dim=0))
            num_ptr_tokens = ptrs.shape[0]
        curr = embedding.flatten(2).permute(2, 0, 1)
        curr_pos = features["pos"].flatten(2).permute(2, 0, 1)
        out = model.memory_attention(curr, torch.cat(memory), curr_pos, torch.cat(memory_pos),
                                     num_obj_ptr_tokens=num_ptr_tokens)
        return out.permute(1, 2, 0).reshape(batch, channels, height, width)
