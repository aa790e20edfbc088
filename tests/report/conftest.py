"""One tiny trained run shared by the report and api tests (training is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_RECIPE


def write_tiny_recipe(folder: Path, data: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(repo=REPO, work_dir=folder / "run", data=data))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_root) -> Path:
    """A 2-epoch run (evaluated after each epoch) with TensorBoard on; returns its run dir."""
    from segkit import api

    folder = tmp_path_factory.mktemp("trained")
    recipe = write_tiny_recipe(folder, synthetic_root)
    api.train(recipe, ['report_to=["tensorboard"]', "training_logging_manager_cfg.log_interval_iters=1"])
    return folder / "run"
