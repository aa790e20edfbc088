"""prepare-data shows byte progress of its downloads; check-data shows sample progress (pipes: plain lines)."""

from __future__ import annotations

import re

import pytest

from segkit.cli import main
from tests.prepare.test_datasets_download import served  # noqa: F401  (the local HTTP server fixture)


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_prepare_data_shows_bytes(served, tmp_path, capsys):  # noqa: F811
    _, _, payload = served
    code, out, err = run_cli(capsys, "prepare-data", "ade20k", "--root", str(tmp_path / "data"))
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("download ade20k ")]
    assert lines, err
    total_kb = f"{len(payload) / 1000:.1f} kB"
    assert re.fullmatch(rf"download ade20k {re.escape(total_kb)}/{re.escape(total_kb)} [\d.]+ \S+/s eta \S+",
                        lines[-1]), lines[-1]


def test_check_data_shows_samples(tiny_recipe, capsys):
    code, out, err = run_cli(capsys, "check-data", str(tiny_recipe))
    assert code == 0, err
    assert re.search(r"^check train 24/24 samples [\d.]+/s elapsed", err, re.M)
    assert re.search(r"^check test 8/8 samples", err, re.M)
    assert "no problems" in out
