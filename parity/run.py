"""Parity with SSSegmentation 1.7.0: same weights -> same numbers.

For every recipe that mirrors an SSSegmentation config (``recipes/<dir>/<name>.toml`` <-> ``ssseg/configs/<dir>/
<name>.py``, or a recipe whose header names the config), and for every distinct backbone table SSSeg's configs use:

1. build SSSegmentation's model (TEST mode, ``pretrained=False``) and segkit's (``pretrained=False``);
2. count parameters on both sides;
3. randomise SSSeg's weights and BatchNorm running statistics, carry them into segkit's model through
   :func:`segkit.models.ssseg_checkpoint.convert_ssseg_state_dict` (the mapping ``segkit eval --checkpoint`` uses);
4. run both in float64, eval mode, on one random image and report ``max|a - b| / max|a|`` over the logits
   (SSSeg's ``seg_logits`` vs segkit's ``out``, both at head resolution) or over every backbone output.

Results are merged into ``docs/parity.json`` (keyed by recipe path, plus a ``backbones`` section) and written as a
table to ``docs/parity.md`` after every row (so an interrupted run keeps what it did). Rows run one at a time in a
worker subprocess that imports torch, segkit and SSSeg once and serves ``--rows-per-worker`` rows (default 40)
before a fresh one starts; a row that crashes the worker or runs past ``--timeout`` kills it, and a row that errors
is run again alone in a fresh process (``--rows-per-worker 1``: one process per row, as before), so a crash, a
large model or state left by earlier rows cannot change another row's result. Run through ``nox -s parity`` (which installs ``sssegmentation==1.7.0``); SSSeg's configs are read
from a checkout given by ``--ssseg-src`` or ``$SSSEG_SRC``.

    nox -s parity -- --ssseg-src ~/sssegmentation                       # everything
    nox -s parity -- --ssseg-src ~/sssegmentation --segmentor FCN --no-backbones     # FCN-family recipes
    nox -s parity -- --ssseg-src ~/sssegmentation --only 'recipes/fcn/*' --no-backbones
    python parity/run.py --only 'ERFNet*' --no-recipes                  # inside the parity environment
    python parity/run.py --ssseg-src ~/sssegmentation --skip-ok         # finish an interrupted run
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from parity import compare, ssseg_side  # noqa: E402
from parity.rows import BackboneRow, backbone_rows, recipe_rows  # noqa: E402

SIZE = (64, 64)
SIZE_OVERRIDES: dict[str, tuple[int, int]] = {"BEiT:*": (640, 640), "recipes/beit/*": (640, 640),
                                               "MAE:*": (512, 512), "recipes/mae/*": (512, 512),
                                               "recipes/lrasppnet/*": (640, 1024)}
"""Rows (fnmatch patterns) that need another input than :data:`SIZE`: SSSeg's BEiT attention (and MAE's, built on
it) has relative position tables for exactly its ``img_size`` (BEiT 640, SSSeg's MAE config 512) and does not resize
them; LR-ASPP's image pooling is a fixed 49x49 average pool with stride (16, 20) over the stride-8 features (at
least 392x392 pixels; 640x1024 gives it a 2x4 output)."""

_V2_ARCH = ("SSSeg 1.7.0's MobileViTV2 takes its architecture from `arch` (default mobilevitv2_050) and never from "
            "structure_type, so this table builds the 0.5-width network (and with pretrained=True its strict load of "
            "the mobilevitv2_100 weights fails); segkit builds mobilevitv2_100 from the structure type")
KNOWN_DIFFERENCES: dict[str, dict] = {
    "MobileViTV2:mobilevitv2_100": {"why": _V2_ARCH, "ssseg": {"arch": "mobilevitv2_100"}},
    "recipes/mobilevitv2/deeplabv3_mobilevitv2100_*": {"why": _V2_ARCH,
                                                        "ssseg": {"backbone": {"arch": "mobilevitv2_100"}}},
}
"""Rows where SSSeg 1.7.0 does not compute what its config says (an SSSeg bug segkit does not copy): the row is
compared as is and once more with ``ssseg`` merged into SSSeg's table, and both results are reported."""


# ----------------------------------------------------------------------------------------------- workers


def _status(row: dict) -> str:
    problems = []
    if row.get("params_ssseg") != row.get("params_segkit"):
        problems.append("params differ")
    diff = row.get("max_rel_diff")
    if diff is None or not diff <= compare.TOLERANCE:
        problems.append("outputs differ" if diff is not None else "not compared")
    return "; ".join(problems) or "ok"


def _finish(row: dict) -> dict:
    if row.get("max_rel_diff") is not None and not math.isfinite(row["max_rel_diff"]):
        row["max_rel_diff"] = None
    row.setdefault("status", _status(row))
    return row


def _segkit_model(recipe: str):
    import segkit

    path = REPO / recipe
    if hasattr(segkit, "build_model"):
        return segkit.build_model(path, pretrained=False)
    from segkit.models.build import build_segmentor

    return build_segmentor(segkit.load_recipe(path), pretrained=False)


def work_recipe(recipe: str, config: str, size: tuple[int, int], ssseg_overrides: dict | None = None) -> dict:
    from segkit import SEGMENTORS

    row: dict = {"config": config}
    cfg = _merged(ssseg_side.load_config(config), ssseg_overrides or {})
    if cfg["type"] in ssseg_side.NEEDS_MMCV:
        return {**row, "params_ssseg": None, "params_segkit": None, "max_rel_diff": None, "status": "needs mmcv"}
    if cfg["type"] not in SEGMENTORS:
        return {**row, "params_ssseg": None, "params_segkit": None, "max_rel_diff": None,
                "status": f"no segkit {cfg['type']} segmentor yet"}
    try:
        ssseg_model = ssseg_side.build_segmentor(cfg)
    except Exception as exc:
        return {**row, "status": "error (SSSeg build)", "note": _one_line(exc)}
    try:
        segkit_model = _segkit_model(recipe)
    except Exception as exc:
        return {**row, "params_ssseg": compare.count_params(ssseg_model), "status": "error (segkit build)",
                "note": _one_line(exc)}
    return _pair(row, ssseg_model, segkit_model, compare.carry_segmentor, ssseg_side.segmentor_logits,
                 lambda m, x: m(x)["out"], size)


def work_backbone(row_info: BackboneRow, size: tuple[int, int], ssseg_overrides: dict | None = None) -> dict:
    from segkit import BACKBONES

    row: dict = {"config": row_info.config, "used_by": row_info.used_by,
                 "table": ssseg_side.no_pretrained(row_info.table)}
    try:
        ssseg_model = ssseg_side.build_backbone(_merged(row_info.table, ssseg_overrides or {}))
    except Exception as exc:
        return {**row, "status": "error (SSSeg build)", "note": _one_line(exc)}
    table = ssseg_side.no_pretrained(row_info.table)
    table.pop("selected_indices", None)
    try:
        segkit_model = BACKBONES.build(table, "backbone")
    except Exception as exc:
        return {**row, "params_ssseg": compare.count_params(ssseg_model), "status": "error (segkit build)",
                "note": _one_line(exc)}
    return _pair(row, ssseg_model, segkit_model, compare.carry_backbone, lambda m, x: m(x), lambda m, x: m(x), size)


def _pair(row, ssseg_model, segkit_model, carry, forward_ssseg, forward_segkit, size) -> dict:
    from segkit.errors import CheckpointError

    row.update(params_ssseg=compare.count_params(ssseg_model), params_segkit=compare.count_params(segkit_model))
    try:
        row.update(compare.run_pair(ssseg_model, segkit_model, carry, forward_ssseg, forward_segkit, size))
    except CheckpointError as exc:
        same = row["params_ssseg"] == row["params_segkit"]
        row.update(max_rel_diff=None, status="weights do not map" if same else "params differ", note=str(exc))
    except Exception as exc:
        row.update(max_rel_diff=None, status="error (forward)", note=_one_line(exc))
    row["input"] = [1, 3, *size]
    return _finish(row)


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _known(name: str) -> dict | None:
    return next((v for k, v in KNOWN_DIFFERENCES.items() if fnmatch.fnmatchcase(name, k)), None)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " | ")
    return text[:600]


# ----------------------------------------------------------------------------------------------- driver


def _size_for(name: str, size: tuple[int, int]) -> tuple[int, int]:
    for pattern, override in SIZE_OVERRIDES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return override
    return size


class Worker:
    """A ``run.py --worker`` subprocess that imports torch, segkit and SSSeg once and then runs rows one at a time:
    a job is one JSON line on its stdin, its row one ``PARITY-ROW`` line on its stdout. A row that runs past
    ``timeout`` kills the process, as does a crash; the next row starts a fresh one, and so does every
    ``max_rows``-th row (``max_rows=1`` is one process per row)."""

    def __init__(self, args: argparse.Namespace, max_rows: int) -> None:
        self.args, self.max_rows = args, max_rows
        self.proc: subprocess.Popen | None = None
        self.rows = 0

    def _start(self) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--ssseg-src", str(self.args.ssseg_src),
               "--size", str(self.args.size[0]), str(self.args.size[1])]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, bufsize=1, env=env, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        self.rows = 0
        if self._next_line("PARITY-READY", self.args.timeout) is None:
            raise RuntimeError("the parity worker did not start: " + self._stderr_tail())

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _next_line(self, prefix: str, timeout: float) -> str | None:
        """The next stdout line starting with ``prefix`` (other lines are SSSeg's prints); ``None`` when the
        process ends first; raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                return None
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().strip().splitlines() if line.strip()]
        return (lines or ["no output"])[-1][:600]

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            self.stderr.close()
            self.proc = None

    def run(self, job: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None or self.rows >= self.max_rows:
            self.stop()
            self._start()
        self.rows += 1
        self.stderr.seek(0)
        self.stderr.truncate()
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self._next_line("PARITY-ROW ", self.args.timeout)
        except TimeoutError:
            self.stop()
            return {"status": f"error (over {self.args.timeout:.0f} s)"}
        except BrokenPipeError:
            line = None
        if line is None:
            self.proc.wait()
            row = {"status": f"error (worker exit {self.proc.returncode})", "note": self._stderr_tail()}
            self.stop()
            return row
        return json.loads(line)


def _serve(args: argparse.Namespace) -> None:
    """The worker's loop: one job per stdin line, one ``PARITY-ROW`` line per job."""
    import gc

    print("PARITY-READY", flush=True)
    for text in sys.stdin:
        if not text.strip():
            continue
        try:
            row = _worker(json.loads(text), args)
        except Exception as exc:
            traceback.print_exc()
            row = {"status": "error", "note": _one_line(exc)}
        print("PARITY-ROW " + json.dumps(row, default=str), flush=True)
        gc.collect()


def _worker(job: dict, args: argparse.Namespace) -> dict:
    """One row: ``job`` is ``{"kind": "recipe", "recipe", "config"}`` or ``{"kind": "backbone", "name", "config",
    "used_by", "table"}``."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    name = job.get("recipe") or job["name"]
    size = _size_for(name, tuple(args.size))
    if job["kind"] == "recipe":
        work = lambda overrides=None: work_recipe(job["recipe"], job["config"], size, overrides)  # noqa: E731
    else:
        info = BackboneRow(job["name"], job["config"], job["used_by"], job["table"])
        work = lambda overrides=None: work_backbone(info, size, overrides)  # noqa: E731
    row = work()
    backbone_type = (job.get("table") or ssseg_side.load_config(job["config"]).get("backbone", {})).get("type")
    if backbone_type in ssseg_side.BUILD_PATCHES:
        row["status"] = f"{row['status']} (SSSeg 1.7.0 build bug patched, see note)"
        row["note"] = ssseg_side.BUILD_PATCHES[backbone_type] + (f". {_sentence(row['note'])}" if row.get("note")
                                                                  else "")
    segmentor = ssseg_side.load_config(job["config"])["type"] if job["kind"] == "recipe" else None
    if segmentor in ssseg_side.FLOAT64_PATCHES:
        row["status"] = f"{row['status']} (SSSeg 1.7.0 float64 cast patched, see note)"
        row["note"] = ssseg_side.FLOAT64_PATCHES[segmentor] + (f". {_sentence(row['note'])}" if row.get("note")
                                                                else "")
    if segmentor in ssseg_side.SHIMMED:
        row["status"] = f"{row['status']} (segkit's op on SSSeg's side, see note)"
        shim = ssseg_side.SHIMMED[segmentor]
        row["note"] = f"{row['note']}. {_sentence(shim)}" if row.get("note") else shim
    known = _known(name)
    if known is not None:
        variant = work(known["ssseg"])
        given = ", ".join(f"{k}={v}" for k, v in _flat(known["ssseg"]))
        row["known_difference"] = known["why"]
        row["with_ssseg_fix"] = {"ssseg": known["ssseg"], **{k: variant.get(k) for k in (
            "params_ssseg", "params_segkit", "max_rel_diff", "status")}}
        row["status"] = f"{row['status']} (SSSeg 1.7.0 bug, see note; {variant.get('status')} with SSSeg {given})"
        row["note"] = known["why"] + (f". {_sentence(row['note'])}" if row.get("note") else "")
    return row


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _flat(table: dict, prefix: str = ""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ssseg-src", default=None, help="an SSSegmentation checkout at 6d0238f5 (default: "
                        "$SSSEG_SRC); the sssegmentation sdist does not contain ssseg/configs")
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="rows whose recipe path or backbone name matches (repeatable)")
    parser.add_argument("--segmentor", action="append", default=[], metavar="TYPE",
                        help="recipe rows whose SSSeg config builds this segmentor (repeatable), e.g. FCN")
    parser.add_argument("--no-recipes", action="store_true", help="skip the recipe rows")
    parser.add_argument("--no-backbones", action="store_true", help="skip the backbone rows")
    parser.add_argument("--size", type=int, nargs=2, default=list(SIZE), metavar=("H", "W"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    parser.add_argument("--rows-per-worker", type=int, default=40, metavar="N",
                        help="rows one worker process runs before a fresh one starts (1: one process per row); a "
                        "row that errors is run again in a fresh process")
    parser.add_argument("--skip-ok", action="store_true",
                        help="leave out the rows that --json already has as ok (to finish an interrupted run)")
    parser.add_argument("--in-process", action="store_true", help="run the rows in this process (debugging)")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "parity.json")
    parser.add_argument("--md", type=Path, default=REPO / "docs" / "parity.md")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--report", action="store_true", help="only rewrite --md from --json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one row, its job on stdin
    args = parser.parse_args(argv)
    try:
        args.ssseg_src = ssseg_side.find_src(args.ssseg_src)
        ssseg_side.import_ssseg(args.ssseg_src)
    except ssseg_side.SSSegUnavailable as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return 2

    if args.report:
        results = _load(args.json)
        for row in (v for k, v in results.items() if k != "backbones" and "segmentor" not in v):
            row["segmentor"] = ssseg_side.load_config(row["config"])["type"]
        _save(results, args)
        return 0
    if args.worker:
        _serve(args)
        return 0

    configs = ssseg_side.config_names(args.ssseg_src)
    selected = lambda name: not args.only or any(fnmatch.fnmatchcase(name, p) for p in args.only)  # noqa: E731
    recipes = [] if args.no_recipes else [r for r in recipe_rows(REPO, configs) if selected(r.recipe)]
    for row in recipes:
        if row.config is None:
            print(f"  {row.recipe}: no SSSegmentation config, skipped")
    recipes = [r for r in recipes if r.config is not None]
    types = {r.recipe: ssseg_side.load_config(r.config)["type"] for r in recipes}
    if args.segmentor:
        recipes = [r for r in recipes if types[r.recipe] in args.segmentor]
    backbones = [] if args.no_backbones else [b for b in backbone_rows(configs) if selected(b.name)]
    if args.list:
        for r in recipes:
            print(f"recipe   {r.recipe} <- {r.config} ({types[r.recipe]})")
        for b in backbones:
            print(f"backbone {b.name} <- {b.config} (+{b.used_by - 1} configs)")
        return 0

    results = _load(args.json)
    jobs = [{"kind": "recipe", "recipe": r.recipe, "config": r.config} for r in recipes]
    jobs += [{"kind": "backbone", "name": b.name, "config": b.config, "used_by": b.used_by, "table": b.table}
             for b in backbones]
    if args.skip_ok:
        from parity.report import is_ok

        done = {**{k: v for k, v in results.items() if k != "backbones"}, **results.get("backbones", {})}
        jobs = [j for j in jobs if not is_ok(done.get(j.get("recipe") or j["name"], {}))]
    from segkit import SEGMENTORS

    worker, isolated = Worker(args, args.rows_per_worker), Worker(args, 1)
    try:
        _run_jobs(jobs, types, results, worker, isolated, args, SEGMENTORS)
    finally:
        worker.stop()
        isolated.stop()
    _save(results, args)
    return 0


def _run_jobs(jobs, types, results, worker, isolated, args, SEGMENTORS) -> None:  # noqa: N803
    for index, job in enumerate(jobs, 1):
        kind, name = job["kind"], job.get("recipe") or job["name"]
        start = time.monotonic()
        segmentor = types.get(name)
        if kind == "recipe" and (segmentor in ssseg_side.NEEDS_MMCV or segmentor not in SEGMENTORS):
            status = "needs mmcv" if segmentor in ssseg_side.NEEDS_MMCV else f"no segkit {segmentor} segmentor yet"
            row = {"config": job["config"], "params_ssseg": None, "params_segkit": None, "max_rel_diff": None,
                   "status": status}
        elif args.in_process:
            try:
                row = _worker(json.loads(json.dumps(job)), args)
            except Exception as exc:
                row = {"status": "error", "note": _one_line(exc)}
        else:
            row = worker.run(job)
            if row.get("status", "").startswith("error") and args.rows_per_worker > 1:
                # a row that fails after others in the same process is run again alone, so that state left by
                # earlier rows (or their memory) cannot be the cause; the fresh process's answer is the row's
                print(f"  {name}: {row.get('status')} in the shared worker; again in a fresh process", flush=True)
                worker.stop()
                row = isolated.run(job)
                isolated.stop()
        row["seconds"] = round(time.monotonic() - start, 1)
        if kind == "recipe":
            row["segmentor"] = segmentor
            results[name] = row
        else:
            results.setdefault("backbones", {})[name] = row
        diff = row.get("max_rel_diff")
        print(f"[{index}/{len(jobs)}] {name}: {row.get('status')}  params {row.get('params_ssseg')} / "
              f"{row.get('params_segkit')}  max rel diff {diff if diff is None else f'{diff:.2e}'}"
              + (f"  ({row['note'][:300]})" if row.get("note") else ""), flush=True)
        _save(results, args)


def _load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def _save(results: dict, args: argparse.Namespace) -> None:
    from parity.report import markdown

    recipes = {k: results[k] for k in sorted(results) if k != "backbones"}
    ordered = {**recipes, "backbones": dict(sorted(results.get("backbones", {}).items()))}
    _write(args.json, json.dumps(ordered, indent=1) + "\n")
    _write(args.md, markdown(ordered, tuple(args.size)))


def _write(path: Path, text: str) -> None:
    """Write ``path`` atomically (a reader never sees half a table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
