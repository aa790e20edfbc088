"""Write ``docs/model_zoo.md``: every recipe under ``recipes/`` (``_base`` excepted) with what it builds and reports.

    python scripts/model_zoo.py [--check]

Per recipe: segmentor type, backbone, dataset, the parameter count of the model segkit builds (on the meta device,
no weights; "not yet implemented" while the segmentor type is not registered), SSSegmentation's reported result (the
``# Reported:`` line of the recipe header, written by ``scripts/ssseg_recipes.py``), the parity check's result
(``docs/parity.json``, written by the parity script, keyed by recipe path: ``params_ssseg``, ``params_segkit``,
``max_rel_diff``) and whether segkit has trained it (``docs/trained.json``, keyed the same way; "no" otherwise).
``--check`` writes nothing and exits 1 if ``docs/model_zoo.md`` would change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
OUT = REPO / "docs/model_zoo.md"
PARITY = REPO / "docs/parity.json"
TRAINED = REPO / "docs/trained.json"
NOT_IMPLEMENTED = "not yet implemented"


def recipe_paths() -> list[Path]:
    return sorted(p for p in RECIPES.rglob("*.toml") if "_base" not in p.relative_to(RECIPES).parts)


def key_of(path: Path) -> str:
    return path.relative_to(REPO).as_posix()  # "recipes/fcn/fcn_resnet50os8_ade20k.toml", as parity.json


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def reported(path: Path) -> str:
    """The ``# Reported:`` line of the header; segkit's own recipes name their result in free text, if at all."""
    header = path.read_text().split("\n\n", 1)[0]
    match = re.search(r"^# Reported: (.+)$", header, re.M)
    if match:
        return match.group(1)
    match = re.search(r"reported ([^,)]*\d+(?:\.\d+)?%?)", header)
    return match.group(1) if match else "–"


def describe_backbone(table: dict) -> str:
    name = str(table.get("type", "?"))
    detail = table.get("structure_type") or table.get("arch") or table.get("arch_type")
    if isinstance(table.get("backbone_cfg"), dict) and table["backbone_cfg"].get("structure_type"):
        detail = f"{detail}, {table['backbone_cfg']['structure_type']}" if detail else table["backbone_cfg"]["structure_type"]
    if "outstride" in table:
        detail = f"{detail}, OS{table['outstride']}" if detail else f"OS{table['outstride']}"
    return f"{name} ({detail})" if detail else name


def describe_dataset(table: dict) -> str:
    kind = str(table.get("type", "?"))
    if kind == "MultipleDataset":
        train = ", ".join(str(p.get("type", k)) for k, p in (table.get("train") or {}).items())
        test = ", ".join(str(p.get("type", k)) for k, p in (table.get("test") or {}).items())
        return f"MultipleDataset ({train} / {test})"
    train = (table.get("train") or {}).get("set", table.get("set", "?"))
    test = (table.get("test") or {}).get("set", table.get("set", "?"))
    return f"{kind.removesuffix('Dataset')} ({train}/{test})"


def parameter_count(path: Path, merged: dict) -> str:
    """Parameters of the model segkit builds from the recipe, on the meta device."""
    import torch

    from segkit import SEGMENTORS
    from segkit.errors import RecipeError
    from segkit.models.build import build_segmentor
    from segkit.models.pretrained import skip_loading
    from segkit.recipe import load_recipe

    if merged.get("type") not in SEGMENTORS:
        return NOT_IMPLEMENTED
    try:
        recipe = load_recipe(path)
        with torch.device("meta"), skip_loading():
            model = build_segmentor(recipe, pretrained=False)
    except RecipeError as exc:
        return "error: " + str(exc).replace(f"{REPO}/", "")
    return f"{sum(p.numel() for p in model.parameters()):,}"


def parity_cell(row: Any) -> str:
    if not isinstance(row, dict):
        return "–"
    ssseg, segkit, diff = row.get("params_ssseg"), row.get("params_segkit"), row.get("max_rel_diff")
    parts = []
    if ssseg is not None or segkit is not None:
        same = ssseg is not None and ssseg == segkit
        parts.append("params equal" if same else f"params {_num(segkit)} vs SSSeg {_num(ssseg)}")
    if diff is not None:
        parts.append(f"max rel diff {diff:.1e}")
    if row.get("status") and row.get("status") != "ok":
        parts.append(str(row["status"]).replace(", see note", ", see docs/parity.md"))
    return "; ".join(parts) or "–"


def parity_ok(row: Any) -> bool:
    """``ok``, possibly with a remark in parentheses (see docs/parity.md)."""
    return isinstance(row, dict) and str(row.get("status", "")).split(" (", 1)[0] == "ok"


def trained_cell(row: Any) -> str:
    if row is None or row is False:
        return "no"
    if row is True:
        return "yes"
    if isinstance(row, dict):
        details = ", ".join(f"{k} {v}" for k, v in row.items() if not isinstance(v, (dict, list)))
        return f"yes ({details})" if details else "yes"
    return str(row)


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("–" if value is None else str(value))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    from segkit.recipe.load import resolve_raw

    parity, trained = read_json(PARITY), read_json(TRAINED)
    groups: dict[str, list[str]] = defaultdict(list)
    counts = {"recipes": 0, "implemented": 0, "errors": 0, "parity": 0, "parity_ok": 0, "trained": 0}
    for path in recipe_paths():
        merged, _ = resolve_raw(path)
        key = key_of(path)
        params = parameter_count(path, merged)
        counts["recipes"] += 1
        counts["implemented"] += params[:1].isdigit()
        counts["errors"] += params.startswith("error: ")
        counts["parity"] += key in parity
        counts["parity_ok"] += parity_ok(parity.get(key))
        counts["trained"] += trained_cell(trained.get(key)) != "no"
        row = (f"| [`{path.relative_to(RECIPES).as_posix()}`](../{key}) | {_cell(str(merged.get('type', '?')))} | "
               f"{_cell(describe_backbone(merged.get('backbone') or {}))} | "
               f"{_cell(describe_dataset(merged.get('dataset') or {}))} | {_cell(params)} | {_cell(reported(path))} | "
               f"{_cell(parity_cell(parity.get(key)))} | {_cell(trained_cell(trained.get(key)))} |")
        group = path.parent.relative_to(RECIPES).as_posix()
        groups["segkit" if group == "." else group].append(row)
    lines = [
        "# Model zoo",
        "",
        "Generated by `scripts/model_zoo.py` from the recipes; do not edit by hand. "
        "`recipes/<dir>/<config>.toml` are SSSegmentation 1.7.0's configs (`scripts/ssseg_recipes.py`); each "
        "recipe's header has the command that trains it.",
        "",
        "- **Params**: parameters of the model segkit builds from the recipe (meta device, no weights); "
        f"*{NOT_IMPLEMENTED}* while segkit has no segmentor of that type.",
        "- **SSSeg reported**: SSSegmentation's published result (its `docs/modelzoo/*/README.md`: metric, dataset, "
        "train/eval split).",
        "- **Parity**: `docs/parity.json` (SSSegmentation's model vs segkit's: parameter counts, largest relative "
        "output difference), when the parity script has run.",
        "- **Trained**: `docs/trained.json`, when segkit has trained the recipe itself.",
        "",
        f"{counts['recipes']} recipes; {counts['implemented']} build in segkit today, {counts['errors']} of a "
        f"registered segmentor type fail to validate (the error is in the Params column); parity checked for "
        f"{counts['parity']} ({counts['parity_ok']} ok: same parameter count, logits within the tolerance); trained by "
        f"segkit: {counts['trained']}.",
    ]
    header = ("| Recipe | Segmentor | Backbone | Dataset | Params | SSSeg reported | Parity | Trained |\n"
              "|---|---|---|---|---:|---|---|---|")
    for group in sorted(groups, key=lambda g: (g != "segkit", g)):
        title = "segkit's own recipes" if group == "segkit" else f"`{group}`"
        lines += ["", f"## {title}", "", header, *groups[group]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if docs/model_zoo.md would change")
    args = parser.parse_args(argv)
    text = render()
    current = OUT.read_text() if OUT.is_file() else None
    if args.check:
        if current != text:
            print(f"would change: {OUT.relative_to(REPO)}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        OUT.write_text(text)
    print(f"{OUT.relative_to(REPO)}: {text.count(chr(10) + '| [')} recipes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
