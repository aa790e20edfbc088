"""The registry manifest behind ``segkit list-registry``: identical to the real registries, and what the command
shows (80 columns, case-insensitive filter, pure JSON on stdout, plugins included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from segkit import manifest
from segkit.cli import main


def fresh_manifest() -> dict:
    """The manifest generated now, in a fresh interpreter (no test-registered components)."""
    proc = subprocess.run([sys.executable, "-m", "segkit.manifest", "--print"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_committed_manifest_equals_the_registries():
    committed = json.loads(manifest.MANIFEST_PATH.read_text())
    fresh = fresh_manifest()
    stale = f"segkit/_manifest.json is stale: regenerate it with `{manifest.REGENERATE}` and commit it"
    assert list(committed["registries"]) == list(fresh["registries"]), stale
    same_externals = committed["versions"] == fresh["versions"]
    for kind, rows in fresh["registries"].items():
        old = {row["name"]: row for row in committed["registries"][kind]}
        assert list(old) == [row["name"] for row in rows], f"{kind}: {stale}"
        for row in rows:
            # components from torch etc.: their docstrings and module paths follow the installed version
            if row["where"].startswith("segkit.") or same_externals:
                assert old[row["name"]] == row, f"{kind} {row['name']}: {stale}"
            else:
                assert not old[row["name"]]["where"].startswith("segkit."), f"{kind} {row['name']}: {stale}"


def test_listing_from_the_manifest_is_the_live_listing():
    from segkit import api

    for kind, pattern in (("backbones", None), ("norms", "batch*"), ("transforms", "resize"), ("heads", "FCN")):
        assert manifest.listing(kind, pattern) == api.list_registry(kind, pattern)
    assert manifest.kinds() == list(api.REGISTRIES)


@pytest.mark.parametrize("doc, summary", [
    ("Resize to ``output_size``, optionally jittered.\n\n    More text.", "Resize to output_size, optionally jittered."),
    ("A :class:`torch.nn.BatchNorm1d` module with lazy init.", "A torch.nn.BatchNorm1d module with lazy init."),
    ("Wraps :class:`~segkit.models.Foo` and :func:`bar <pkg.bar>`. Second sentence.", "Wraps Foo and bar."),
    ("Polynomial decay: ``(1 - it/max_it)**power * lr``\n    per iteration.",
     "Polynomial decay: (1 - it/max_it)**power * lr per iteration."),
    ("The *first* and **bold** words, e.g. the ``x``.", "The first and bold words, e.g. the x."),
    (None, ""),
])
def test_summary_is_the_first_sentence_without_markup(doc, summary):
    assert manifest.summarize(doc) == summary


@pytest.mark.parametrize("name, pattern, hit", [
    ("BatchNorm2d", "batch*", True), ("BatchNorm2d", "BATCHNORM?D", True), ("SyncBatchNorm", "batch", True),
    ("SyncBatchNorm", "batch*", False), ("ResNet", None, True), ("ResNet", "vit", False),
])
def test_filter_is_a_case_insensitive_glob_or_substring(name, pattern, hit):
    assert manifest.matches(name, pattern) is hit


def segkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segkit", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "80", **(env or {})})


def test_listing_fits_80_columns_with_whole_names():
    proc = segkit("list-registry")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    shown = {line.split("│")[1].strip() for line in lines if line.startswith("│")}
    every = {row["name"] for rows in manifest.load_manifest()["registries"].values() for row in rows}
    assert every <= shown
    assert "``" not in proc.stdout and ":class:" not in proc.stdout


def test_json_listing_and_info(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list-registry", "norms", "--filter", "BATCH*", "--json"])
    assert exc.value.code == 0
    rows = json.loads(capsys.readouterr().out)["norms"]
    assert {r["name"] for r in rows} == {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d"}
    with pytest.raises(SystemExit) as exc:
        main(["list-registry", "--info", "ResNet", "--json"])  # the kind is found from the name
    info = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and info["name"] == "ResNet" and "depth" in info["arguments"]
    with pytest.raises(SystemExit) as exc:
        main(["list-registry", "--info", "resnet"])
    assert exc.value.code == 2 and "did you mean 'ResNet'" in capsys.readouterr().err


NOISY_PLUGIN = '''
import sys
from torch import nn
from segkit import BACKBONES

print("a plugin that prints on import")
sys.stdout.flush()
import os
os.write(1, b"and writes to file descriptor 1\\n")


@BACKBONES.register("NoisyNet")
class NoisyNet(nn.Module):
    """A backbone from a ``plugin``."""
'''


def test_plugins_are_listed_and_json_stdout_stays_pure(tmp_path):
    (tmp_path / "noisy_plugin.py").write_text(NOISY_PLUGIN)
    proc = segkit("--plugin", "noisy_plugin", "list-registry", "backbones", "--filter", "noisy", "--json",
                  env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"backbones": [
        {"name": "NoisyNet", "where": "noisy_plugin.NoisyNet", "summary": "A backbone from a plugin.",
         "structure_types": []}]}
    assert "prints on import" in proc.stderr and "file descriptor 1" in proc.stderr
    proc = segkit("--plugin", "noisy_plugin", "list-registry", "backbones", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0 and "NoisyNet" in proc.stdout and "ResNet" in proc.stdout


def test_without_the_manifest_the_listing_comes_from_the_registries():
    code = ("import json, sys\nfrom pathlib import Path\nimport segkit.manifest as m\n"
            "m.MANIFEST_PATH = Path('/nonexistent/_manifest.json')\nfrom segkit.cli import main\n"
            "main(['list-registry', 'necks', '--json'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == manifest.listing("necks")
