"""The fast paths of Compose (compact label maps, Resize -> RandomCrop on the window only, Normalize -> ToTensor ->
Padding in one step) and the 8-bit label remap give what the transforms give one by one: exactly, except the
windowed resize's image, which is within one level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.data.datasets import BaseDataset
from segkit.data.transforms import fused
from segkit.data.transforms.compose import build_pipeline

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
ADE = [
    {"type": "Resize", "output_size": [256, 64], "keep_ratio": True, "scale_range": [0.5, 2.0]},
    {"type": "RandomCrop", "crop_size": [64, 64], "one_category_max_ratio": 0.75},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": MEAN, "std": STD},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": [64, 64], "data_type": "tensor"},
]
NUMPY_PADDING = [
    {"type": "Resize", "output_size": [96, 48], "keep_ratio": False, "scale_range": [0.4, 1.6]},
    {"type": "RandomCrop", "crop_size": [40, 56]},
    {"type": "Padding", "output_size": [40, 56], "data_type": "numpy", "seg_target_fill_value": 255},
    {"type": "RandomFlip", "prob": 0.5, "fixed_seg_target_pairs": [[1, 2], [3, 4]]},
    {"type": "Normalize", "mean": MEAN, "std": STD, "to_rgb": False},
    {"type": "ToTensor"},
]


def make_sample(seed: int, labels_dtype=np.int64, height=48, width=70, mapper=True) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    seg = rng.integers(0, 6, (height, width)).astype(labels_dtype)
    seg[rng.random((height, width)) < 0.1] = -100 if np.issubdtype(labels_dtype, np.signedinteger) else 255
    sample = {"image": image, "seg_target": seg, "edge_target": (seg % 2).astype(labels_dtype),
              "width": width, "height": height, "id": str(seed)}
    if mapper:
        sample["img2aug_pos_mapper"] = np.arange(height * width, dtype=np.int64).reshape(height, width)
    return sample


def run_both(pipeline_cfg, sample_fn, seed, window=False):
    """The chain with its fast paths and one by one; ``window=False`` leaves the (not bit-exact) windowed resize out."""
    fast, plain = build_pipeline(pipeline_cfg), build_pipeline(pipeline_cfg)
    plain.fast = False
    share = fused.WINDOW_MAX_SHARE
    fused.WINDOW_MAX_SHARE = share if window else 0.0
    try:
        out_fast = fast(sample_fn(seed), np.random.default_rng(seed))
    finally:
        fused.WINDOW_MAX_SHARE = share
    out_plain = plain(sample_fn(seed), np.random.default_rng(seed))
    return fast, out_fast, out_plain


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if torch.is_tensor(x):
            assert torch.is_tensor(y) and x.dtype == y.dtype and x.shape == y.shape, key
            assert torch.equal(x, y), key
            assert x.is_contiguous(), key
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), key
        else:
            assert x == y, key


@pytest.mark.parametrize("seed", range(12))
def test_ade_pipeline_fast_equals_one_by_one(seed):
    fast, out_fast, out_plain = run_both(ADE, make_sample, seed)
    assert fast._plan.compact is not None and fast._plan.tail == 4 and fast._plan.photometric == 3  # all taken
    assert_same(out_fast, out_plain)
    assert out_fast["image"].shape == (3, 64, 64) and out_fast["seg_target"].dtype == torch.int64


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("seed", range(24))
def test_windowed_resize_then_crop_is_exact_on_labels_and_within_a_level_on_the_image(seed, flip, monkeypatch):
    calls = []
    original = fused.cv2.warpAffine
    monkeypatch.setattr(fused.cv2, "warpAffine", lambda *a, **k: calls.append(a[1][0, 0] < 0) or original(*a, **k))
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(30, 200)), int(rng.integers(30, 200))
    cfg = [{"type": "Resize", "output_size": [int(rng.integers(40, 400)), int(rng.integers(40, 400))],
            "keep_ratio": bool(seed % 2), "scale_range": [0.3, 2.5]},
           {"type": "RandomCrop", "crop_size": [int(rng.integers(8, 90)), int(rng.integers(8, 90))],
            "one_category_max_ratio": [0.75, 1.0][seed % 3 == 0]}]
    if flip:  # joins the windowed step; the mirrored window swaps label pairs as RandomFlip does
        cfg.append({"type": "RandomFlip", "prob": 0.5, "fixed_seg_target_pairs": [[1, 2]] if seed % 2 else []})
    for case in range(6):
        fast, out_fast, out_plain = run_both(cfg, lambda s: make_sample(s, height=height, width=width), 100 * seed + case,
                                               window=True)
        assert fast._plan.crops == frozenset({0}) and fast._plan.flips == (frozenset({0}) if flip else frozenset())
        for key in ("seg_target", "edge_target", "img2aug_pos_mapper"):  # the same window, the same pixels
            assert out_fast[key].dtype == out_plain[key].dtype and np.array_equal(out_fast[key], out_plain[key]), key
        image_fast, image_plain = out_fast["image"], out_plain["image"]  # uniform noise: the hardest edges
        assert image_fast.dtype == np.uint8 and image_fast.shape == image_plain.shape
        assert np.abs(image_fast.astype(int) - image_plain).max() <= 1
    if seed in (2, 3):  # these draw windows well under the resized size: the window path ran
        assert calls
        assert any(calls) == flip  # mirrored windows (a negative x step) came only with the flip


@pytest.mark.parametrize("seed", range(4))
def test_ade_pipeline_with_the_windowed_resize_keeps_labels_and_draws(seed):
    big = lambda s: make_sample(s, height=120, width=160)  # noqa: E731  (upscaled up to 2x, then a 64x64 crop)
    fast, out_fast, out_plain = run_both(ADE, big, seed, window=True)
    assert fast._plan.crops == frozenset({0}) and fast._plan.tail == 4
    for key in ("seg_target", "edge_target", "img2aug_pos_mapper"):
        assert torch.equal(out_fast[key], out_plain[key]), key
    levels = (out_fast["image"] - out_plain["image"]).abs() * torch.tensor(STD)[:, None, None]
    assert levels.mean() < 1  # one level on some pixels, a few where the colour jitter amplifies it


def test_windowed_resize_is_taken_for_large_upscales_only():
    def labels_and_window(scale, crop):
        cfg = [{"type": "Resize", "output_size": [100, 100], "keep_ratio": False, "scale_range": [scale, scale]},
               {"type": "RandomCrop", "crop_size": [crop, crop], "one_category_max_ratio": 1.0}]
        fast = build_pipeline(cfg)
        sample = make_sample(0, height=50, width=50, mapper=False)
        original = fused.cv2.warpAffine
        calls = []
        fused.cv2.warpAffine = lambda *a, **k: calls.append(1) or original(*a, **k)
        try:
            out = fast(sample, np.random.default_rng(0))
        finally:
            fused.cv2.warpAffine = original
        return bool(calls), out["image"].shape[:2]

    assert labels_and_window(2.0, 64) == (True, (64, 64))  # 200x200 resized, 64x64 kept: window only
    assert labels_and_window(1.0, 96) == (False, (96, 96))  # 100x100, 96x96 kept (92%): plain resize, exact
    assert labels_and_window(0.5, 64) == (False, (50, 50))  # no resize at all


@pytest.mark.parametrize("seed", range(6))
def test_numpy_padding_and_pairs_fast_equals_one_by_one(seed):
    fast, out_fast, out_plain = run_both(NUMPY_PADDING, make_sample, seed)
    assert fast._plan.compact == (-100, 255) and fast._plan.tail == 4 and not fast._plan.padded_tail
    assert_same(out_fast, out_plain)


@pytest.mark.parametrize("seed", range(3))
def test_small_images_are_padded_like_padding_does(seed):
    small = lambda s: make_sample(s, height=20, width=30)  # noqa: E731  (smaller than the crop: padded)
    fast, out_fast, out_plain = run_both(ADE[3:], small, seed)
    assert fast._plan.tail == 1
    assert_same(out_fast, out_plain)
    assert (out_fast["seg_target"][:, 0] == -100).all()


def test_labels_that_do_not_fit_int16_stay_int64_and_still_match():
    def wide(seed):
        sample = make_sample(seed)
        sample["seg_target"][0, 0] = 40000
        return sample

    _, out_fast, out_plain = run_both(ADE, wide, 0)
    assert_same(out_fast, out_plain)
    sample = wide(0)
    fused.compact_labels(sample, (-100, -1))
    assert sample["seg_target"].dtype == np.int64 and sample["edge_target"].dtype == np.int16
    assert sample["img2aug_pos_mapper"].dtype == np.int32


def test_unknown_transforms_turn_compaction_off_and_float_images_skip_the_tail():
    plan = fused.make_plan(build_pipeline([{"type": "RandomRotation", "prob": 1.0}, *ADE]).transforms)
    assert plan.compact is None and plan.tail == 5
    cfg = [{"type": "Normalize", "mean": MEAN, "std": STD}, {"type": "Normalize", "mean": [0, 0, 0],
                                                              "std": [1, 1, 1]}, *ADE[5:]]
    _, out_fast, out_plain = run_both(cfg, lambda s: make_sample(s, mapper=False), 1)  # float image into the tail
    assert_same(out_fast, out_plain)




@pytest.mark.parametrize("lut_copies_bits", [True, False])
@pytest.mark.parametrize("auto_correct", [False, True])
def test_uint8_remap_matches_the_lookup_and_its_check(tmp_path, auto_correct, lut_copies_bits, monkeypatch):
    from segkit.data.datasets import base

    assert base._LUT_COPIES_BITS  # OpenCV's float64 table copies the int64 labels exactly here
    monkeypatch.setattr(base, "_LUT_COPIES_BITS", lut_copies_bits)
    dataset = BaseDataset(rootdir=str(tmp_path), image_dir=".", ann_dir=".", imageids=["x"], num_classes=5,
                          clsid2label={0: -100, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 9: 7},
                          auto_correct_invalid_seg_target=auto_correct)
    rng = np.random.default_rng(0)
    good = rng.integers(0, 6, (33, 47)).astype(np.uint8)
    expected = dataset._lut(256)[good]
    out = dataset.remap(good)
    assert out.dtype == np.int64 and np.array_equal(out, expected)
    bad = good.copy()
    bad[3, 4], bad[5, 6] = 9, 200  # 9 -> 7 and 200 -> 200: neither a class nor ignore
    if auto_correct:
        fixed = dataset.remap(bad)
        reference = dataset._lut(256)[bad]
        reference[(reference >= 5) | ((reference < 0) & (reference != -100))] = -100
        assert np.array_equal(fixed, reference)
    else:
        with pytest.raises(Exception, match=r"label values \[7, 200\]"):
            dataset.remap(bad, "x.png")


def test_dataset_reads_int16_labels_only_for_a_compacting_pipeline(tmp_path, monkeypatch):
    import cv2

    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / f"{name}.png"), rng.integers(0, 7, (60, 90)).astype(np.uint8))
    seen = []
    original = BaseDataset.remap
    monkeypatch.setattr(BaseDataset, "remap", lambda self, raw, path="": seen.append(
        (out := original(self, raw, path)).dtype) or out)

    def dataset(**kwargs):
        return BaseDataset(rootdir=str(tmp_path), image_dir=".", ann_dir=".", imageids=["a", "b"], num_classes=6,
                           clsid2label={0: -100, **{i: i - 1 for i in range(1, 7)}}, image_ext=".jpg",
                           data_pipelines=ADE, **kwargs)

    fast, plain = dataset(), dataset()
    plain.pipeline.fast = False
    monkeypatch.setattr(fused, "WINDOW_MAX_SHARE", 0.0)
    for index in range(2):
        assert_same(fast[index], plain[index])
    assert seen == [np.int16, np.int64] * 2  # the fast pipeline got int16 straight from the remap
    seen.clear()
    assert fast.read("a")["seg_target"].dtype == np.int64  # read() on its own keeps its contract
    assert dataset(mode="TEST")[0]["seg_target"].dtype == torch.int64 and seen == [np.int64, np.int64]


def test_int16_reads_stay_in_the_thread_that_asked_for_them(tmp_path):
    """check-data reads label maps from a thread pool: a read in another thread while one __getitem__ has asked for
    int16 labels still gets the int64 of read()'s contract, and the tables are made safely from many threads."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(0).integers(0, 7, (20, 30)).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    dataset = BaseDataset(rootdir=str(tmp_path), image_dir=".", ann_dir=".", imageids=["a"], num_classes=6,
                          clsid2label={0: -100, **{i: i - 1 for i in range(1, 7)}}, image_ext=".jpg",
                          data_pipelines=ADE)
    with ThreadPoolExecutor(8) as pool:  # first use of the tables from 8 threads at once
        dtypes = set(pool.map(lambda _: dataset.read("a")["seg_target"].dtype, range(64)))
    assert dtypes == {np.dtype(np.int64)}
    dataset._compact_bounds = (threading.get_ident() + 1, (-100, -1))  # another thread's request
    assert dataset.read("a")["seg_target"].dtype == np.int64
    dataset._compact_bounds = (threading.get_ident(), (-100, -1))  # this thread's
    assert dataset.read("a")["seg_target"].dtype == np.int16


def region_labels(seed: int, height: int, width: int, dtype=np.int16) -> np.ndarray:
    """Label maps of a few rectangles of classes over a background with some void: long runs, as real maps have."""
    rng = np.random.default_rng(seed)
    seg = np.full((height, width), int(rng.integers(0, 5)), dtype)
    for _ in range(int(rng.integers(2, 9))):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        seg[top : top + int(rng.integers(1, height)), left : left + int(rng.integers(1, width))] = rng.choice(
            [-100, 0, 1, 2, 3, 4, 7])
    return seg


@pytest.mark.parametrize("seed", range(40))
def test_resampled_label_counts_equal_counting_the_gathered_window(seed):
    from segkit.data.transforms.geometric import label_counts

    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(5, 120)), int(rng.integers(5, 120))
    seg = region_labels(seed, height, width, [np.int16, np.int32, np.int64][seed % 3])
    for _ in range(8):  # upscales and downscales, windows anywhere
        new_h, new_w = int(rng.integers(2, 3 * height)), int(rng.integers(2, 3 * width))
        rows, cols = fused._nearest_indices(height, new_h), fused._nearest_indices(width, new_w)
        crop_h, crop_w = int(rng.integers(1, new_h + 1)), int(rng.integers(1, new_w + 1))
        top, left = int(rng.integers(0, new_h - crop_h + 1)), int(rng.integers(0, new_w - crop_w + 1))
        window_rows, window_cols = rows[top : top + crop_h], cols[left : left + crop_w]
        for ignore in (-100, 0, 255):
            want = label_counts(seg.take(window_rows, 0).take(window_cols, 1), ignore)
            got = fused.resampled_label_counts(seg, window_rows, window_cols, ignore)
            if got is None:
                continue
            assert got.dtype == np.int64 and list(got[got > 0]) == list(want[want > 0])  # same classes, in order
            assert got.sum() == want.sum()


def test_resampled_label_counts_leave_noise_to_the_gathered_window():
    rows, cols = fused._nearest_indices(40, 90), fused._nearest_indices(50, 110)
    regions = region_labels(0, 40, 50)
    assert fused.resampled_label_counts(regions, rows[:64], cols[:64], -100) is not None  # long runs: counted here
    noise = np.random.default_rng(0).integers(0, 6, (40, 50)).astype(np.int16)
    assert fused.resampled_label_counts(noise, rows[:64], cols[:64], -100) is None  # short runs: the caller gathers


@pytest.mark.parametrize("seed", range(6))
def test_windowed_resize_with_region_labels_draws_the_same_crops(seed):
    """With long-run labels the crop check counts without gathering the window: the windows chosen, and so the
    labels, are those of the transforms one by one."""
    def sample(s):
        out = make_sample(s, height=120, width=160)
        out["seg_target"] = region_labels(s, 120, 160, np.int64)
        return out

    cfg = [dict(ADE[0], output_size=[512, 128]), ADE[1]]  # upscaled, then a 64x64 crop that often fails the check
    fast, out_fast, out_plain = run_both(cfg, sample, seed, window=True)
    assert fast._plan.crops == frozenset({0})
    for key in ("seg_target", "edge_target", "img2aug_pos_mapper"):
        assert np.array_equal(out_fast[key], out_plain[key]), key


def test_photometric_scratch_planes_are_per_thread():
    """The split planes PhotoMetricDistortion and Normalize reuse belong to one thread: many threads transforming
    different images at once get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    pipeline = build_pipeline(ADE[3:])

    def run(seed):
        out = pipeline(make_sample(seed, height=64, width=64, mapper=False), np.random.default_rng(seed))
        return out["image"]

    alone = [run(seed) for seed in range(48)]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(run, range(48)))
    assert all(torch.equal(a, b) for a, b in zip(alone, together, strict=True))


def _deferred_and_plain_batches(pipeline_cfg, seeds, sizes):
    """Collated batches of the same samples through a chain that defers normalisation and through the usual one."""
    from segkit.data import collate_train

    deferred, usual = build_pipeline(pipeline_cfg), build_pipeline(pipeline_cfg)
    finish = deferred.defer_normalization()
    out = [], []
    for seed, (height, width) in zip(seeds, sizes, strict=True):
        for chain, bucket in ((deferred, out[0]), (usual, out[1])):
            bucket.append(chain(make_sample(seed, height=height, width=width), np.random.default_rng(seed)))
    return finish, collate_train(out[0]), collate_train(out[1])


@pytest.mark.parametrize("to_rgb", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_device_normalize_finishes_deferred_samples_into_the_same_batch(to_rgb, channels_last):
    chain = [dict(t) for t in ADE]
    chain[4]["to_rgb"] = to_rgb
    chain[6]["image_fill_value"] = 0.25
    sizes = [(48, 70), (20, 30), (48, 70), (30, 20)]  # two padded (one each way), PMD draws differ per seed
    finish, deferred, usual = _deferred_and_plain_batches(chain, range(4), sizes)
    assert deferred["image"].dtype == torch.uint8 and deferred["image"].shape == (4, 64, 64, 3)
    assert deferred["seg_target"].dtype == torch.int16  # label maps stay compact until the device
    assert (deferred["image_window"][:, 2:] < 64).any()  # some were padded
    assert (deferred["image_levels"] != torch.arange(256)).any()  # some brightness/contrast left for the device
    images = finish(deferred, torch.device("cpu"), channels_last=channels_last)
    assert images.dtype == torch.float32 and torch.equal(images, usual["image"])  # bit for bit, padding included
    assert images.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for key in ("seg_target", "edge_target", "img2aug_pos_mapper"):
        assert torch.equal(deferred[key].long(), usual[key]), key


def test_device_normalize_without_a_padding_step():
    finish, deferred, usual = _deferred_and_plain_batches(NUMPY_PADDING, range(3), [(48, 70)] * 3)
    assert deferred["image"].shape == (3, 40, 56, 3) and (deferred["image_window"][:, 2:] == torch.tensor([40, 56])).all()
    assert torch.equal(finish(deferred, torch.device("cpu")), usual["image"])
    assert torch.equal(deferred["seg_target"].long(), usual["seg_target"])


def test_deferral_needs_the_fused_tail_and_mixed_batches_are_a_clear_error():
    from segkit.data import collate_train
    from segkit.errors import DataError

    assert build_pipeline(NUMPY_PADDING[:4] + [{"type": "ToTensor"}]).defer_normalization() is None  # no Normalize
    plain = build_pipeline(ADE)
    plain.fast = False
    assert plain.defer_normalization() is None and not plain.defer_normalize
    chain = build_pipeline(ADE[:3] + ADE[4:])  # PhotoMetricDistortion takes 8-bit images only
    assert chain.defer_normalization() is not None
    eight_bit = chain(make_sample(0), np.random.default_rng(0))
    wide = make_sample(1)
    wide["image"] = wide["image"].astype(np.float32)  # not 8-bit: the transforms run one by one, normalised here
    normalised = chain(wide, np.random.default_rng(1))
    assert "image_levels" in eight_bit and "image_levels" not in normalised
    with pytest.raises(DataError, match="normalize_on_device = false"):
        collate_train([eight_bit, normalised])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_normalize_on_cuda_equals_the_workers_batch():
    sizes = [(48, 70), (20, 30), (30, 20)]
    finish, deferred, usual = _deferred_and_plain_batches(ADE, range(3), sizes)
    images = finish(deferred, torch.device("cuda"), channels_last=True)
    assert images.is_cuda and torch.equal(images.cpu(), usual["image"])
