"""ConfusionMatrix.update's bincount path: identical to the boolean-mask accumulation it replaced, edge cases
included, and to torchmetrics' MulticlassConfusionMatrix (a numpy reference where torchmetrics is absent)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from segkit.evaluation import metrics
from segkit.evaluation.metrics import ConfusionMatrix


def masked_reference(pred: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """The accumulation ConfusionMatrix.update did before (boolean indexing, then torch.bincount)."""
    pred, target = pred.to(torch.int64).flatten(), target.to(torch.int64).flatten()
    keep = (target >= 0) & (target < n)
    pred, target = pred[keep], target[keep]
    if pred.numel() and bool(((pred < 0) | (pred >= n)).any()):
        raise ValueError("out of range")
    return torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)


def independent_reference(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """A confusion matrix counted with np.add.at over the kept pixels (no bincount)."""
    pred, target = pred.ravel().astype(np.int64), target.ravel().astype(np.int64)
    keep = (target >= 0) & (target < n)
    mat = np.zeros((n, n), dtype=np.int64)
    np.add.at(mat, (target[keep], pred[keep]), 1)
    return mat


def accumulate(batches, n, device="cpu") -> torch.Tensor:
    matrix = ConfusionMatrix(n, device=device)
    for pred, target in batches:
        matrix.update(pred, target)
    return matrix.mat


@pytest.mark.parametrize("n", [1, 2, 19, 150, 255, 256])  # 255: the most the 16-bit index takes
@pytest.mark.parametrize(("ignore", "dtype"), [(255, torch.int64), (-1, torch.int64), (2**40, torch.int64),
                                               (255, torch.int32), (-1, torch.int32), (65535, torch.int32)])
def test_random_inputs_match_the_masked_accumulation(n, ignore, dtype):
    gen = torch.Generator().manual_seed(n * 7 + 1)
    batches = []
    for shape in [(2, 61, 47), (1, 300, 250), (5,)]:  # several chunks, and a chunk tail
        pred = torch.randint(0, n, shape, generator=gen)
        target = torch.randint(0, n + 3, shape, generator=gen)  # labels >= n that are not the ignore label
        target[torch.rand(shape, generator=gen) < 0.2] = ignore
        batches.append((pred.to(dtype), target.to(dtype)))
    ours = accumulate(batches, n)
    expected = sum(masked_reference(p, t, n) for p, t in batches)
    assert ours.dtype == torch.int64 and torch.equal(ours, expected)
    assert int(ours.sum()) == sum(int(((t >= 0) & (t < n)).sum()) for _, t in batches)


def test_histogram_counted_in_several_calchist_calls(monkeypatch):
    """Large inputs are counted a slice at a time (float32 bins are exact below 2**24): same counts."""
    gen = torch.Generator().manual_seed(9)
    pred = torch.randint(0, 7, (3, 100, 90), generator=gen)
    target = torch.randint(-1, 9, (3, 100, 90), generator=gen)
    whole = accumulate([(pred, target)], 7)
    monkeypatch.setattr(metrics, "_CALCHIST_PIXELS", 1000)  # 27 calls, the last one partial
    assert torch.equal(accumulate([(pred, target)], 7), whole)
    assert torch.equal(whole, masked_reference(pred, target, 7))


def test_every_cell_of_the_largest_16_bit_matrix():
    """255 classes: each of the 65025 cells once, ignored targets (255, -1, 256) beside them, none lost or moved."""
    n = 255
    target, pred = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    target = torch.cat([target.flatten(), torch.tensor([255, -1, 256, 255])])
    pred = torch.cat([pred.flatten(), torch.tensor([254, 0, 254, 3])])
    assert torch.equal(accumulate([(pred, target)], n), torch.ones(n, n, dtype=torch.int64))


def test_uint8_labels_with_255_ignored():
    gen = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 21, (4, 64, 64), generator=gen).to(torch.uint8)
    target = torch.randint(0, 21, (4, 64, 64), generator=gen).to(torch.uint8)
    target[:, :10] = 255
    assert torch.equal(accumulate([(pred, target)], 21), masked_reference(pred, target, 21))


def test_all_ignored_adds_nothing_even_with_bad_predictions_there():
    pred = torch.tensor([[7, -3], [99, 0]])  # out of range, but only where the target is ignored
    target = torch.tensor([[255, -1], [4, 2**40]])
    mat = accumulate([(pred, target)], 4)
    assert torch.equal(mat, torch.zeros(4, 4, dtype=torch.int64))


def test_out_of_range_prediction_on_a_kept_pixel_is_an_error_and_changes_nothing():
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    before = matrix.mat.clone()
    big = torch.zeros(3 * metrics._CHUNK, dtype=torch.int64)  # the bad pixel sits in the last chunk
    bad_pred = big.clone()
    bad_pred[-1] = 3
    for pred, target in [(torch.tensor([3]), torch.tensor([0])), (torch.tensor([-1]), torch.tensor([2])),
                         (bad_pred, big)]:
        with pytest.raises(ValueError, match="predictions"):
            matrix.update(pred, target)
        assert torch.equal(matrix.mat, before)


def test_bad_prediction_beside_an_ignored_pixel_in_the_same_chunk():
    pred = torch.tensor([0, 5, 1, 2])
    target = torch.tensor([0, 255, 1, 2])
    assert torch.equal(accumulate([(pred, target)], 3), masked_reference(pred, target, 3))


def test_one_class_and_empty_inputs():
    assert accumulate([(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long))], 1).tolist() == [[10]]
    empty = torch.zeros(0, dtype=torch.long)
    assert accumulate([(empty, empty)], 5).sum() == 0


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(5)
    pred = torch.randint(0, 6, (40, 50), generator=gen).t()
    target = torch.randint(-1, 8, (40, 50), generator=gen).t()
    assert not pred.is_contiguous()
    assert torch.equal(accumulate([(pred, target)], 6), masked_reference(pred, target, 6))


def test_device_path_matches_the_numpy_path():
    """The torch path (used on CUDA) gives the same counts and errors; checked here with tensors on the CPU."""
    gen = torch.Generator().manual_seed(11)
    pred = torch.randint(0, 9, (3, 70, 70), generator=gen)
    target = torch.randint(-1, 12, (3, 70, 70), generator=gen)
    pred[target == -1] = 40  # out of range where ignored: allowed
    via_torch = metrics._histogram_torch(pred, target, 9)
    via_numpy = metrics._histogram_numpy(pred.flatten().numpy(), target.flatten().numpy(), 9).reshape(9, 9)
    assert torch.equal(via_torch, torch.from_numpy(via_numpy))
    with pytest.raises(ValueError, match="predictions"):
        metrics._histogram_torch(torch.tensor([9]), torch.tensor([0]), 9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matrix_stays_on_the_device_and_matches():
    gen = torch.Generator().manual_seed(2)
    pred, target = torch.randint(0, 19, (2, 128, 128), generator=gen), torch.randint(0, 19, (2, 128, 128), generator=gen)
    target[:, :5] = 255
    on_cuda = accumulate([(pred.cuda(), target.cuda())], 19, device="cuda")
    assert on_cuda.device.type == "cuda"
    assert torch.equal(on_cuda.cpu(), masked_reference(pred, target, 19))


def test_matches_torchmetrics_or_an_independent_count():
    """torchmetrics' MulticlassConfusionMatrix (ignore_index) when installed (the dev extra has it); else np.add.at."""
    n = 13
    rng = np.random.default_rng(0)
    pred = rng.integers(0, n, (3, 90, 110))
    target = rng.integers(0, n, (3, 90, 110))
    target[rng.random(target.shape) < 0.15] = 255
    ours = accumulate([(torch.from_numpy(pred), torch.from_numpy(target))], n)
    if importlib.util.find_spec("torchmetrics") is not None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        reference = MulticlassConfusionMatrix(num_classes=n, ignore_index=255)
        reference.update(torch.from_numpy(pred), torch.from_numpy(target))
        expected = reference.compute()
    else:
        expected = torch.from_numpy(independent_reference(pred, target, n))
    assert torch.equal(ours, expected.to(torch.int64))
    assert torch.equal(ours, torch.from_numpy(independent_reference(pred, target, n)))
