"""CSV tables of an evaluation: the confusion matrix and the per-class metrics (``csv`` module, atomic writes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..engine.checkpoint import atomic_write_bytes

PER_CLASS_COLUMNS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


def _write_rows(path: Path, rows: list[list]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write_bytes(Path(path), lambda fh: fh.write(buffer.getvalue().encode()))
    return Path(path)


def write_confusion_csv(path: str | Path, matrix: np.ndarray, classnames: Sequence[str]) -> Path:
    """Rows: ground truth, columns: prediction; the first row and column name the classes."""
    matrix = np.asarray(matrix)
    header = ["ground_truth \\ predicted", *classnames]
    rows = [header] + [[classnames[i], *(int(v) for v in matrix[i])] for i in range(matrix.shape[0])]
    return _write_rows(Path(path), rows)


def write_per_class_csv(path: str | Path, metrics: Mapping, matrix: np.ndarray | None = None) -> Path:
    """One row per class: its metrics (empty where undefined, e.g. a class absent from the split) and, with the
    matrix, its ground-truth and predicted pixel counts."""
    names = list(metrics["IoU"])
    columns = [c for c in PER_CLASS_COLUMNS if isinstance(metrics.get(c), Mapping)]
    header = ["class", *columns] + (["gt_pixels", "pred_pixels"] if matrix is not None else [])
    rows: list[list] = [header]
    for i, name in enumerate(names):
        row: list = [name] + ["" if metrics[c].get(name) is None else f"{metrics[c][name]:.6f}" for c in columns]
        if matrix is not None:
            row += [int(np.asarray(matrix)[i].sum()), int(np.asarray(matrix)[:, i].sum())]
        rows.append(row)
    return _write_rows(Path(path), rows)
