"""Sessions: quickstart (the main job), tests (default, fast), slow, bench, lint. Environments are made with uv."""

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PY = "3.11"


@nox.session(python=PY)
def quickstart(session: nox.Session) -> None:
    """Install segkit, then train, evaluate, predict and export on the embedded synthetic dataset (CPU)."""
    session.install("-e", ".[onnx,tensorboard,plots]")
    run = "runs/quickstart"
    if Path(run).exists():  # the demo's own output from an earlier quickstart; segkit itself never overwrites a run
        session.log(f"removing the previous {run}")
        shutil.rmtree(run)
    session.run("segkit", "prepare-data", "synthetic", "--root", "data")
    session.run("segkit", "train", "recipes/quickstart.toml", "--work-dir", run, *session.posargs)
    session.run("segkit", "eval", run)
    session.run("segkit", "infer", run, "data/synthetic/images/val", "--out", f"{run}/predictions")
    session.run("segkit", "export", run, "--format", "onnx")


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The default test suite (CPU, under 15 minutes on 2 cores)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", "-n", "2", *session.posargs)


@nox.session(python=PY)
def slow(session: nox.Session) -> None:
    """Tests marked slow (full-size models, long training runs)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", "-m", "slow", *session.posargs)


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Benchmarks; each writes JSON under benchmarks/results/."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "segkit", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PY)
def parity(session: nox.Session) -> None:
    """Parity with SSSegmentation 1.7.0: same weights -> same logits (parity/run.py; docs/parity.{json,md}).

    Not a default session, and segkit never depends on SSSegmentation. `pip install sssegmentation==1.7.0` works but
    installs no dependencies (the sdist's setup.py reads a requirements.txt the sdist does not ship) and has no
    `ssseg/configs`. So segkit is installed first (torch, torchvision, timm, numpy, opencv), then sssegmentation 1.7.0
    and the modules `import ssseg.modules` needs besides (pandas, dill; fvcore for MaskFormer and Mask2Former); the
    configs are read from a checkout:

        git clone https://github.com/SegmentationBLWX/sssegmentation && git -C sssegmentation checkout 6d0238f5
        nox -s parity -- --ssseg-src sssegmentation [--segmentor FCN] [--only 'recipes/fcn/*'] [--no-backbones]
    """
    session.install("-e", ".")
    session.install("sssegmentation==1.7.0", "pandas", "dill", "fvcore")  # fvcore: MaskFormer/Mask2Former weight init
    session.run("python", "parity/run.py", *session.posargs)
    src = next((a.split("=", 1)[1] for a in session.posargs if a.startswith("--ssseg-src=")), None)
    if src is None and "--ssseg-src" in session.posargs:
        src = session.posargs[session.posargs.index("--ssseg-src") + 1]
    src = src or os.environ.get("SSSEG_SRC")
    if src:  # losses and samplers against SSSegmentation's own functions (tests marked ssseg)
        session.install("pytest")
        session.run("pytest", "-q", "-m", "ssseg", "-p", "no:cacheprovider", env={"SSSEG_SRC": str(Path(src).resolve())})


@nox.session(python=PY)
def promptable_parity(session: nox.Session) -> None:
    """SAM-family parity with the official packages (tests marked `official`; segkit never depends on them):
    segment-anything, segment-anything-hq, sam2, and SSSegmentation 1.7.0 for EdgeSAM (not on the registry).

    sam2 builds its optional CUDA extension unless SAM2_BUILD_CUDA=0; it is installed without build isolation so
    it sees the torch already installed.
    """
    session.install("-e", ".[coco]", "pytest")
    session.install("segment-anything==1.0", "segment-anything-hq==0.3")
    session.install("sssegmentation==1.7.0", "pandas", "dill")  # EdgeSAM's reference (not on the registry)
    session.install("--no-build-isolation", "sam2==1.1.0", env={"SAM2_BUILD_CUDA": "0", "SAM2_BUILD_ALLOW_ERRORS": "1"})
    session.run("pytest", "-q", "-m", "official", "-p", "no:cacheprovider", "tests/promptable", *session.posargs)
