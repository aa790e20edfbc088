"""``segkit train --nproc 2`` with a bad input that fails in every process: the user's error once, exit 2, no
torchrun traceback and no gloo disconnection noise (segkit/engine/rank_errors.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from segkit.engine.rank_errors import summarise
from tests.conftest import REPO

NOISE = ("Traceback", "ChildFailedError", "Connection closed", "GLHF", "[rank", "torch.distributed")


def launch(*args: str, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    env.pop("SEGKIT_RANK_ERRORS", None)
    proc = subprocess.run([sys.executable, "-m", "segkit", "train", *args, "--nproc", "2"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_missing_dataset_folder_is_reported_once(tmp_path):
    """The own-data example without its data: rank 0 fails reading the folder while rank 1 waits for it (and
    then loses its connection); the user sees the missing folder once."""
    code, output = launch(str(REPO / "recipes" / "folder_example.toml"), "--set", "backbone.pretrained=false",
                          "--work-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data/my_dataset" in errors[0], output
    assert output.count("image directory not found: data/my_dataset/images/train") == 1, output
    assert "dataset.rootdir = 'data/my_dataset'" in errors[0]  # the recipe key that points there
    assert not any(noise in output for noise in NOISE), output


def test_error_raised_in_every_process_is_shown_once(tiny_recipe, tmp_path):
    """num_classes disagrees with the data: found after the process group started, by both processes."""
    code, output = launch(str(tiny_recipe), "--set", "num_classes=3", cwd=tmp_path)
    assert code == 2, output
    assert output.count("num_classes: is 3 but the dataset SyntheticDataset has 5 classes") == 1, output
    assert output.startswith("error: ") or "\nerror: " in output
    assert not any(noise in output for noise in NOISE), output


GLOO = ("RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
        "[127.0.0.1]:63638. This is typically caused by a remote worker crashing.")


def test_summary_prefers_the_cause_over_the_peers_disconnection():
    user = {"rank": 1, "code": 2, "message": "dataset.rootdir: folder not found"}
    peer = {"rank": 0, "code": 1, "message": GLOO}
    # a user error in rank 1 only: named with its rank; the disconnection it caused in rank 0 is not shown
    assert summarise([peer, user], {}) == (2, ["[rank 1] dataset.rootdir: folder not found"])
    # the same user error everywhere: once, no rank
    both = [{**user, "rank": 0}, user]
    assert summarise(both, {}) == (2, ["dataset.rootdir: folder not found"])
    # an internal error and the disconnection it caused: the cause only
    crash = {"rank": 1, "code": 1, "message": "ZeroDivisionError: division by zero"}
    code, lines = summarise([peer, crash], {})
    assert code == 1 and lines[0] == "[rank 1] ZeroDivisionError: division by zero" and len(lines) == 2
    assert "--debug" in lines[1]
    # only disconnections: shown (deduplicated), since nothing else explains the failure
    code, lines = summarise([peer, {**peer, "rank": 1}], {})
    assert code == 1 and lines[0] == f"[ranks 0, 1] {GLOO}"


def test_summary_of_processes_that_died_without_a_word():
    killed = SimpleNamespace(exitcode=-9, signal_name=lambda: "SIGKILL")
    code, lines = summarise([], {1: killed})
    assert code == 1 and lines == ["[rank 1] the process was killed by signal SIGKILL"]
