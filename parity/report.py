"""``docs/parity.md``: the parity results as tables."""

from __future__ import annotations

from .compare import STD_ENTRIES, TOLERANCE


def _num(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def _diff(value) -> str:
    return f"{value:.1e}" if isinstance(value, float) else "–"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def is_ok(row: dict) -> bool:
    """The row matched: ``ok``, possibly with a remark in parentheses (a shim, a patched SSSeg build bug)."""
    return str(row.get("status", "")).split(" (", 1)[0] == "ok"


def summary(recipes: dict) -> list[str]:
    """One line per segmentor type: recipe rows, how many are ok, and the others."""
    by_type: dict[str, list[str]] = {}
    for path, row in recipes.items():
        by_type.setdefault(row.get("segmentor") or "?", []).append(path)
    lines = ["| segmentor | rows | ok | not ok |", "|---|---:|---:|---|"]
    for segmentor in sorted(by_type, key=str.lower):
        paths = by_type[segmentor]
        bad = [p for p in paths if not is_ok(recipes[p])]
        lines.append(f"| {segmentor} | {len(paths)} | {len(paths) - len(bad)} | "
                     f"{', '.join(f'`{p}`' for p in bad) or '–'} |")
    bad = sum(not is_ok(row) for row in recipes.values())
    lines.append(f"| **all** | **{len(recipes)}** | **{len(recipes) - bad}** | {bad} |")
    return lines


def _inputs(recipes: dict, size: tuple[int, int]) -> list[str]:
    """A bullet naming the rows that ran on another input than ``size`` (``SIZE_OVERRIDES`` in parity/run.py)."""
    other: dict[str, list[str]] = {}
    for path, row in recipes.items():
        shape = row.get("input")
        if shape and list(shape[2:]) != list(size):
            other.setdefault(f"{shape[2]}x{shape[3]}", []).append(f"`{path}`")
    if not other:
        return []
    return ["* **Other inputs** (BEiT and MAE have relative position tables for exactly their `img_size`; LR-ASPP "
            "pools with a fixed 49x49 window): " + "; ".join(f"{shape}: {', '.join(paths)}"
                                                             for shape, paths in other.items()) + "."]


def markdown(results: dict, size: tuple[int, int]) -> str:
    recipes = {k: v for k, v in results.items() if k != "backbones"}
    backbones = results.get("backbones", {})
    lines = [
        "# Parity with SSSegmentation 1.7.0",
        "",
        "Written by `nox -s parity` (`parity/run.py`); do not edit by hand. Each row builds SSSegmentation's model "
        "(`sssegmentation==1.7.0`, configs from commit 6d0238f5, TEST mode, `pretrained=False`) and segkit's, "
        "randomises SSSeg's weights and BatchNorm running statistics, carries them into segkit's model with "
        "`segkit.models.ssseg_checkpoint.convert_ssseg_state_dict` (the mapping `segkit eval RECIPE --checkpoint "
        "ssseg.pth` uses) and compares the outputs in float64, eval mode, on one random image "
        f"(1x3x{size[0]}x{size[1]} unless the row says otherwise): max relative difference = max|a - b| / max|a| "
        f"(SSSeg's `seg_logits` vs segkit's `out`, both at head resolution; every output for backbones). "
        f"`ok` = same parameter count and a difference of at most {TOLERANCE:g}.",
        "",
        "* **mmcv ops.** SSSeg 1.7.0 takes four ops from `mmcv.ops` (CCNet's `CrissCrossAttention`, PSANet's "
        "`PSAMask`, PointRend's `point_sample`, Mask2Former's multi-scale deformable attention core); without mmcv "
        "it cannot build or run those models. The parity run binds segkit's pure-PyTorch op (same signature, and "
        "for `CrissCrossAttention` the same parameters as mmcv's) to that name in SSSeg's module, so SSSeg's side "
        "of those rows runs segkit's op too: these rows (status `ok (segkit's op on SSSeg's side, see note)`) "
        "prove the wiring and the weights of everything around the op; the ops themselves are proven separately "
        "by segkit's loop-reference tests. Every other parameter and module on SSSeg's side is SSSeg's own.",
        "* **Randomised standard deviations.** Entries that SSSeg's model uses as a standard deviation are drawn "
        "from U[0.5, 1.5) instead of around their own scale (a negative std is an error): "
        + ", ".join(f"`{k}`" for k in STD_ENTRIES) + " (MCIBI++'s memory, column 1).",
        "* **SSSeg bugs.** A row marked `SSSeg 1.7.0 bug` is compared as SSSeg builds it and once more with the fix "
        "named in the status (`KNOWN_DIFFERENCES` in `parity/run.py`); `SSSeg 1.7.0 build bug patched` means "
        "SSSeg cannot build the model as shipped and the note says what the run patches (nothing that changes what "
        "the model computes); `SSSeg 1.7.0 float64 cast patched` means SSSeg's code casts to float32 where a "
        "float64 model then fails, and the run makes that cast 'at least float32' (Mask2Former's pixel decoder; "
        "the same computation in float32 and half precision).",
        *_inputs(recipes, size),
        "* **Large models.** From 150M parameters on, segkit's model takes SSSeg's float64 tensors themselves "
        "(`load_state_dict(assign=True)`, after SSSeg's forward) instead of a copy, to halve the memory "
        "(`shared_weights` in docs/parity.json).",
        "",
        "## Summary",
        "",
        *summary(recipes),
        "",
        "## Recipes",
        "",
        "| recipe | SSSeg config | params SSSeg | params segkit | max rel. diff | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for path, row in recipes.items():
        lines.append(f"| `{path}` | `{row.get('config', '')}` | {_num(row.get('params_ssseg'))} | "
                     f"{_num(row.get('params_segkit'))} | {_diff(row.get('max_rel_diff'))} | "
                     f"{_cell(row.get('status', ''))} |")
    lines += [
        "",
        "## Backbones",
        "",
        "Every distinct backbone table of SSSeg's configs (`pretrained`, `pretrained_model_path` and "
        "`selected_indices` left out), built from the same table on both sides.",
        "",
        "| backbone | first config (configs using it) | params SSSeg | params segkit | max rel. diff | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, row in backbones.items():
        lines.append(f"| `{name}` | `{row.get('config', '')}` ({row.get('used_by', '?')}) | "
                     f"{_num(row.get('params_ssseg'))} | {_num(row.get('params_segkit'))} | "
                     f"{_diff(row.get('max_rel_diff'))} | {_cell(row.get('status', ''))} |")
    notes: dict[str, list[str]] = {}
    for name, row in [*recipes.items(), *backbones.items()]:
        if row.get("note"):
            notes.setdefault(_short(row["note"]), []).append(name)
    if notes:
        lines += ["", "## Notes", ""]
        for note, names in notes.items():
            lines.append(f"* {', '.join(f'`{n}`' for n in names)}: {_cell(note)}")
    return "\n".join(lines) + "\n"


def _short(note: str, limit: int = 600) -> str:
    note = " ".join(note.split())
    return note if len(note) <= limit else note[: limit - 1] + "… (full text in docs/parity.json)"
