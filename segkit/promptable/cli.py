"""``segkit infer --model NAME``: promptable segmentation of images from the command line.

Per image ``<name>`` (folders are searched recursively; their structure is kept under ``--out``):

* ``<name>_masks.png``: a 16-bit map of mask ids (0 = no mask; larger masks first, so smaller ones stay visible),
* ``<name>_mask_<k>.png``: each prompted mask as a 0/255 PNG (prompt modes),
* ``<name>_overlay.png``: the image with each mask in its own colour, outlines, and the prompts drawn,
* ``<name>.json``: per mask its id, score (predicted IoU), stability score, box (x, y, w, h), area, prompt and
  run-length encoding (COCO RLE with pycocotools, else uncompressed, as ``rle_format`` says).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def parse_point(text: str) -> tuple[float, float, int]:
    """``X,Y[,LABEL]`` (label 1 foreground, 0 background)."""
    parts = text.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
        if label not in (0, 1):
            raise ValueError
    except ValueError:
        raise SegkitError(f"--point {text!r}: expected X,Y or X,Y,LABEL with LABEL 1 (foreground) or 0 "
                          "(background), e.g. --point 320,240 or --point 10,10,0") from None
    return x, y, label


def parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError
    except ValueError:
        raise SegkitError(f"--box {text!r}: expected X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0, e.g. "
                          "--box 10,20,200,180") from None
    return box


def prompts_from_options(points: list[str], boxes: list[str]) -> list[dict]:
    """The prompt sets given by ``--point`` / ``--box``: all points (and one box) in one set, or one set per box."""
    parsed = [parse_point(p) for p in points]
    parsed_boxes = [parse_box(b) for b in boxes]
    if len(parsed_boxes) > 1 and parsed:
        raise SegkitError("--point with several --box: give points with at most one box (one prompt), or boxes "
                          "alone (one mask per box), or use --prompts FILE.json")
    point_set = {"points": [[x, y] for x, y, _ in parsed], "labels": [label for *_, label in parsed]} if parsed \
        else {}
    if not parsed_boxes:
        return [point_set] if parsed else []
    return [{**point_set, "box": box} for box in parsed_boxes]


def load_prompt_file(path: Path) -> dict[str, list[dict]]:
    """A JSON object: image name (file name, path relative to the input folder, or ``"*"`` for every image) ->
    a prompt set ``{"points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1]}`` or a list of them."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SegkitError(f"--prompts {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SegkitError(f"--prompts {path}: expected an object mapping image names to prompts, e.g. "
                          '{"street.jpg": {"points": [[320, 240]], "labels": [1]}}')
    out = {}
    for name, value in data.items():
        sets = value if isinstance(value, list) else [value]
        for index, prompt in enumerate(sets):
            check_prompt(prompt, f"{path}: {name}" + (f"[{index}]" if isinstance(value, list) else ""))
        out[name] = sets
    return out


def check_prompt(prompt: Any, where: str) -> None:
    if not isinstance(prompt, dict) or not set(prompt) <= {"points", "labels", "box", "multimask"} or \
            not ({"points", "box"} & set(prompt)):
        raise SegkitError(f"{where}: expected {{\"points\": [[x, y], ...], \"labels\": [1, ...], \"box\": "
                          f"[x0, y0, x1, y1]}} (points and/or box), got {prompt!r}")
    points = np.asarray(prompt.get("points", []), dtype=float)
    if "points" in prompt and (points.ndim != 2 or points.shape[1] != 2 or len(points) == 0):
        raise SegkitError(f"{where}.points: expected a list of [x, y] pairs, got {prompt['points']!r}")
    labels = prompt.get("labels", [1] * len(points))
    if len(labels) != len(points) or any(label not in (0, 1) for label in labels):
        raise SegkitError(f"{where}.labels: expected one label (1 foreground, 0 background) per point, got "
                          f"{labels!r}")
    if "box" in prompt:
        box = prompt["box"]
        if not (isinstance(box, list) and len(box) == 4 and box[2] > box[0] and box[3] > box[1]):
            raise SegkitError(f"{where}.box: expected [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {box!r}")


def find_images(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(image path, its name relative to the input it came from) for files and folders (recursive)."""
    found = []
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            found += [(p, p.relative_to(item)) for p in files]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise SegkitError(f"{item}: no such file or folder")
    if not found:
        raise SegkitError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return found


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SegkitError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def infer_promptable(model_name: str, inputs: list[Path], out: Path, *, checkpoint: Path | None = None,
                     device: str | None = None, everything: bool = False, points: list[str] | None = None,
                     boxes: list[str] | None = None, prompts_file: Path | None = None,
                     amg_options: list[str] | None = None, alpha: float = 0.5, console=None, video: bool = False,
                     video_options: list[str] | None = None, image_size: int | None = None) -> list[dict]:
    """Segment ``inputs`` with a promptable model; returns one summary per image (also written as JSON).
    ``video``: SAM 2 tracking through one video file or frame folder (see :func:`infer_video`), with
    ``video_options`` (``KEY=VALUE``, :data:`VIDEO_OPTIONS`). ``image_size`` (tests, quick runs): the model's input
    size instead of the official one."""
    if video:
        if amg_options:
            raise SegkitError("--amg sets options of --everything, which works on images only; with --video use "
                              "--video-option")
        return infer_video(model_name, inputs, out, checkpoint=checkpoint, device=device, everything=everything,
                           points=points, boxes=boxes, prompts_file=prompts_file, alpha=alpha, console=console,
                           options=video_options, image_size=image_size)
    if video_options:
        raise SegkitError("--video-option sets options of --video; add --video or drop --video-option")
    option_prompts = prompts_from_options(points or [], boxes or [])
    modes = [everything, bool(option_prompts), prompts_file is not None]
    if sum(modes) != 1:
        raise SegkitError("say what to segment: --everything (automatic masks), or --point X,Y[,LABEL] / "
                          "--box X0,Y0,X1,Y1, or --prompts FILE.json (exactly one of these)")
    if amg_options and not everything:
        raise SegkitError("--amg sets options of --everything; add --everything or drop --amg")
    generator_options = parse_amg_options(amg_options or [])
    file_prompts = load_prompt_file(prompts_file) if prompts_file is not None else None
    images = find_images(inputs)
    import torch

    from . import AutomaticMaskGenerator, SamPredictor, load_promptable
    from .render import write_outputs

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_promptable(model_name, checkpoint=checkpoint, device=device,
                            **({} if image_size is None else {"image_size": image_size}))
    predictor = SamPredictor(model)
    generator = AutomaticMaskGenerator(predictor, **generator_options) if everything else None
    summaries = []
    from ..engine.report.display import ImageProgress

    progress_console = console or __import__("rich.console", fromlist=["Console"]).Console(stderr=True)
    batches = generator.batches_per_image() if everything else 1
    with ImageProgress(progress_console, len(images) * batches, f"{model_name}",
                       unit="batch/s" if everything else "img/s",
                       noun="point batches" if everything else "images") as bar:
        for path, name in images:
            image = read_rgb(path)
            if everything:
                records = generator.generate(image, progress=lambda done, total: bar.advance(1))
                masks = [dict(r, prompt=None) for r in records]
            else:
                sets = option_prompts or prompt_sets_for(file_prompts, name)
                masks = predict_prompts(predictor, image, sets)
                bar.advance(1)
            summaries.append(write_outputs(out, name, image, masks, model_name, alpha, individual=not everything))
    (out / "masks.jsonl").parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "masks.jsonl", "".join(json.dumps(s) + "\n" for s in summaries).encode())
    return summaries


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def video_prompts(points: list[str], boxes: list[str], prompts_file: Path | None) -> dict[int, list[dict]]:
    """Frame index -> prompt sets (the k-th set of a frame is object k + 1): ``--point``/``--box`` prompt frame 0
    (several boxes: one object each); ``--prompts FILE.json`` maps frame indices to sets,
    e.g. ``{"0": [{"points": [[320, 240]]}, {"box": [10, 20, 200, 180]}], "30": [{"points": [[300, 250]]}]}``."""
    option_prompts = prompts_from_options(points, boxes)
    if bool(option_prompts) == (prompts_file is not None):
        raise SegkitError("--video: give the prompts of frame 0 with --point X,Y[,LABEL] / --box X0,Y0,X1,Y1, or "
                          "prompts of any frames with --prompts FILE.json (one of the two)")
    if option_prompts:
        return {0: option_prompts}
    by_frame = {}
    for key, sets in load_prompt_file(prompts_file).items():
        if not key.isdigit():
            raise SegkitError(f"--prompts {prompts_file}: with --video the keys are frame indices (\"0\", \"30\"), "
                              f"got {key!r}")
        by_frame[int(key)] = sets
    return by_frame


def infer_video(model_name: str, inputs: list[Path], out: Path, *, checkpoint: Path | None = None,
                device: str | None = None, everything: bool = False, points: list[str] | None = None,
                boxes: list[str] | None = None, prompts_file: Path | None = None, alpha: float = 0.5,
                console=None, options: list[str] | None = None, image_size: int | None = None) -> list[dict]:
    """Track prompted objects through one video (a file read with OpenCV, or a folder of frames) with SAM 2.

    ``options``: ``KEY=VALUE`` of :data:`VIDEO_OPTIONS` (``fill_hole_area`` defaults to 8, as the official
    ``build_sam2_video_predictor`` sets it).

    Writes, per frame ``<video>/<index>``, the files of one image (masks PNG with object ids, overlay, JSON; the
    mask of object k is id k) and ``masks.jsonl``; returns the per-frame summaries."""
    if not model_name.startswith(("sam2_", "sam2.1_")):
        raise SegkitError(f"--video tracks objects with SAM 2: use --model sam2.1_hiera_tiny (or another "
                          f"sam2_hiera_* / sam2.1_hiera_* model), not {model_name}")
    if everything:
        raise SegkitError("--video propagates prompts; --everything (automatic masks) works on images only")
    if len(inputs) != 1 or not (inputs[0].is_dir() or inputs[0].suffix.lower() in VIDEO_SUFFIXES):
        raise SegkitError(f"--video takes one video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or one folder of "
                          f"frames, got {', '.join(map(str, inputs))}")
    source = inputs[0]
    if not source.exists():
        raise SegkitError(f"{source}: no such file or folder")
    prompts = video_prompts(points or [], boxes or [], prompts_file)
    settings = {"fill_hole_area": 8, **parse_key_values("--video-option", options or [], VIDEO_OPTIONS)}
    if settings["fill_hole_area"] < 0:
        raise SegkitError(f"--video-option fill_hole_area={settings['fill_hole_area']}: give 0 (off) or a positive "
                          "number of pixels")
    offloads = {key: settings.pop(key) for key in ("offload_video_to_cpu", "offload_state_to_cpu") if key in settings}
    import torch

    from ..engine.report.display import ImageProgress
    from .amg_utils import masks_to_boxes, masks_to_rle, xyxy_to_xywh
    from .checkpoint import load_promptable
    from .render import write_outputs
    from .sam2_video import Sam2VideoPredictor, load_frames

    try:
        frames = load_frames(source)
    except ValueError as exc:
        raise SegkitError(f"{source}: {exc}") from None
    height, width = frames[0].shape[:2]
    for frame_idx, sets in prompts.items():
        if frame_idx >= len(frames):
            raise SegkitError(f"prompts for frame {frame_idx}, but {source} has {len(frames)} frames")
        for prompt in sets:
            for x, y in prompt.get("points", []):
                if not (0 <= x < width and 0 <= y < height):
                    raise SegkitError(f"point {[x, y]} lies outside the {width}x{height} frames")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_promptable(model_name, checkpoint=checkpoint, device=device,
                            **({} if image_size is None else {"image_size": image_size}))
    predictor = Sam2VideoPredictor(model, **settings)
    state = predictor.init_state(frames, **offloads)
    for frame_idx, sets in sorted(prompts.items()):
        for obj_index, prompt in enumerate(sets):
            coords = prompt.get("points") or None
            labels = prompt.get("labels", [1] * len(coords)) if coords else None
            predictor.add_new_points_or_box(state, frame_idx, obj_index + 1, coords, labels, box=prompt.get("box"))
    summaries = []
    progress_console = console or __import__("rich.console", fromlist=["Console"]).Console(stderr=True)
    start = min(prompts)
    order = list(range(start, len(frames))) + list(range(start - 1, -1, -1))


    def tracked():  # forwards from the first prompted frame, then backwards from the frame before it
        yield from predictor.propagate_in_video(state)
        if start > 0:
            yield from predictor.propagate_in_video(state, start_frame_idx=start - 1, reverse=True)

    with ImageProgress(progress_console, len(order), model_name, unit="frame/s", noun="frames") as bar:
        for frame_idx, obj_ids, logits in tracked():
            records = []
            for obj_id, mask_logits in zip(obj_ids, logits, strict=True):
                mask = (mask_logits[0] > 0).cpu()
                prompt = next((p for i, p in enumerate(prompts.get(frame_idx, [])) if i + 1 == obj_id), None)
                records.append({"segmentation": mask.numpy(), "area": int(mask.sum()),
                                "bbox": xyxy_to_xywh(masks_to_boxes(mask[None])[0]), "predicted_iou": None,
                                "stability_score": None, "rle": masks_to_rle(mask[None])[0], "prompt": prompt})
            name = Path(source.stem) / f"{frame_idx:05d}.png"
            summary = write_outputs(out, name, frames[frame_idx], records, model_name, alpha, individual=False,
                                    noun="object")
            summaries.append({**summary, "frame": frame_idx})
            bar.advance(1)
    summaries.sort(key=lambda s: s["frame"])
    write_atomic(out / "masks.jsonl", "".join(json.dumps(s) + "\n" for s in summaries).encode())
    return summaries


AMG_OPTIONS = {"points_per_side": int, "points_per_batch": int, "pred_iou_thresh": float,
               "stability_score_thresh": float, "stability_score_offset": float, "box_nms_thresh": float,
               "crop_n_layers": int, "crop_nms_thresh": float, "crop_overlap_ratio": float,
               "crop_n_points_downscale_factor": int, "min_mask_region_area": int}

VIDEO_OPTIONS = {"fill_hole_area": int, "non_overlap_masks": bool, "non_overlap_masks_for_mem_enc": bool,
                 "offload_video_to_cpu": bool, "offload_state_to_cpu": bool}
"""``--video-option`` keys: the first three are the video predictor's, the offloads ``init_state``'s (the names of
the official ``SAM2VideoPredictor``)."""

_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def parse_key_values(flag: str, options: list[str], known: dict[str, type]) -> dict:
    """``KEY=VALUE`` strings of ``flag`` -> ``{key: value}`` typed by ``known`` (int, float or bool)."""
    parsed: dict = {}
    kinds = {int: "n integer", float: " number", bool: " boolean (true or false)"}
    for option in options:
        key, _, value = option.partition("=")
        if key not in known:
            from ..errors import did_you_mean

            raise SegkitError(f"{flag} {option!r}: unknown option {key!r}{did_you_mean(key, known)} (known: "
                              f"{', '.join(known)})")
        kind = known[key]
        try:
            parsed[key] = _BOOLEANS[value.strip().lower()] if kind is bool else kind(value)
        except (KeyError, ValueError):
            raise SegkitError(f"{flag} {option!r}: {key} takes a{kinds[kind]}") from None
    return parsed


def parse_amg_options(options: list[str]) -> dict:
    """``KEY=VALUE`` strings -> AutomaticMaskGenerator arguments (output as uncompressed RLE, encoded later)."""
    return {"output_mode": "uncompressed_rle", **parse_key_values("--amg", options, AMG_OPTIONS)}


def prompt_sets_for(prompts: dict[str, list[dict]], name: Path) -> list[dict]:
    for key in (name.as_posix(), name.name, "*"):
        if key in prompts:
            return prompts[key]
    raise SegkitError(f"--prompts has no entry for {name.as_posix()} (keys: {', '.join(sorted(prompts))}); add "
                      'one, or a "*" entry for every image')


def predict_prompts(predictor, image: np.ndarray, prompt_sets: list[dict]) -> list[dict]:
    """One mask per prompt set: with a single point and no box SAM's three candidates are scored and the best is
    kept (the official advice for ambiguous prompts); otherwise the single-mask output."""
    import torch

    from .amg_utils import masks_to_boxes, masks_to_rle, xyxy_to_xywh

    predictor.set_image(image)
    height, width = image.shape[:2]
    masks = []
    for prompt in prompt_sets:
        coords = np.asarray(prompt["points"], dtype=float) if prompt.get("points") else None
        labels = np.asarray(prompt.get("labels", [1] * (0 if coords is None else len(coords))))
        box = np.asarray(prompt["box"], dtype=float) if "box" in prompt else None
        outside = [p for p in (coords if coords is not None else []) if not (0 <= p[0] < width and 0 <= p[1] < height)]
        if outside:
            raise SegkitError(f"point {list(outside[0])} lies outside the {width}x{height} image")
        multimask = prompt.get("multimask", coords is not None and len(coords) == 1 and box is None)
        result, scores, _ = predictor.predict(coords, labels if coords is not None else None, box,
                                              multimask_output=multimask)
        best = int(np.argmax(scores))
        mask = torch.as_tensor(result[best])
        masks.append({"segmentation": result[best], "area": int(mask.sum()),
                      "bbox": xyxy_to_xywh(masks_to_boxes(mask[None])[0]), "predicted_iou": float(scores[best]),
                      "stability_score": None, "rle": masks_to_rle(mask[None])[0],
                      "prompt": {k: v for k, v in prompt.items()}})
    return masks


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
