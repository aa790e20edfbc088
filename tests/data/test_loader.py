"""DataLoaders: batch layout, the batch-size rule, sharding across processes, reproducibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segkit.data import FolderDataset, build_dataloader, set_epoch
from segkit.data.loader import ShardSampler, per_process_batch_size
from segkit.errors import DataError, RecipeError, SegkitError

from .helpers import CLASSNAMES, make_folder

TRAIN_PIPELINE = [
    {"type": "Resize", "output_size": 48, "scale_range": [0.5, 1.5]},
    {"type": "RandomCrop", "crop_size": 24},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "PhotoMetricDistortion"},
    {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    {"type": "ToTensor"},
    {"type": "Padding", "output_size": 24, "data_type": "tensor"},
]
TEST_PIPELINE = [
    {"type": "Resize", "output_size": [20, 20], "keep_ratio": False, "scale_range": None},
    {"type": "Normalize", "mean": [0, 0, 0], "std": [1, 1, 1]},
    {"type": "ToTensor"},
]
SIZES = [(40, 48), (32, 56), (48, 40), (36, 36), (30, 44)]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("loader") / "ds", SIZES)


def dataset(root: Path, mode: str = "TRAIN", **kwargs) -> FolderDataset:
    pipeline = TRAIN_PIPELINE if mode == "TRAIN" else TEST_PIPELINE
    return FolderDataset(
        str(root), classnames=CLASSNAMES, image_ext=".png", mode=mode, data_pipelines=pipeline, **kwargs
    )


def loader_cfg(**kwargs) -> dict:
    return {"batch_size_per_gpu": 2, "num_workers_per_gpu": 0, "shuffle": True, "drop_last": False, **kwargs}


def batches(loader) -> list[dict]:
    return list(loader)


def test_train_batches(root):
    loader = build_dataloader(dataset(root), loader_cfg(drop_last=True), mode="TRAIN")
    out = batches(loader)
    assert len(out) == 2
    batch = out[0]
    assert batch["image"].shape == (2, 3, 24, 24) and batch["image"].dtype == torch.float32
    assert batch["seg_target"].shape == (2, 24, 24) and batch["seg_target"].dtype == torch.int64
    assert len(batch["id"]) == len(batch["width"]) == len(batch["height"]) == 2


def test_test_batches_keep_original_size_targets(root):
    loader = build_dataloader(dataset(root, "TEST"), loader_cfg(shuffle=False), mode="TEST")
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 20, 20)
    assert [tuple(t.shape) for t in batch["seg_target"]] == SIZES[:2]
    assert all(t.dtype == torch.int64 for t in batch["seg_target"])


def test_test_batches_of_different_sizes_explain_the_fix(root):
    data = FolderDataset(
        str(root), classnames=CLASSNAMES, image_ext=".png", mode="TEST", data_pipelines=[{"type": "ToTensor"}]
    )
    with pytest.raises(DataError, match="batch_size_per_gpu = 1"):
        next(iter(build_dataloader(data, loader_cfg(), mode="TEST")))


def test_batch_size_rule():
    assert per_process_batch_size(2, 4, 16, auto_adapt=True) == 4
    assert per_process_batch_size(4, 4, 16, auto_adapt=False) == 4
    assert per_process_batch_size(3, 4, None, auto_adapt=True) == 3
    with pytest.raises(SegkitError, match="must be 16.*3 process"):
        per_process_batch_size(2, 3, 16, auto_adapt=True)
    with pytest.raises(SegkitError, match="batch_size_per_gpu"):
        per_process_batch_size(2, 4, 16, auto_adapt=False)


def test_auto_adapt_sets_the_loader_batch(root):
    loader = build_dataloader(
        dataset(root), loader_cfg(), mode="TRAIN", world_size=2, expected_total_train_bs=4
    )
    assert loader.batch_size == 2
    with pytest.raises(RecipeError, match="dataloader.train.batch_sise: unknown option; did you mean"):
        build_dataloader(dataset(root), {"batch_sise": 2}, mode="TRAIN")


def test_eval_shards_cover_every_sample_once(root):
    data = dataset(root, "TEST")
    seen = []
    for rank in range(2):
        loader = build_dataloader(
            data, loader_cfg(batch_size_per_gpu=1), mode="TEST", world_size=2, rank=rank
        )
        seen += [i for batch in loader for i in batch["id"]]
    assert sorted(seen) == sorted(data.imageids) and len(seen) == 5
    assert [list(ShardSampler(range(5), 2, r)) for r in range(2)] == [[0, 2, 4], [1, 3]]


def test_train_sampler_partitions_across_processes(root):
    data = dataset(root)
    per_rank = []
    for rank in range(2):
        loader = build_dataloader(
            data, loader_cfg(batch_size_per_gpu=1), mode="TRAIN", world_size=2, rank=rank
        )
        per_rank.append(list(loader.sampler))
    assert len(per_rank[0]) == len(per_rank[1]) == 3
    assert set(per_rank[0]) | set(per_rank[1]) == set(range(5))


def _signature(loader) -> list[tuple]:
    return [(tuple(b["id"]), b["image"].sum().item(), b["seg_target"].sum().item()) for b in loader]


def test_reproducible_across_workers_and_epochs_without_touching_global_rng(root):
    data = dataset(root, seed=5)
    single = build_dataloader(data, loader_cfg(), mode="TRAIN", seed=5)
    workers = build_dataloader(data, loader_cfg(num_workers_per_gpu=2), mode="TRAIN", seed=5)
    state = torch.get_rng_state()
    set_epoch(single, 0)
    epoch0 = _signature(single)
    assert torch.equal(torch.get_rng_state(), state)
    set_epoch(workers, 0)
    assert _signature(workers) == epoch0
    set_epoch(single, 1)
    epoch1 = _signature(single)
    assert epoch1 != epoch0
    set_epoch(workers, 1)
    assert _signature(workers) == epoch1
    set_epoch(single, 0)
    assert _signature(single) == epoch0


def test_worker_errors_keep_their_own_message(tmp_path):
    root = make_folder(tmp_path / "broken", SIZES[:2])
    (root / "images" / "train" / "img01.png").write_bytes(b"garbage")
    data = FolderDataset(
        str(root), classnames=CLASSNAMES, image_ext=".png", mode="TEST", data_pipelines=TEST_PIPELINE
    )
    loader = build_dataloader(data, loader_cfg(batch_size_per_gpu=1, num_workers_per_gpu=1), mode="TEST")
    with pytest.raises(DataError) as info:
        list(loader)
    assert str(info.value).startswith("cannot read image") and str(info.value).endswith("img01.png")
