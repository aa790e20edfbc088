"""Curves and confusion matrices drawn with matplotlib (the optional extra ``plots``: ``pip install
"segkit[plots]"``).

matplotlib is used through its object API (``Figure`` + the Agg canvas): no pyplot state, no display needed.
Curves are read from a run's ``metrics.jsonl`` (the source of truth), so they can be redrawn at any time, and
several runs can be compared (``segkit plot RUN [RUN ...]``).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..engine.checkpoint import atomic_write_bytes
from ..errors import SegkitError

INSTALL_HINT = 'plots need matplotlib: pip install "segkit[plots]"'


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    if not have_matplotlib():
        raise SegkitError(INSTALL_HINT)


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train rows, eval rows)`` of ``run_dir/metrics.jsonl``; a missing file or a torn last line is tolerated
    (a run still writing), any other unreadable line is an error naming the file and line."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SegkitError(f"{run_dir}: no metrics.jsonl (is this a run dir? `segkit train` writes one)")
    train, evals = [], []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise SegkitError(f"{path}:{number}: not a JSON object") from None
        (evals if row.get("kind") == "eval" else train).append(row)
    return train, evals


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 4.0)):
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def save_figure(figure, path: Path) -> Path:
    """Render with the Agg canvas and write the PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(Path(path), lambda fh: fh.write(buffer.getvalue()))
    return Path(path)


def _marker(xs: list) -> str | None:
    """Dots where a curve has few points (a single logged step draws no line)."""
    return "o" if len(xs) < 30 else None


def _series(rows: list[dict], key: str, x: str = "iter") -> tuple[list[float], list[float]]:
    points = [(r[x], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and r.get(x) is not None]
    points = [(a, b) for a, b in points if math.isfinite(b)]
    return [p[0] for p in points], [p[1] for p in points]


def loss_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k.startswith("loss") and k not in keys]
    return sorted(keys, key=lambda k: (k != "loss_total", k))


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """``plots/loss.png`` (every loss term), ``plots/lr.png`` and ``plots/miou.png`` (the mean metrics recorded at
    each evaluation: mIoU, mAcc, aAcc, mDice, mFscore as ``inference.evaluate.metric_list`` selects) of one run;
    returns the files written."""
    require_matplotlib()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "plots"
    train, evals = read_metrics(run_dir)
    written = []
    figure, axes = _figure()
    ax = axes[0][0]
    for key in loss_keys(train):
        xs, ys = _series(train, key)
        ax.plot(xs, ys, label=key, linewidth=2.0 if key == "loss_total" else 1.2, marker=_marker(xs), markersize=3)
    _decorate(ax, "training losses", "iteration", "loss", legend=bool(train))
    written.append(save_figure(figure, out_dir / "loss.png"))

    figure, axes = _figure()
    ax = axes[0][0]
    xs, ys = _series(train, "lr")
    ax.plot(xs, ys, color="tab:purple", marker=_marker(xs), markersize=3)
    _decorate(ax, "learning rate", "iteration", "lr", legend=False)
    written.append(save_figure(figure, out_dir / "lr.png"))

    figure, axes = _figure()
    ax = axes[0][0]
    drawn = 0
    for key in ("mIoU", "mAcc", "aAcc", "mDice", "mFscore"):  # those metric_list kept in metrics.jsonl
        xs, ys = _series(evals, key, x="epoch")
        if xs:
            ax.plot(xs, ys, marker="o", label=key)
            drawn += 1
    ax.set_ylim(0, 1)
    _decorate(ax, "evaluation", "epoch", "score", legend=drawn > 0)
    written.append(save_figure(figure, out_dir / "miou.png"))
    return written


def plot_compare(run_dirs: Sequence[str | Path], out_path: str | Path) -> Path:
    """One picture comparing runs: total loss and lr by iteration, mIoU by epoch, throughput by iteration."""
    require_matplotlib()
    if not run_dirs:
        raise SegkitError("give at least one run dir to plot")
    figure, axes = _figure(2, 2, size=(11, 7))
    names = _short_names([Path(r) for r in run_dirs])
    for run_dir, name in zip(run_dirs, names, strict=True):
        train, evals = read_metrics(run_dir)
        for ax, series in ((axes[0][0], _series(train, "loss_total")), (axes[1][0], _series(train, "lr")),
                           (axes[1][1], _series(train, "imgs_per_s"))):
            ax.plot(*series, label=name, marker=_marker(series[0]), markersize=3)
        axes[0][1].plot(*_series(evals, "mIoU", x="epoch"), marker="o", label=name)
    _decorate(axes[0][0], "total loss", "iteration", "loss")
    _decorate(axes[0][1], "mIoU", "epoch", "mIoU")
    _decorate(axes[1][0], "learning rate", "iteration", "lr")
    _decorate(axes[1][1], "throughput", "iteration", "img/s")
    return save_figure(figure, Path(out_path))


def _short_names(paths: list[Path]) -> list[str]:
    """Run names: the folder name, with its parent when two runs share a folder name."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    return names


def _decorate(ax, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def plot_confusion(matrix: np.ndarray, classnames: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Raw counts and row-normalised (recall per ground-truth class) side by side, class names on both axes;
    cells are annotated when there are at most 25 classes."""
    require_matplotlib()
    matrix = np.asarray(matrix, dtype=np.float64)
    k = matrix.shape[0]
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = min(max(4.0, 0.45 * k + 2.5), 30.0)
    figure, axes = _figure(1, 2, size=(2 * side + 1.0, side))
    for ax, data, name, fmt in ((axes[0][0], matrix, "counts", "{:.0f}"),
                                (axes[0][1], normalised, "row-normalised (recall)", "{:.2f}")):
        shown = np.log10(data + 1) if name == "counts" else data
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=None if name == "counts" else 1.0)
        cbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("log10(count + 1)" if name == "counts" else "fraction of the row")
        ax.set_title(f"{title} {name}".strip())
        ax.set_xticks(range(k), labels=list(classnames), rotation=90 if k > 6 else 45, ha="center" if k > 6 else "right",
                      fontsize="small")
        ax.set_yticks(range(k), labels=list(classnames), fontsize="small")
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        if k <= 25:
            limit = shown.max() if shown.size else 0
            for i in range(k):
                for j in range(k):
                    dark = shown[i, j] > 0.6 * limit if limit else False
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize="x-small",
                            color="white" if dark else "black")
    return save_figure(figure, Path(path))
