"""Evaluations with provenance (eval/<checkpoint>[_<tta>].json + eval/history.jsonl) and env.json."""

from __future__ import annotations

import hashlib
import json

import torch

from segkit import api


def test_env_json(trained_run):
    env = json.loads((trained_run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["world_size"] == 1
    assert env["segkit"] and env["timm"] and env["python"].count(".") == 2
    assert isinstance(env["argv"], list)


def test_eval_keeps_the_training_result_and_records_provenance(trained_run):
    training_result = (trained_run / "eval" / "metrics.json").read_text()
    history = trained_run / "eval" / "history.jsonl"
    before = history.read_text().splitlines() if history.exists() else []
    plain = api.evaluate(trained_run)
    flipped = api.evaluate(trained_run, tta="flip", checkpoint=trained_run / "checkpoints" / "last.pt")
    assert (trained_run / "eval" / "metrics.json").read_text() == training_result
    assert plain["result_file"] == str(trained_run / "eval" / "best.json")
    assert flipped["result_file"] == str(trained_run / "eval" / "last_flip.json")
    saved = json.loads((trained_run / "eval" / "last_flip.json").read_text())
    assert saved["mIoU"] == flipped["mIoU"]
    provenance = saved["provenance"]
    checkpoint = trained_run / "checkpoints" / "last.pt"
    assert provenance["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert provenance["epoch"] == 2 and provenance["tta"] == "flip" and provenance["split"] == "val"
    assert provenance["inference"]["flip"] is True and provenance["num_images"] == 8
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(lines) == len(before) + 2
    assert lines[-2]["checkpoint"].endswith("best.pt") and lines[-2]["tta"] == "recipe"
    assert lines[-1]["mIoU"] == flipped["mIoU"] and lines[-1]["result"] == flipped["result_file"]
