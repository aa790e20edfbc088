"""``inference.evaluate.metric_list`` selects what is printed and written: the epoch line, ``log.txt``,
``metrics.jsonl``, ``eval/metrics.json``, and ``segkit eval``'s table, line, ``--json`` and result file. The
confusion matrix and ``eval/per_class.csv`` stay complete; ``best.pt`` is chosen by mIoU even when it is not listed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch


def run_cli(capsys, *args, stdout_only: bool = False) -> tuple[int, str]:
    from segkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out if stdout_only else out + err


def train(capsys, recipe: Path, work: Path, metric_list: str) -> str:
    code, output = run_cli(capsys, "train", recipe, "--work-dir", work, "--report-to", "none",
                           "--set", "scheduler.max_epochs=1", "--set", "vis_samples=0",
                           "--set", f"inference.evaluate.metric_list={metric_list}")
    assert code == 0, output
    return output


def eval_records(work: Path) -> list[dict]:
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "eval"]


def per_class_columns(work: Path) -> list[str]:
    with (work / "eval" / "per_class.csv").open() as fh:
        return next(csv.reader(fh))


def test_only_miou(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "miou"
    output = train(capsys, tiny_recipe, work, '["miou"]')
    epoch_line = next(line for line in output.splitlines() if line.startswith("epoch 1/1 done in"))
    assert "| mIoU 0." in epoch_line and "aAcc" not in epoch_line and "mAcc" not in epoch_line
    assert "aAcc" not in output and "mAcc" not in output
    assert set(json.loads((work / "eval" / "metrics.json").read_text())) == {"mIoU"}
    assert [set(r) for r in eval_records(work)] == [{"kind", "epoch", "iter", "mIoU"}]
    log_eval = [line for line in (work / "log.txt").read_text().splitlines() if "eval epoch 1:" in line]
    assert len(log_eval) == 1 and log_eval[0].endswith(f"mIoU {eval_records(work)[0]['mIoU']:.4f}")
    # kept complete
    assert per_class_columns(work)[:4] == ["class", "IoU", "Acc", "Dice"]
    assert (work / "eval" / "confusion_matrix.csv").is_file()

    code, output = run_cli(capsys, "eval", work)
    assert code == 0, output
    assert "mIoU 0." in output and "aAcc" not in output and "Dice" not in output
    assert not any(line.split()[:1] == ["class"] or "┃ class" in line for line in output.splitlines())  # no table
    saved = json.loads((work / "eval" / "best.json").read_text())
    assert set(saved) == {"mIoU", "checkpoint", "provenance"}
    history = json.loads((work / "eval" / "history.jsonl").read_text().splitlines()[-1])
    assert "mIoU" in history and "aAcc" not in history and "mDice" not in history

    code, output = run_cli(capsys, "eval", work, "--json", stdout_only=True)
    assert code == 0, output
    assert set(json.loads(output)) == {"mIoU", "checkpoint", "result_file"}


def test_iou_miou_dice(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "three"
    output = train(capsys, tiny_recipe, work, '["iou", "miou", "dice"]')
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert list(metrics) == ["IoU", "mIoU", "Dice"]
    assert set(metrics["Dice"]) == {"background", "disc", "square", "triangle", "ring"}
    assert [list(r)[3:] for r in eval_records(work)] == [["IoU", "mIoU", "Dice"]]
    assert "aAcc" not in output

    code, output = run_cli(capsys, "eval", work)
    assert code == 0, output
    header = next(line for line in output.splitlines() if "class" in line and "IoU" in line)
    assert [c.strip() for c in header.replace("|", "┃").split("┃") if c.strip()] == ["class", "IoU", "Dice"]
    assert "Acc" not in output and "mDice" not in output
    assert any(line.strip().startswith("mIoU 0.") for line in output.splitlines())
    assert list(json.loads((work / "eval" / "best.json").read_text())) == ["IoU", "mIoU", "Dice", "checkpoint",
                                                                           "provenance"]


def test_best_checkpoint_by_miou_without_printing_it(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "dice"
    output = train(capsys, tiny_recipe, work, '["dice", "mdice"]')
    assert "mIoU" not in output and "mDice 0." in output
    assert set(json.loads((work / "eval" / "metrics.json").read_text())) == {"Dice", "mDice"}
    best = torch.load(work / "checkpoints" / "best.pt", weights_only=True)
    assert 0.0 <= best["best_miou"] <= 1.0  # chosen by the mIoU computed internally
    assert per_class_columns(work)[1] == "IoU"  # the per-class table keeps every metric
