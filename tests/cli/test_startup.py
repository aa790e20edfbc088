"""An instant CLI: help, version, completion and ``list-registry`` import no heavy library; usage errors exit 2;
no network at import (albumentations' update check is off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from segkit import cli

HEAVY = ("torch", "torchvision", "timm", "albumentations", "cv2")

# Runs segkit's CLI once per argv (each in the same fresh interpreter) and records, per invocation, its exit code
# and the heavy modules loaded by then, plus where the first import of each came from.
PROBE = r"""
import json, os, sys, traceback
HEAVY = __HEAVY__
first = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in first:
            first[top] = "".join(traceback.format_stack(limit=15)[:-1])
        return None

sys.meta_path.insert(0, Spy())
from segkit.cli import main

results = []
for argv, env in json.loads(sys.argv[1]):
    os.environ.update(env)
    try:
        main(argv)
        code = None
    except SystemExit as exc:
        code = exc.code
    for key in env:
        del os.environ[key]
    results.append({"argv": argv, "code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)})
with open(sys.argv[2], "w") as fh:
    json.dump({"results": results, "first": first}, fh)
""".replace("__HEAVY__", repr(HEAVY))


def probe(tmp_path, invocations: list[tuple[list[str], dict]]) -> dict:
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("_SEGKIT")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(invocations), str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    return json.loads(out.read_text())


def commands() -> list[str]:
    return sorted(typer.main.get_command(cli.app).commands)


def complete(words: str) -> dict:
    """bash completion request for ``words`` (the last word is the one being completed)."""
    parts = words.split(" ")
    return {"_SEGKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}


def test_help_version_completion_and_listing_import_nothing_heavy(tmp_path):
    invocations = [(["--help"], {}), (["--version"], {})]
    invocations += [([name, "--help"], {}) for name in commands()]
    invocations += [(["list-registry"], {}), (["list-registry", "backbones"], {}),
                    (["list-registry", "norms", "--filter", "BATCH*", "--wide"], {}),
                    (["list-registry", "heads", "--json"], {}), (["list-registry", "nosuchkind"], {}),
                    ([], complete("segkit list-registry b")), ([], complete("segkit eval run --tta f")),
                    ([], complete("segkit list-registry backbones --info Res")), ([], complete("segkit tr"))]
    report = probe(tmp_path, invocations)
    expected = [0] * (len(invocations) - 5) + [2, 0, 0, 0, 0]
    for result, code in zip(report["results"], expected, strict=True):
        assert result["code"] == code, result
        assert result["heavy"] == [], f"{result['argv']} imported {result['heavy']}:\n" + "\n".join(
            report["first"].values())
    assert len(commands()) >= 8  # train, eval, infer, export, prepare-data, info, list-registry, check-data, ...


def test_import_segkit_is_lazy_but_the_registries_are_complete(tmp_path):
    code = ("import sys, segkit\n"
            "assert segkit.__version__ and not [m for m in __HEAVY__ if m in sys.modules], sys.modules.keys()\n"
            "from segkit import BACKBONES, SEGMENTORS, TRANSFORMS, Registry, build_model, load_recipe\n"
            "assert 'ResNet' in BACKBONES.names() and 'FCN' in SEGMENTORS and len(TRANSFORMS) > 10\n"
            "assert isinstance(BACKBONES, Registry) and callable(build_model) and callable(load_recipe)\n"
            "assert all(getattr(segkit, name) is not None for name in segkit.__all__)\n"
            "assert segkit.models.__name__ == 'segkit.models' and not hasattr(segkit, 'no_such_thing')\n"
            "print(len(BACKBONES))\n").replace("__HEAVY__", repr(HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) >= 20


def test_a_registry_imported_alone_is_complete(tmp_path):
    code = ("from segkit.registry import DATASETS, OPTIMIZERS\n"
            "assert 'VOCDataset' in DATASETS and 'AdamW' in OPTIMIZERS.names()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_version(capsys):
    from segkit import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"segkit {__version__}"


@pytest.mark.parametrize("argv, needle", [
    (["--no-such-option"], "No such option: --no-such-option"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["train"], "Missing argument"),
    (["train", "x.toml", "--nproc", "two"], "Invalid value for '--nproc'"),
    (["list-registry", "backbones", "--json", "--bogus"], "No such option: --bogus"),
    (["eval"], "Missing argument"),
])
def test_usage_errors_exit_2_with_usage_and_no_traceback(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2, out + err
    assert needle in err and "Usage: segkit" in err and "Traceback" not in out + err


def test_bare_segkit_shows_the_help_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and "list-registry" in out + err


def run_segkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("_SEGKIT")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "segkit", *args], capture_output=True, text=True, timeout=300,
                          env=full)


def test_shell_completion_offers_kinds_names_and_choices():
    def offered(words: str) -> list[str]:
        proc = run_segkit(env=complete(words))
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert offered("segkit list-registry n") == ["necks", "norms"]
    assert offered("segkit list-registry backbones --info ResN") == ["ResNeSt", "ResNet"]
    assert offered("segkit eval run --tta ms") == ["ms", "ms+flip"]
    assert offered("segkit export run --format o") == ["onnx"]
    assert "list-registry" in offered("segkit li")
    # Typer's completion is on (--install-completion too); the shell is named, not detected from the process tree
    # (shellingham finds no shell above a pytest-xdist worker started from a daemon)
    proc = run_segkit("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert proc.returncode == 0 and "_SEGKIT_COMPLETE" in proc.stdout


def test_completion_choices_are_what_the_commands_accept():
    from segkit.evaluation.inference import TTA_PRESETS

    assert set(cli.TTA_CHOICES) == set(TTA_PRESETS)
    assert cli.EXPORT_FORMATS == ("onnx", "torchscript")


# ---------------------------------------------------------------------------------------------- no network
NETWORK_PROBE = r"""
import importlib.machinery, os, socket, sys
os.environ.pop("NO_ALBUMENTATIONS_UPDATE", None)
calls = []

def refuse(*args, **kwargs):
    calls.append(args)
    raise OSError("network access during import")

socket.socket.connect = refuse
socket.getaddrinfo = refuse

class PatchCheckVersion:
    # replaces albumentations.check_version.fetch_version_info (its network call) as soon as it is loaded
    def find_spec(self, name, path=None, target=None):
        if name != "albumentations.check_version":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.fetch_version_info = lambda: refuse("fetch_version_info")

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchCheckVersion())
if sys.argv[1] == "segkit":
    import segkit.data
    from segkit.registry import TRANSFORMS
    wrapper = TRANSFORMS.build({"type": "AlbumentationsWrapper", "albu_cfg": {"type": "HorizontalFlip", "p": 1.0}})
else:
    import albumentations
assert "albumentations" in sys.modules
print(len(calls))
"""


def test_albumentations_update_check_is_off_once_segkit_is_imported():
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    counts = {}
    for first in ("segkit", "albumentations"):
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", NETWORK_PROBE, first], capture_output=True,
                              text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts[first] = int(proc.stdout.strip().splitlines()[-1])
    assert counts["albumentations"] >= 1  # the probe sees the update check when segkit has not turned it off
    assert counts["segkit"] == 0
