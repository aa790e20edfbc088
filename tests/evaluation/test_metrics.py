"""ConfusionMatrix and SSSegmentation's metrics: hand-computed values, a numpy reference, and all_reduce."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from segkit.errors import SegkitError
from segkit.evaluation.metrics import ConfusionMatrix, filter_metrics, to_json_safe

# 4 classes; pixels 6 (-1) and 7 (7 >= 4) are ignored. Kept (gt, pred): (0,0) (0,0) (0,1) (1,1) (1,1) (1,2)
# intersect [2,2,0,0]  pred [2,3,1,0]  label [3,3,0,0]  union [3,4,1,0]
TARGET = torch.tensor([[0, 0, 0, 1], [1, 1, -1, 7]])
PRED = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 0]])
NAMES = ["road", "car", "sky", "tree"]


@pytest.fixture
def hand_results() -> dict:
    matrix = ConfusionMatrix(4)
    matrix.update(PRED, TARGET)
    return matrix.compute(NAMES)


def test_matrix_counts_and_ignores_out_of_range_targets():
    matrix = ConfusionMatrix(4)
    matrix.update(PRED, TARGET)
    expected = [[2, 1, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert matrix.mat.dtype == torch.int64
    assert matrix.mat.tolist() == expected


def test_hand_computed_per_class_values(hand_results):
    r = hand_results
    assert r["IoU"] == pytest.approx({"road": 2 / 3, "car": 1 / 2, "sky": 0.0, "tree": None})
    assert r["IoU"]["tree"] is None  # absent from GT and prediction: NaN -> None
    assert r["IoU"]["sky"] == 0.0  # predicted but absent from GT: IoU 0
    assert r["Acc"] == pytest.approx({"road": 2 / 3, "car": 2 / 3, "sky": None, "tree": None})
    assert r["Recall"] == r["Acc"]
    assert r["Precision"] == pytest.approx({"road": 1.0, "car": 2 / 3, "sky": 0.0, "tree": None})
    assert r["Dice"] == pytest.approx({"road": 0.8, "car": 2 / 3, "sky": 0.0, "tree": None})
    assert r["Fscore"] == pytest.approx({"road": 0.8, "car": 2 / 3, "sky": None, "tree": None})


def test_hand_computed_means_exclude_nan_classes(hand_results):
    r = hand_results
    assert r["aAcc"] == pytest.approx(4 / 6)
    assert r["mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert r["mAcc"] == pytest.approx(2 / 3)
    assert r["mRecall"] == pytest.approx(2 / 3)
    assert r["mPrecision"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert r["mDice"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert r["mFscore"] == pytest.approx((0.8 + 2 / 3) / 2)
    json.dumps(r, allow_nan=False)  # JSON-safe: plain floats and None
    assert all(type(v) is float for k, v in r.items() if k.startswith("m") or k == "aAcc")


def test_fscore_beta_and_nan_to_num():
    matrix = ConfusionMatrix(4)
    matrix.update(PRED, TARGET)
    r = matrix.compute(beta=2.0)
    assert r["Fscore"]["0"] == pytest.approx(5 * (2 / 3) / (4 + 2 / 3))
    r = matrix.compute(nan_to_num=0.0)  # SSSeg: replaced before the mean, so the absent class now counts
    assert r["IoU"]["3"] == 0.0
    assert r["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 4)


def _reference(preds: list[np.ndarray], gts: list[np.ndarray], num_classes: int, beta: float = 1.0) -> dict:
    """SSSegmentation's Evaluation with numpy: per-class area histograms over the valid pixels."""
    pred = np.concatenate([p.ravel() for p in preds])
    gt = np.concatenate([g.ravel() for g in gts])
    valid = (gt >= 0) & (gt < num_classes)
    pred, gt = pred[valid], gt[valid]
    inter = np.bincount(pred[pred == gt], minlength=num_classes).astype(np.float64)
    area_pred = np.bincount(pred, minlength=num_classes).astype(np.float64)
    area_label = np.bincount(gt, minlength=num_classes).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_pred + area_label - inter)
        acc = inter / area_label
        precision = inter / area_pred
        dice = 2 * inter / (area_pred + area_label)
        fscore = (1 + beta**2) * precision * acc / (beta**2 * precision + acc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN columns
        return {
            "aAcc": inter.sum() / area_label.sum(), "IoU": iou, "Acc": acc, "Dice": dice, "Fscore": fscore,
            "Precision": precision, "mIoU": np.nanmean(iou), "mAcc": np.nanmean(acc), "mDice": np.nanmean(dice),
            "mFscore": np.nanmean(fscore), "mPrecision": np.nanmean(precision),
        }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7
    preds, gts = [], []
    matrix = ConfusionMatrix(num_classes)
    for _ in range(4):
        shape = tuple(rng.integers(5, 20, size=2))
        pred = rng.integers(0, num_classes - 1, size=shape)  # class 6 never predicted
        gt = rng.integers(-1, num_classes + 2, size=shape)  # -1 and >= C ignored
        gt[gt == 5] = 255  # class 5 never in GT (but predicted)
        preds.append(pred)
        gts.append(gt)
        matrix.update(torch.from_numpy(pred), torch.from_numpy(gt))
    ours, ref = matrix.compute(beta=0.5), _reference(preds, gts, num_classes, beta=0.5)
    for key in ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), key
    for key in ("IoU", "Acc", "Dice", "Fscore", "Precision"):
        expected = [None if math.isnan(v) else pytest.approx(v, abs=1e-12) for v in ref[key]]
        assert list(ours[key].values()) == expected, key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_matrix_on_cuda_matches_cpu():
    pred, target = torch.randint(0, 5, (3, 40, 40)), torch.randint(-1, 7, (3, 40, 40))
    on_cpu, on_cuda = ConfusionMatrix(5), ConfusionMatrix(5, device="cuda")
    on_cpu.update(pred, target)
    on_cuda.update(pred.cuda(), target.cuda())
    assert on_cuda.mat.device.type == "cuda"
    assert torch.equal(on_cuda.mat.cpu(), on_cpu.mat) and on_cuda.compute() == on_cpu.compute()


def test_update_rejects_bad_input():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shapes"):
        matrix.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="argmax"):
        matrix.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="predictions"):
        matrix.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(SegkitError, match="class names"):
        matrix.compute(["a", "b"])


def test_empty_matrix_gives_none_everywhere():
    r = ConfusionMatrix(2).compute()
    assert r["aAcc"] is None and r["mIoU"] is None and r["IoU"] == {"0": None, "1": None}


def test_filter_metrics_maps_ssseg_names(hand_results):
    selected = filter_metrics(hand_results, ["iou", "miou", "all_accuracy", "mean_class_accuracy", "mDice"])
    assert list(selected) == ["IoU", "mIoU", "aAcc", "mAcc", "mDice"]
    assert selected["mIoU"] == hand_results["mIoU"]
    with pytest.raises(SegkitError, match="did you mean 'miou'"):
        filter_metrics(hand_results, ["mious"])


def test_to_json_safe_converts_numpy_and_torch():
    value = {"a": np.float32(0.5), "b": torch.tensor(float("nan")), "c": [np.int64(3), float("inf")], 1: None}
    assert to_json_safe(value) == {"a": 0.5, "b": None, "c": [3, None], "1": None}


def _all_reduce_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        generator = torch.Generator().manual_seed(0)
        pred = torch.randint(0, 5, (4, 16, 16), generator=generator)
        target = torch.randint(-1, 6, (4, 16, 16), generator=generator)
        matrix = ConfusionMatrix(5)
        matrix.update(pred[rank::world_size], target[rank::world_size])  # each rank sees half of the batch
        matrix.all_reduce()
        torch.save(matrix.mat, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_across_two_gloo_processes_equals_single_process(tmp_path):
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (4, 16, 16), generator=generator)
    target = torch.randint(-1, 6, (4, 16, 16), generator=generator)
    single = ConfusionMatrix(5)
    single.update(pred, target)
    single.all_reduce()  # not initialised here: a no-op
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), single.mat)
