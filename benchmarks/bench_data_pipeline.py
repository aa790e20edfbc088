"""Data pipeline throughput on one core: the ADE20k training pipeline through segkit's dataset code path against
the same pipeline written with plain NumPy/OpenCV the way SSSegmentation 1.7.0 implements it.

Pipeline: Resize((2048, 512), keep_ratio, scale_range=(0.5, 2)) -> RandomCrop(512, one_category_max_ratio=0.75)
-> RandomFlip(0.5) -> PhotoMetricDistortion -> Normalize -> ToTensor -> Padding(512, 'tensor'), on generated
640x480 JPEGs with ADE-style PNG label maps (0 = void, 1..150 = classes) read from disk.

The baseline follows SSSegmentation's documented behaviour (reference facts §8): label maps read as float32 and
remapped key by key (``seg[seg == k] = v`` over the 151 keys), RandomCrop copying the whole sample and calling
``np.unique`` on every try, PhotoMetricDistortion doing float32 arithmetic on the whole image at every step,
float32 label tensors. It is written here from that description, not copied.

summary: images per CPU second (one thread, so per core: the thread's CPU time, which other processes on a shared
machine do not inflate) of segkit as its training loader runs on CUDA (fused fast paths of Compose; ``Normalize``
left to the device, where ``DeviceNormalize`` finishes the batch, as MMSegmentation's ``SegDataPreProcessor``
does), segkit normalising in the worker (``segkit_in_worker``: a CPU run, or ``normalize_on_device = false``),
segkit with the fast paths off, and the baseline (median over repeats of all images); ``speedup`` = segkit /
baseline with the range of the per-repeat speedups, ``speedup_normalized_in_worker`` the same for
``segkit_in_worker``; ``speedup_wall`` the same from wall-clock time. ``device_finish_ms_on_cpu`` is what
``DeviceNormalize`` costs per image of a 16-image batch when the device is this CPU (a GPU does it in
microseconds). ``decode`` (reading and decoding the two files
with ``cv2.imread``, nothing else) runs in the same rotation: ``speedup_ceiling`` = decode / baseline is the most any
pipeline that decodes these files can reach, and ``speedup_after_decode`` compares what comes after it.

Each contender runs in its own process, as a DataLoader worker runs one pipeline, and the processes take turns pass
by pass (one runs at a time, the order rotating from repeat to repeat). segkit's processes keep freed memory for
reuse, as its loader workers do (they are forked after ``configure_cpu`` applied ``runtime.retain_freed_memory``,
on by default); the baseline's and the decoder's run with the C library's default, as SSSegmentation's do.
``baseline_kept`` is the baseline in a process that keeps freed memory too, so ``speedup_same_allocator`` says what
the pipeline itself gains with the allocator setting taken out of the comparison. The earlier measurement ran them
image by image in turn in one process (``speedup_one_process`` keeps that figure for comparison): every image then
started on caches and a heap the other contender had just used, a cost of roughly a fixed share of a millisecond
per image that a worker running its own pipeline does not pay, and which weighs most on the fastest contender.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
CROP = 512
NUM_CLASSES = 150
ADE_REMAP = {0: -100, **{i: i - 1 for i in range(1, NUM_CLASSES + 1)}}
KEEPS_FREED_MEMORY = {"segkit", "segkit_in_worker", "segkit_unfused", "baseline_kept"}
"""Contenders whose process keeps freed memory for reuse (``segkit.engine.threads.retain_freed_memory``)."""
SEGKIT_PIPELINE = [
    {"type": "Resize", "output_size": [2048, 512], "keep_ratio": True, "scale_range": [0.5, 2.0]},
    {"type": "RandomCrop", "crop_size": [CROP, CROP], "one_category_max_ratio": 0.75},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": list(MEAN), "std": list(STD)},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": [CROP, CROP], "data_type": "tensor"},
]


# --------------------------------------------------------------------------- data
def write_ade_like(root: Path, count: int, height: int = 480, width: int = 640, seed: int = 0) -> list[str]:
    """``count`` JPEG photos-alike and PNG label maps (Voronoi regions of random ADE classes, ~10% void)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    palette = rng.integers(0, 256, (NUM_CLASSES + 1, 3))
    ys, xs = np.mgrid[0:height, 0:width]
    ids = []
    for index in range(count):
        seeds = rng.uniform((0, 0), (height, width), (int(rng.integers(8, 20)), 2))
        nearest = np.argmin((ys[..., None] - seeds[:, 0]) ** 2 + (xs[..., None] - seeds[:, 1]) ** 2, axis=-1)
        classes = rng.integers(1, NUM_CLASSES + 1, len(seeds))
        classes[rng.random(len(seeds)) < 0.1] = 0  # void ("other")
        labels = classes[nearest].astype(np.uint8)
        shade = (ys / height * 40 + xs / width * 30)[..., None]
        image = palette[labels] * 0.8 + shade + rng.normal(0, 12, (height, width, 3))
        imageid = f"ADE_train_{index:08d}"
        cv2.imwrite(str(root / "images" / f"{imageid}.jpg"), np.clip(image, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(root / "annotations" / f"{imageid}.png"), labels)
        ids.append(imageid)
    return ids


# --------------------------------------------------------------------------- SSSegmentation-style baseline
def baseline_read(root: Path, imageid: str) -> dict:
    """Image as read by OpenCV; label map to float32, then each ``clsid2label`` key replaced in turn, then checked."""
    image = cv2.imread(str(root / "images" / f"{imageid}.jpg"))
    seg = cv2.imread(str(root / "annotations" / f"{imageid}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    for key, value in ADE_REMAP.items():
        seg[seg == key] = value
    invalid = ((seg < 0) | (seg >= NUM_CLASSES)) & (seg != -100)
    assert invalid.sum() == 0
    return {"image": image, "seg_target": seg, "width": image.shape[1], "height": image.shape[0], "id": imageid}


def baseline_resize(sample: dict) -> dict:
    scale_draw = np.random.random_sample() * (2.0 - 0.5) + 0.5
    target = int(2048 * scale_draw), int(512 * scale_draw)
    height, width = sample["image"].shape[:2]
    factor = min(max(target) / max(height, width), min(target) / min(height, width))
    size = int(width * factor + 0.5), int(height * factor + 0.5)
    sample["image"] = cv2.resize(sample["image"], size, interpolation=cv2.INTER_LINEAR)
    sample["seg_target"] = cv2.resize(sample["seg_target"], size, interpolation=cv2.INTER_NEAREST)
    return sample


def baseline_random_crop(sample: dict) -> dict:
    for _ in range(10):  # every try copies the whole sample, crops, and counts classes with np.unique
        image, seg = sample["image"].copy(), sample["seg_target"].copy()
        height, width = image.shape[:2]
        crop_h, crop_w = min(CROP, height), min(CROP, width)
        top, left = np.random.randint(0, height - crop_h + 1), np.random.randint(0, width - crop_w + 1)
        image, seg = image[top:top + crop_h, left:left + crop_w], seg[top:top + crop_h, left:left + crop_w]
        values, counts = np.unique(seg, return_counts=True)
        counts = counts[values != -100]
        if len(counts) > 1 and np.max(counts) / np.sum(counts) < 0.75:
            break
    if len(counts) == 0:
        return sample
    sample["image"], sample["seg_target"] = image, seg
    return sample


def baseline_random_flip(sample: dict) -> dict:
    if np.random.rand() > 0.5:
        return sample
    sample["image"], sample["seg_target"] = np.flip(sample["image"], axis=1), np.flip(sample["seg_target"], axis=1)
    return sample


def _convert(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _contrast(image: np.ndarray) -> np.ndarray:
    return _convert(image, alpha=np.random.uniform(0.5, 1.5)) if np.random.randint(2) else image


def baseline_photometric(sample: dict) -> dict:
    """Brightness, contrast (first or last), saturation, hue: float32 math on the whole image, HSV per step."""
    image = sample["image"]
    if np.random.randint(2):
        image = _convert(image, beta=np.random.uniform(-32, 32))
    mode = np.random.randint(2)
    if mode == 1:
        image = _contrast(image)
    if np.random.randint(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=np.random.uniform(0.5, 1.5))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if np.random.randint(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + np.random.randint(-18, 18)) % 180
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0:
        image = _contrast(image)
    sample["image"] = image
    return sample


def baseline_normalize(sample: dict) -> dict:
    image = sample["image"].astype(np.float32)
    cv2.cvtColor(image, cv2.COLOR_BGR2RGB, image)
    cv2.subtract(image, np.float64(np.array(MEAN).reshape(1, -1)), image)
    cv2.multiply(image, 1 / np.float64(np.array(STD).reshape(1, -1)), image)
    sample["image"] = image
    return sample


def baseline_to_tensor(sample: dict) -> dict:
    sample["image"] = torch.from_numpy(sample["image"].transpose((2, 0, 1)).astype(np.float32))
    sample["seg_target"] = torch.from_numpy(sample["seg_target"].astype(np.float32))
    return sample


def baseline_padding(sample: dict) -> dict:
    height, width = sample["image"].shape[1:]
    top, left = (CROP - height) // 2, (CROP - width) // 2
    pad = (left, CROP - width - left, top, CROP - height - top)
    sample["image"] = F.pad(sample["image"], pad, value=0)
    sample["seg_target"] = F.pad(sample["seg_target"], pad, value=-100)
    return sample


BASELINE_STAGES = [baseline_resize, baseline_random_crop, baseline_random_flip, baseline_photometric,
                   baseline_normalize, baseline_to_tensor, baseline_padding]


# --------------------------------------------------------------------------- timing
def _segkit_dataset(root: Path, ids: list[str]):
    from segkit.data.datasets import BaseDataset

    return BaseDataset(rootdir=str(root), image_dir="images", ann_dir="annotations", imageids=ids,
                       num_classes=NUM_CLASSES, clsid2label=ADE_REMAP, data_pipelines=SEGKIT_PIPELINE)


def _contender(name: str, root: Path, ids: list[str]) -> tuple[Callable[[int], object], Callable[[int], None]]:
    """``(run image i, select epoch e)`` of contender ``name``."""
    if name in ("segkit", "segkit_in_worker", "segkit_unfused"):
        dataset = _segkit_dataset(root, ids)
        dataset.pipeline.fast = name != "segkit_unfused"  # unfused: the same transforms one by one
        if name == "segkit":  # as the training loader runs on CUDA
            dataset.pipeline.defer_normalization()
        return dataset.__getitem__, dataset.set_epoch

    def baseline(index: int) -> dict:
        sample = baseline_read(root, ids[index])
        for stage in BASELINE_STAGES:
            sample = stage(sample)
        return sample

    def decode(index: int) -> tuple:
        return (cv2.imread(str(root / "images" / f"{ids[index]}.jpg")),
                cv2.imread(str(root / "annotations" / f"{ids[index]}.png"), cv2.IMREAD_UNCHANGED))

    return {"baseline": baseline, "baseline_kept": baseline, "decode": decode}[name], lambda epoch: None


def _serve(conn, name: str, root: Path, ids: list[str]) -> None:
    """A contender's process: for each epoch it is sent, run every image; answer (CPU seconds of this thread, wall
    seconds) of the whole pass."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)
    if name in KEEPS_FREED_MEMORY:  # segkit: as its loader workers run (forked after configure_cpu applied it)
        from segkit.engine.threads import retain_freed_memory

        retain_freed_memory()
    run_one, set_epoch = _contender(name, root, ids)
    for index in range(2):  # warm-up
        run_one(index)
    while (epoch := conn.recv()) is not None:
        set_epoch(epoch)
        c0, w0 = time.thread_time(), time.perf_counter()
        for index in range(len(ids)):
            run_one(index)
        conn.send((time.thread_time() - c0, time.perf_counter() - w0))


def _time_in_processes(names: list[str], root: Path, ids: list[str], repeats: int
                       ) -> tuple[list[list[float]], list[list[float]]]:
    """Per contender and repeat, CPU and wall seconds of a pass over all images. Each contender runs in its own
    process and the processes take turns pass by pass (the order rotates), so that load from elsewhere falls on all
    alike while each pass runs undisturbed, as a DataLoader worker does."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pipes, workers = [], []
    for name in names:
        parent, child = context.Pipe()
        worker = context.Process(target=_serve, args=(child, name, root, ids), daemon=True)
        worker.start()
        pipes.append(parent)
        workers.append(worker)
    cpu = [[0.0] * repeats for _ in names]
    wall = [[0.0] * repeats for _ in names]
    try:
        for repeat in range(repeats):
            shift = repeat % len(names)
            for slot in [*range(shift, len(names)), *range(shift)]:
                pipes[slot].send(repeat)
                cpu[slot][repeat], wall[slot][repeat] = pipes[slot].recv()
    finally:
        for pipe, worker in zip(pipes, workers, strict=True):
            pipe.send(None)
            worker.join(timeout=30)
    return cpu, wall


def _time_interleaved(contenders: list[Callable[[int], object]], count: int) -> tuple[list[float], list[float]]:
    """CPU seconds (this thread's: what other processes on a shared machine do does not count) and wall seconds each
    contender takes over images ``0..count-1``, run image by image in turn (the order rotates), so that load from
    other processes falls on all alike."""
    cpu, wall = [0.0] * len(contenders), [0.0] * len(contenders)
    for index in range(count):
        shift = index % len(contenders)
        for slot in [*range(shift, len(contenders)), *range(shift)]:
            c0, w0 = time.thread_time(), time.perf_counter()
            contenders[slot](index)
            cpu[slot] += time.thread_time() - c0
            wall[slot] += time.perf_counter() - w0
    return cpu, wall


def _stage_ms(read: Callable[[int], dict], stages: list[tuple[str, Callable]], count: int) -> dict[str, float]:
    """Mean milliseconds per image of reading and of each stage."""
    totals = dict.fromkeys(["read", *(name for name, _ in stages)], 0.0)
    for index in range(count):
        t0 = time.perf_counter()
        sample = read(index)
        totals["read"] += time.perf_counter() - t0
        for name, stage in stages:
            t0 = time.perf_counter()
            sample = stage(sample)
            totals[name] += time.perf_counter() - t0
    return {name: round(1e3 * total / count, 3) for name, total in totals.items()}


def _device_finish_ms(root: Path, ids: list[str], batch_size: int = 16) -> float:
    """Milliseconds per image of ``DeviceNormalize`` finishing a batch of deferred samples on this CPU (best of 5)."""
    from segkit.data import collate_train

    dataset = _segkit_dataset(root, ids)
    finish = dataset.pipeline.defer_normalization()
    batch = collate_train([dataset[i % len(ids)] for i in range(batch_size)])
    best = float("inf")
    for _ in range(5):
        c0 = time.thread_time()
        finish(batch, torch.device("cpu"))
        best = min(best, time.thread_time() - c0)
    return round(1e3 * best / batch_size, 3)


def run(num_images: int = 32, repeats: int = 11) -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = write_ade_like(root, num_images)
        names = ["segkit", "segkit_unfused", "baseline", "decode", "baseline_kept", "segkit_in_worker"]
        cpu, wall = _time_in_processes(names, root, ids, repeats)
        cpu = [[round(v, 4) for v in row] for row in cpu]
        wall = [[round(v, 4) for v in row] for row in wall]
        # the older measurement: segkit and the baseline in turn in this one process (one heap for both)
        np.random.seed(0)
        dataset = _segkit_dataset(root, ids)
        contenders = [dataset.__getitem__, _contender("baseline", root, ids)[0]]
        for index in range(2):  # warm-up
            for fn in contenders:
                fn(index)
        one_process = []
        for repeat in range(repeats):
            dataset.set_epoch(repeat)
            seconds_cpu, _ = _time_interleaved(contenders, num_images)
            one_process.append(seconds_cpu)
        rng = np.random.default_rng(0)
        segkit_stages = _stage_ms(
            lambda i: dataset.read(ids[i]),
            [(type(t).__name__, lambda s, t=t: t(s, rng)) for t in dataset.pipeline.transforms], num_images)
        from segkit.data.transforms import fused

        resize, crop, flip, distortion, normalize, _, padding = dataset.pipeline.transforms
        bounds = dataset.pipeline.compact_bounds()

        def read_compact(index: int) -> dict:
            dataset._compact_bounds = (threading.get_ident(), bounds)  # as __getitem__ reads for this pipeline
            try:
                return dataset.read(ids[index])
            finally:
                dataset._compact_bounds = None

        fused_stages = _stage_ms(read_compact, [
            ("Resize+RandomCrop+RandomFlip", lambda s: fused.resize_then_crop(s, resize, crop, rng, flip)),
            ("PhotoMetricDistortion+Normalize+ToTensor+Padding",
             lambda s: fused.photometric_then_tail(s, distortion, normalize, padding, rng)),
        ], num_images)
        finish_ms = _device_finish_ms(root, ids)
        baseline_stages = _stage_ms(lambda i: baseline_read(root, ids[i]),
                                    [(f.__name__.removeprefix("baseline_"), f) for f in BASELINE_STAGES], num_images)

    def rate(values: list[float]) -> float:
        return num_images / statistics.median(values)

    cpu_ratios = sorted(b / s for s, b in zip(cpu[0], cpu[2], strict=True))
    wall_ratios = sorted(b / s for s, b in zip(wall[0], wall[2], strict=True))
    return {
        "benchmark": "data_pipeline",
        "pipeline": "ADE20k train: Resize(2048,512,x0.5-2) RandomCrop 512 RandomFlip PMD Normalize ToTensor Padding",
        "images": f"{num_images} generated 640x480 JPEG + PNG (ADE-style, 0 = void)",
        "threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()},
        "freed_memory_kept": sorted(KEEPS_FREED_MEMORY),
        "cpu_s": dict(zip(names, cpu, strict=True)),
        "wall_s": dict(zip(names, wall, strict=True)),
        "segkit_ms_per_stage": segkit_stages,
        "segkit_fused_ms_per_stage": fused_stages,
        "baseline_ms_per_stage": baseline_stages,
        "stages_note": "wall ms of each stage run on its own: segkit_ms_per_stage one transform at a time (no fast "
                       "paths), segkit_fused_ms_per_stage the fused steps Compose takes",
        "summary": {
            "segkit_images_per_cpu_s": round(rate(cpu[0]), 2),
            "segkit_unfused_images_per_cpu_s": round(rate(cpu[1]), 2),
            "baseline_images_per_cpu_s": round(rate(cpu[2]), 2),
            "speedup": round(rate(cpu[0]) / rate(cpu[2]), 2),
            "speedup_range_over_repeats": [round(cpu_ratios[0], 2), round(cpu_ratios[-1], 2)],
            "speedup_same_allocator": round(rate(cpu[0]) / rate(cpu[4]), 2),
            "speedup_normalized_in_worker": round(rate(cpu[5]) / rate(cpu[2]), 2),
            "segkit_in_worker_ms": round(1e3 / rate(cpu[5]), 3),
            "device_finish_ms_on_cpu": finish_ms,
            "speedup_one_process": round(statistics.median(b for _, b in one_process)
                                         / statistics.median(s for s, _ in one_process), 2),
            "speedup_unfused": round(rate(cpu[1]) / rate(cpu[2]), 2),
            "speedup_wall": round(rate(wall[0]) / rate(wall[2]), 2),
            "decode_ms": round(1e3 / rate(cpu[3]), 3),
            "segkit_ms": round(1e3 / rate(cpu[0]), 3),
            "baseline_ms": round(1e3 / rate(cpu[2]), 3),
            "speedup_ceiling": round(rate(cpu[3]) / rate(cpu[2]), 2),
            "speedup_after_decode": round((1 / rate(cpu[2]) - 1 / rate(cpu[3])) / (1 / rate(cpu[0]) - 1 / rate(cpu[3])), 2),
            "speedup_wall_range_over_repeats": [round(wall_ratios[0], 2), round(wall_ratios[-1], 2)],
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
