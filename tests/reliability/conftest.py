"""Shared pieces of the reliability corpus: a tiny recipe, one trained run, running the CLI, hashing folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_RECIPE


def write_recipe(folder: Path, data: Path, work_dir: Path | None = None, extra: str = "") -> Path:
    """The test suite's tiny recipe (FCN, slim ResNet-18, 2 epochs of 3 steps on 48x48 images) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    text = TINY_RECIPE.format(repo=REPO, work_dir=work_dir or folder / "run", data=data)
    path.write_text(extra + text if extra.startswith(("extends", "#")) else text + extra)
    return path


def snapshot(*roots: Path) -> dict[str, str]:
    """``{path: sha256}`` of every file under ``roots`` (what a refused command must leave untouched)."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        for p in files:
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """``segkit ARGS`` in this process; returns the exit code and stdout + stderr."""
    from segkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out + err


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_root) -> Path:
    """One trained run dir (2 epochs) for the eval / infer / export / resume cases; never modified by them."""
    from segkit import api

    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder, synthetic_root)
    api.train(recipe, ["scheduler.max_epochs=1"])
    return folder / "run"
