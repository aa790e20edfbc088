"""The bad-input corpus: every case is one ``segkit`` command that must exit 2 with a message naming the file or the
TOML path at fault, print no traceback, and leave every file that was on disk before unchanged.

Cases cover recipes, CLI options, datasets, checkpoints, archives, infer inputs and outputs, export outputs and
work dirs. Each builds what it needs in its own ``tmp_path`` and returns the command line and the words the
message must hold.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import run_cli, snapshot, write_recipe


@dataclass
class Ctx:
    tmp: Path
    data: Path  # the shared synthetic dataset (read-only for the cases)
    run: Path  # a trained run dir (read-only for the cases)

    def recipe(self, extra: str = "", name: str = "r") -> Path:
        return write_recipe(self.tmp / name, self.data, self.tmp / name / "run", extra)

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def data_copy(self) -> Path:
        copy = self.tmp / "data"
        if not copy.exists():
            shutil.copytree(self.data, copy)
        return copy

    def images(self, name: str = "imgs", count: int = 2) -> Path:
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(folder / f"im{i}.png"), np.full((40, 40, 3), 60 * i, np.uint8))
        return folder


def huge_header_png() -> bytes:
    """A valid 4x4 PNG whose header claims 33000x33000 pixels."""
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    raw = bytearray(buf.tobytes())
    raw[16:24] = struct.pack(">II", 33000, 33000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    return bytes(raw)


def truncated_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8))
    return buf.tobytes()[: len(buf) // 2]


def evil_tar(c: Ctx) -> Path:
    path = c.tmp / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("synthetic/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(info)
        info = tarfile.TarInfo("synthetic/meta.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return path


def train(c: Ctx, *sets: str, extra: str = "", opts: tuple = ()) -> list:
    return ["train", c.recipe(extra), *[tok for s in sets for tok in ("--set", s)], *opts]


def check_data(c: Ctx, *sets: str) -> list:
    return ["check-data", c.recipe(), "--json", *[tok for s in sets for tok in ("--set", s)]]


def with_bad_image(c: Ctx, content: bytes) -> str:
    """A copy of the dataset whose first train image holds ``content`` (OpenCV reads by content, not name)."""
    data = c.data_copy()
    victim = sorted((data / "images" / "train").iterdir())[0]
    victim.write_bytes(content)
    return f'dataset.rootdir="{data}"'


def readonly_dir() -> str:
    return "/proc/self/segkit-test"  # not creatable, even by root


CASES = {
    # ------------------------------------------------------------------ recipes
    "binary recipe": (lambda c: ["train", c.file("bin.toml", bytes(range(128, 256)))], "not a UTF-8 text file"),
    "recipe is a folder": (lambda c: ["train", c.tmp], "recipe file not found"),
    "recipe missing": (lambda c: ["train", c.tmp / "nope.toml"], "nope.toml"),
    "toml syntax error": (lambda c: ["train", c.file("bad.toml", "num_classes = = 3\n")], "not valid TOML"),
    "extends = [42]": (lambda c: ["train", c.file("x.toml", "extends = [42]\n")], "extends[0]: expected a recipe path"),
    "extends a missing file": (lambda c: ["train", c.file("x.toml", 'extends = ["gone.toml"]\n')],
                               "base recipe not found: gone.toml"),
    "extends a table": (lambda c: ["train", c.file("x.toml", "[extends]\na = 1\n")], "extends"),
    "num_classes 10**20": (lambda c: train(c, "num_classes=100000000000000000000"), "num_classes"),
    "num_classes 0": (lambda c: train(c, "num_classes=0"), "num_classes"),
    "num_classes larger than the class names": (lambda c: train(c, "num_classes=7"),
                                                "num_classes: is 7 but the dataset SyntheticDataset has 5 classes"),
    "num_classes smaller than the class names": (lambda c: train(c, "num_classes=3"), "set num_classes = 5"),
    "max_epochs 0": (lambda c: train(c, "scheduler.max_epochs=0"), "scheduler.max_epochs"),
    "lr inf": (lambda c: train(c, "scheduler.optimizer.lr=inf"), "scheduler.optimizer.lr"),
    "lr nan": (lambda c: train(c, "scheduler.optimizer.lr=nan"), "scheduler.optimizer.lr"),
    "lr negative": (lambda c: train(c, "scheduler.optimizer.lr=-0.1"), "scheduler.optimizer.lr"),
    "power negative": (lambda c: train(c, "scheduler.power=-1.0"), "scheduler.power"),
    "warmup ratio 1.5": (lambda c: train(c, 'scheduler.warmup_cfg={type="linear", ratio=1.5, iters=2}'),
                         "scheduler.warmup_cfg.ratio"),
    "ema momentum 2": (lambda c: train(c, "ema_cfg.momentum=2.0"), "ema_cfg.momentum"),
    "batch size 0": (lambda c: train(c, "dataloader.train.batch_size_per_gpu=0"),
                     "dataloader.train.batch_size_per_gpu"),
    "workers -1": (lambda c: train(c, "dataloader.train.num_workers_per_gpu=-1"),
                   "dataloader.train.num_workers_per_gpu"),
    "multiscale 0": (lambda c: train(c, "inference.tta.multiscale=[0.0]"), "inference.tta.multiscale"),
    "seed negative": (lambda c: train(c, "seed=-1"), "seed"),
    "clip max_norm 0": (lambda c: train(c, "scheduler.clipgrad_cfg={max_norm=0.0}"), "scheduler.clipgrad_cfg.max_norm"),
    "log interval 0": (lambda c: train(c, "training_logging_manager_cfg.log_interval_iters=0"),
                       "training_logging_manager_cfg.log_interval_iters"),
    "eval interval 0": (lambda c: train(c, "eval_interval_epochs=0"), "eval_interval_epochs"),
    "save interval 0": (lambda c: train(c, "save_interval_epochs=0"), "save_interval_epochs"),
    "max_keep_ckpts 0": (lambda c: train(c, "max_keep_ckpts=0"), "max_keep_ckpts"),
    "negative channels": (lambda c: train(c, "backbone.base_channels=-4"), "--set: backbone: ResNet cannot be built"),
    "memory bomb channels": (lambda c: train(c, "backbone.base_channels=2000000000"), "backbone"),
    "memory bomb parameters": (lambda c: train(c, "backbone.base_channels=100000"),
                               "backbone.base_channels = 100000"),
    "--set typo in a split table": (lambda c: train(c, 'dataset.train.sett="train"'),
                                    "--set: dataset.train.sett"),
    "--set without =": (lambda c: train(c, "scheduler.max_epochs"), "expected KEY.PATH=VALUE"),
    "unknown top-level key": (lambda c: train(c, "num_clases=5"), "num_clases"),
    "split smaller than the batch": (lambda c: train(c, "dataset.num_train=4", f'dataset.rootdir="{c.tmp}/d4"'),
                                     "no iteration would run"),
    # ------------------------------------------------------------------ CLI options
    "--nproc -2": (lambda c: train(c, opts=("--nproc", "-2")), "--nproc"),
    "--gpus -1": (lambda c: train(c, opts=("--gpus", "-1")), "--gpus"),
    "--device cuda without CUDA": (lambda c: train(c, opts=("--device", "cuda")), "--device cuda"),
    "--device gpu": (lambda c: train(c, opts=("--device", "gpu")), "--device 'gpu'"),
    "--plugin that raises": (lambda c: ["--plugin", "segkit_badplugin_raises", "list-registry"],
                             "--plugin segkit_badplugin_raises: importing it raised RuntimeError"),
    "--plugin missing": (lambda c: ["--plugin", "segkit_no_such_plugin", "list-registry"],
                         "--plugin segkit_no_such_plugin"),
    "--resume missing file": (lambda c: train(c, opts=("--resume", str(c.tmp / "gone.pt"))), "gone.pt"),
    "--resume a text file": (lambda c: train(c, opts=("--resume", str(c.file("t.pt", "hello\n")))), "t.pt"),
    "--resume weights-only best.pt": (lambda c: train(c, opts=("--resume", str(c.run / "checkpoints/best.pt"))),
                                      "best.pt holds weights only"),
    "check-data --split nope": (lambda c: ["check-data", c.recipe(), "--split", "nope"], "--split 'nope'"),
    "eval --tta bogus": (lambda c: ["eval", c.run, "--tta", "bogus"], "bogus"),
    "eval --device cuda": (lambda c: ["eval", c.run, "--device", "cuda"], "--device cuda"),
    # ------------------------------------------------------------------ datasets
    "truncated JPEG in a dataset": (lambda c: check_data(c, with_bad_image(c, truncated_jpeg())), "truncated JPEG"),
    "33000x33000 header in a dataset": (
        lambda c: check_data(c, with_bad_image(c, huge_header_png())), "OpenCV's limit"),
    "33000x33000 header while training": (
        lambda c: train(c, with_bad_image(c, huge_header_png())), "OpenCV's limit"),
    "rootdir is a file": (lambda c: train(c, f'dataset.rootdir="{c.file("f.txt", "x")}"'), "f.txt"),
    "folder dataset without its folder": (lambda c: [
        "train", str(Path(__file__).resolve().parents[2] / "recipes" / "folder_example.toml"), "--work-dir",
        f"{c.tmp}/w", "--set", f'dataset.rootdir="{c.tmp}/nowhere"'], "(the recipe's dataset.rootdir = "),
    # ------------------------------------------------------------------ checkpoints
    "text file as a checkpoint": (lambda c: ["eval", c.run, "--checkpoint", c.file("c.pt", "hello world\n")],
                                  "c.pt is not a readable PyTorch checkpoint"),
    "empty checkpoint": (lambda c: ["eval", c.run, "--checkpoint", c.file("e.pt", b"")], "e.pt"),
    "truncated checkpoint": (lambda c: ["eval", c.run, "--checkpoint", c.file(
        "half.pt", (c.run / "checkpoints/last.pt").read_bytes()[:5000])], "half.pt"),
    "folder as a checkpoint": (lambda c: ["eval", c.run, "--checkpoint", c.tmp], "is a folder"),
    "checkpoint of another model": (lambda c: ["eval", c.recipe(), "--set", "head.feats_channels=8",
                                               "--checkpoint", c.run / "checkpoints/last.pt"], "does not fit"),
    "pickle that runs code": (lambda c: ["eval", c.run, "--checkpoint", c.file(
        "evil.pt", b"cos\nsystem\n(S'echo pwned'\ntR.")], "evil.pt"),
    # ------------------------------------------------------------------ infer inputs and outputs
    "infer --alpha 2.5": (lambda c: ["infer", c.run, c.images(), "--out", c.tmp / "o", "--alpha", "2.5"],
                          "--alpha 2.5"),
    "infer --alpha -0.1": (lambda c: ["infer", c.run, c.images(), "--out", c.tmp / "o", "--alpha", "-0.1"],
                           "--alpha -0.1"),
    "infer --out is the input folder": (lambda c: ["infer", c.run, c.images(), "--out", c.tmp / "imgs"],
                                        "is the input folder"),
    "infer --out inside the input folder": (lambda c: ["infer", c.run, c.images(), "--out", c.tmp / "imgs/p"],
                                            "inside the input folder"),
    "infer output over an input file": (lambda c: ["infer", c.run, c.images("o") / "im0.png", "--out", c.tmp / "o"],
                                        "would overwrite the input image"),
    "infer --out under a file": (lambda c: ["infer", c.run, c.images(), "--out", c.file("f", "x") / "p"],
                                 "is a file"),
    "infer --out not creatable": (lambda c: ["infer", c.run, c.images(), "--out", readonly_dir()], "--out"),
    "infer missing input": (lambda c: ["infer", c.run, c.tmp / "nope.jpg", "--out", c.tmp / "o"], "nope.jpg"),
    "infer folder without images": (lambda c: ["infer", c.run, c.file("d/x.txt", "x").parent, "--out", c.tmp / "o"],
                                    "no images"),
    "infer corrupt image": (lambda c: ["infer", c.run, c.file("bad.jpg", b"\xff\xd8junk"), "--out", c.tmp / "o"],
                            "bad.jpg"),
    "infer 33000x33000 header": (lambda c: ["infer", c.run, c.file("huge.png", huge_header_png()), "--out",
                                            c.tmp / "o"], "huge.png"),
    # ------------------------------------------------------------------ export
    "export --input-size 100000x100000": (lambda c: ["export", c.run, "--input-size", "100000x100000", "--out",
                                                     c.tmp / "m.onnx"], "--input-size 100000x100000"),
    "export --input-size abc": (lambda c: ["export", c.run, "--input-size", "abc", "--out", c.tmp / "m.onnx"],
                                "--input-size 'abc'"),
    "export --input-size 0x5": (lambda c: ["export", c.run, "--input-size", "0x5", "--out", c.tmp / "m.onnx"],
                                "positive"),
    "export --format pdf": (lambda c: ["export", c.run, "--format", "pdf", "--out", c.tmp / "m.pdf"], "pdf"),
    "export --out is a folder": (lambda c: ["export", c.run, "--out", c.images("exp")], "is a folder"),
    "export --out under a file": (lambda c: ["export", c.run, "--out", c.file("f", "x") / "m.onnx"], "is a file"),
    "export --out not creatable": (lambda c: ["export", c.run, "--out", readonly_dir() + "/m.onnx"], "--out"),
    # ------------------------------------------------------------------ work dirs
    "work dir under a file": (lambda c: train(c, opts=("--work-dir", str(c.file("f", "x") / "run"))), "is a file"),
    "work dir is a file": (lambda c: train(c, opts=("--work-dir", str(c.file("w", "x")))), "w is a file"),
    "work dir not creatable": (lambda c: train(c, opts=("--work-dir", readonly_dir())), "work_dir"),
    "work dir with outputs but no checkpoint": (
        lambda c: train(c, opts=("--work-dir", str(outputs_only(c)))), "but no checkpoint"),
    "work dir holding a run": (lambda c: train(c, opts=("--work-dir", str(c.run))), "already holds a run"),
    # ------------------------------------------------------------------ archives and datasets to prepare
    "prepare-data from an escaping archive": (
        lambda c: ["prepare-data", "synthetic", "--root", c.tmp / "root", "--from-archive", evil_tar(c)],
        "refusing symlink 'synthetic/link'"),
    "prepare-data archive missing": (lambda c: ["prepare-data", "synthetic", "--root", c.tmp / "root",
                                                "--from-archive", c.tmp / "gone.tar.gz"], "gone.tar.gz"),
    "prepare-data unknown dataset": (lambda c: ["prepare-data", "synthetik", "--root", c.tmp / "root"],
                                     "synthetic"),
}


def outputs_only(c: Ctx) -> Path:
    work = c.tmp / "old_run"
    (work / "eval").mkdir(parents=True)
    (work / "recipe.toml").write_text("# an earlier run\n")
    (work / "eval" / "metrics.json").write_text("{}\n")
    (work / "log.txt").write_text("old log\n")
    return work


@pytest.fixture
def plugin_that_raises(tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "segkit_badplugin_raises.py").write_text("raise RuntimeError('broken plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_a_message_and_changes_nothing(case, tmp_path, synthetic_root, trained_run, capsys,
                                                              plugin_that_raises, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the same answer on every machine
    build, needle = CASES[case]
    c = Ctx(tmp_path, synthetic_root, trained_run)
    args = build(c)
    before = snapshot(tmp_path, trained_run, synthetic_root)
    code, output = run_cli(capsys, *args)
    assert code == 2, output
    assert needle in output, output
    assert "Traceback" not in output
    after = snapshot(tmp_path, trained_run, synthetic_root)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that was there changed"
    assert set(before) <= set(after), "a file that was there is gone"


def test_same_file_names_from_different_folders_are_all_kept(tmp_path, trained_run, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, 10), (b, 200)):
        folder.mkdir()
        cv2.imwrite(str(folder / "x.png"), np.full((40, 40, 3), value, np.uint8))
    code, output = run_cli(capsys, "infer", trained_run, a, b, "--out", tmp_path / "p")
    assert code == 0, output
    written = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.png"))
    assert written == ["a/x.png", "a/x_overlay.png", "b/x.png", "b/x_overlay.png"]
    overlays = [cv2.imread(str(tmp_path / "p" / name)) for name in written if "overlay" in name]
    assert overlays[0].tobytes() != overlays[1].tobytes()  # two inputs, two predictions
    # two files of one folder that would get the same name: refused, naming both, nothing written
    cv2.imwrite(str(a / "x.jpg"), np.full((40, 40, 3), 90, np.uint8))
    before = snapshot(tmp_path)
    code, output = run_cli(capsys, "infer", trained_run, a, "--out", tmp_path / "q")
    assert code == 2 and "x.jpg" in output and "x.png" in output and "Traceback" not in output
    assert snapshot(tmp_path) == before


def test_check_data_passes_complete_files(tmp_path, synthetic_root, capsys):
    """The truncation check does not flag whole files (the corpus case above flags the cut one)."""
    code, output = run_cli(capsys, "check-data", write_recipe(tmp_path, synthetic_root))
    assert code == 0, output


def test_label_values_beyond_num_classes_are_found_before_training(tmp_path, synthetic_root):
    """A dataset whose class list fits but whose label maps hold a larger value: named before any step runs."""
    from segkit.engine.guards import check_num_classes
    from segkit.errors import RecipeError
    from segkit.recipe import load_recipe

    rec = load_recipe(write_recipe(tmp_path, synthetic_root))

    class Labels:
        classnames = ["a", "b", "c", "d", "e"]
        imageids = ["0", "1"]
        ignore_index = 255

        def read(self, imageid):
            return {"seg_target": np.array([[0, 255], [4, 7 if imageid == "1" else 1]])}

    with pytest.raises(RecipeError, match=r"num_classes: is 5 but the label map of '1' holds the value\(s\) \[7\]"):
        check_num_classes(rec, Labels())


def test_files_are_written_with_the_umask(tmp_path):
    from segkit.engine.checkpoint import save_checkpoint
    from segkit.fileio import atomic_write_text

    old = os.umask(0o027)
    try:
        save_checkpoint({"model": {}}, tmp_path / "c" / "last.pt")
        atomic_write_text(tmp_path / "recipe.toml", "x = 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "c" / "last.pt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "recipe.toml").stat().st_mode & 0o777 == 0o640
    assert not [p for p in (tmp_path / "c").iterdir() if p.name != "last.pt"]
