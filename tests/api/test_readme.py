"""The README's notebook example runs as written (on a tiny trained run instead of the quickstart's)."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.conftest import REPO


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- the test suite runs this block \(tests/api/test_readme.py\) -->\n```python\n(.*?)```",
                      text, re.S)
    assert match, "the README lost its tested predictor example"
    return match.group(1)


def test_readme_predictor_example(trained_run, synthetic_root, tmp_path, monkeypatch, capsys):
    code = readme_block()
    assert 'segkit.load("runs/quickstart")' in code and "seg.predict(image)" in code
    code = code.replace("runs/quickstart", str(trained_run)).replace("data/synthetic", str(synthetic_root))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  (the documented example, as a user runs it)
    image, labels = scope["image"], scope["labels"]
    assert labels.dtype == np.int64 and labels.shape == image.shape[:2]
    assert 0 <= labels.min() and labels.max() < 5
    assert [b.shape for b in scope["batch"]] == [image.shape[:2], (48, 48)]
    assert scope["colours"].shape == (*image.shape[:2], 3)
    with Image.open(tmp_path / "overlay.png") as saved:
        assert saved.size[0] >= image.shape[1] and saved.size[1] > image.shape[0]  # legend below
    assert "background" in capsys.readouterr().out or labels.min() > 0
