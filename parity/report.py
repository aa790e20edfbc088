"""``docs/parity.md``: the parity results as tables."""

from __future__ import annotations

from .compare import TOLERANCE


def _num(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def _diff(value) -> str:
    return f"{value:.1e}" if isinstance(value, float) else "–"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


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
