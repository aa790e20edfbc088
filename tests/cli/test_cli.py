"""The CLI end to end on a tiny recipe, and its error contract (exit 2, one message, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.cli import main


def segkit(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "segkit", *args], capture_output=True, text=True, timeout=600)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stdout + proc.stderr
    return proc


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def trained_run(tiny_recipe, capsys) -> Path:
    code, out, err = run_cli(capsys, "train", str(tiny_recipe))
    assert code == 0, out + err
    return tiny_recipe.parent / "run"


def test_train_writes_the_run_dir(trained_run):
    run = trained_run
    for rel in ["recipe.toml", "log.txt", "metrics.jsonl", "eval/metrics.json", "checkpoints/last.pt",
                "checkpoints/best.pt"]:
        assert (run / rel).is_file(), rel
    assert not list((run / "checkpoints").glob("epoch_*.pt"))  # only with save_interval_epochs
    metrics = json.loads((run / "eval/metrics.json").read_text())
    assert set(metrics["IoU"]) == {"background", "disc", "square", "triangle", "ring"}
    assert list(metrics) == ["IoU", "mIoU"]  # inference.evaluate.metric_list: the FCN base's ["iou", "miou"]
    assert 0.0 <= metrics["mIoU"] <= 1.0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in lines} == {"train", "eval"}
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["iteration"] == 6 and "optimizer" in ckpt and "rng" in ckpt


def test_eval_infer_export(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "eval", str(trained_run), "--json", "--tta", "flip")
    assert code == 0
    metrics = json.loads(out)
    assert "mIoU" in metrics and metrics["checkpoint"].endswith("best.pt")

    image_dir = Path(json.loads((trained_run / "recipe.toml").read_text().split("rootdir = ")[1].split("\n")[0]))
    val_dir = image_dir / "images" / "val"
    code, out, err = run_cli(capsys, "infer", str(trained_run), str(val_dir), "--out", str(tmp_path / "pred"))
    assert code == 0, err
    stems = sorted(p.stem for p in val_dir.iterdir())
    labels = np.asarray(Image.open(tmp_path / "pred" / f"{stems[0]}.png"))  # a palette PNG: the ids
    overlay = cv2.imread(str(tmp_path / "pred" / f"{stems[0]}_overlay.png"))
    source = cv2.imread(str(val_dir / f"{stems[0]}.png"))
    assert labels.shape == source.shape[:2] and labels.max() < 5
    assert overlay.shape[0] > source.shape[0] and overlay.shape[1] >= source.shape[1]  # legend below

    for fmt in ("onnx", "torchscript"):
        target = tmp_path / f"model.{fmt}"
        code, out, err = run_cli(capsys, "export", str(trained_run), "--format", fmt, "--out", str(target),
                                 "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["max_abs_diff"] <= report["atol"] and target.is_file()


def test_training_never_overwrites_a_run(trained_run, tiny_recipe, capsys):
    before = (trained_run / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", str(tiny_recipe))
    assert code == 2 and "--resume" in err
    assert (trained_run / "checkpoints" / "last.pt").read_bytes() == before


def test_print_recipe_and_dry_run(tiny_recipe, capsys):
    code, out, _ = run_cli(capsys, "train", str(tiny_recipe), "--print-recipe", "--set", "scheduler.max_epochs=9")
    assert code == 0 and "max_epochs = 9" in out
    code, out, _ = run_cli(capsys, "train", str(tiny_recipe), "--dry-run", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["parameters"] > 0 and summary["train_size"] == 24 and summary["val_size"] == 8
    assert summary["train_batch_size_per_process"] == 8
    on_cuda = summary["device"].startswith("cuda")
    assert summary["normalize"] == ("device" if on_cuda else "workers")  # "auto": on the device only on CUDA
    code, out, _ = run_cli(capsys, "train", str(tiny_recipe), "--dry-run", "--json", "--set", "normalize_on_device=true")
    assert code == 0 and json.loads(out)["normalize"] == "device"
    code, _, err = run_cli(capsys, "train", str(tiny_recipe), "--dry-run", "--set", "normalize_on_device=maybe")
    assert code == 2 and "normalize_on_device" in err and "'auto', True or False" in err


def test_list_registry(capsys):
    code, out, _ = run_cli(capsys, "list-registry", "backbones", "--json")
    assert code == 0 and {"ResNet", "TIMMBackbone"} <= {r["name"] for r in json.loads(out)["backbones"]}
    code, out, _ = run_cli(capsys, "list-registry", "norms", "--filter", "Batch*", "--json")
    assert {r["name"] for r in json.loads(out)["norms"]} >= {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d"}
    code, out, _ = run_cli(capsys, "list-registry", "backbones", "--info", "ResNet", "--json")
    info = json.loads(out)
    assert info["arguments"]["outstride"] == "8"
    assert info["structure_types"]["resnet50conv3x3stem"] == [
        {"channels": c, "stride": s} for c, s in ((256, 4), (512, 8), (1024, 8), (2048, 8))]
    code, out, err = run_cli(capsys, "list-registry", "backbonez")
    assert code == 2 and "did you mean 'backbones'" in err


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("scheduler.max_epoch=3", "scheduler.max_epoch"),
        ('scheduler.max_epochs="x"', "scheduler.max_epochs"),
        ('backbone.type="ResNat"', "backbone.type"),
        ('dataset.rootdir="/dev/null/data"', "/dev/null/data"),
        ('backbone={type="HieraWithFPN", hiera_cfg={embed_dimm=8}, fpn_cfg={d_model=16, '
         'backbone_channel_list=[64, 32, 16, 8], position_encoding_cfg={num_pos_feats=16}}}',
         "backbone.hiera_cfg.embed_dimm: HieraWithFPN.hiera_cfg takes no 'embed_dimm'; did you mean 'embed_dim'?"),
        ('backbone.hiera_cfg={embed_dim=8}', "backbone.hiera_cfg: ResNet takes no 'hiera_cfg'"),
        ('losses.loss_cls.output="logits"', "losses.loss_cls: the FCN segmentor has no output 'logits'"),
        ('losses.loss_edge={type="CrossEntropyLoss"}', "losses.loss_edge: the FCN segmentor has no output 'edge'"),
        ("scheduler.optimizer.params_rules={query_embed={wd_multiplier=0.0}}",
         "scheduler.optimizer.params_rules.query_embed: matches no parameter of the model"),
    ],
)
def test_bad_input_exits_2_without_traceback(tiny_recipe, setting, needle):
    proc = segkit("train", str(tiny_recipe), "--set", setting, check_code=2)
    assert needle in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_bad_checkpoint_and_image(trained_run, tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    proc = segkit("eval", str(trained_run), "--checkpoint", str(bogus), check_code=2)
    assert "bogus.pt" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    proc = segkit("infer", str(trained_run), str(broken), "--out", str(tmp_path / "o"), check_code=2)
    assert "broken.jpg" in proc.stderr and "Traceback" not in proc.stderr


def test_unreadable_image_in_dataset(tiny_recipe, tmp_path, synthetic_root):
    import shutil

    data = tmp_path / "copy"
    shutil.copytree(synthetic_root, data)
    victim = sorted((data / "images" / "train").iterdir())[0]
    victim.write_bytes(b"garbage")
    proc = segkit("train", str(tiny_recipe), "--set", f'dataset.rootdir="{data}"', check_code=2)
    assert victim.name in proc.stderr and "Traceback" not in proc.stderr




def test_info_describes_a_model_without_data_or_weights(capsys):
    code, out, err = run_cli(capsys, "info", "recipes/fcn_r50_voc.toml", "--flops", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parameters"] == 40_066_954 and data["modules"]["backbone"] == 23_527_264
    assert data["features"] == [{"channels": 1024, "stride": 8}, {"channels": 2048, "stride": 8}]
    assert data["training_outputs"] == ["out", "aux"]
    assert data["losses"]["loss_aux"] == [{"type": "CrossEntropyLoss", "output": "aux", "target": "seg_target",
                                           "resize": "bilinear"}]
    assert data["input_size"] == [512, 512] and 250 < data["gflops"] < 350  # 2 FLOPs per multiply-add
    code, out, _ = run_cli(capsys, "info", "recipes/fcn_r50_voc.toml")
    assert code == 0 and "40,066,954 parameters" in out and "aux <- seg_target" in out
