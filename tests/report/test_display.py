"""The display: at 80 columns the bar, M/N and ETA stay on screen; piped output has per-epoch lines and eval
progress; Ctrl-C says where it stopped and the exact command that continues (also in log.txt)."""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from rich.console import Console

from segkit import api

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_terminal_display_fits_80_columns(tiny_recipe):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    api.train(tiny_recipe, ["report_to=[]", "vis_samples=0"], console=console)
    lines = [ANSI.sub("", part) for part in re.split(r"[\r\n]", buffer.getvalue())]
    lines = [line for line in lines if line.strip()]
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    bars = [line for line in lines if line.startswith("epoch 2/2 ") and "6/6" in line]
    assert bars and all("ETA" in line for line in bars)
    assert any(line.startswith("eval ") and "/8" in line for line in lines)  # the evaluation bar
    summaries = [line for line in lines if " done in " in line]
    assert summaries[0].startswith("epoch 1/2 done in") and "mIoU" in "".join(lines)
    assert any(line.startswith("finished 2 epochs (6 iterations) in") for line in lines)


def test_summary_lines_are_printed_under_the_live_lock(tiny_recipe):
    """rich's refresh thread must not redraw between a summary line's cursor move and its write (it erased the line
    above the bars when the evaluation bar went away)."""
    owned = []

    class Recording(Console):
        def print(self, *objects, **kwargs):
            text = str(objects[0]) if objects else ""
            if self._live_stack and " done in " in text:
                owned.append(self._live_stack[-1]._lock._is_owned())
            super().print(*objects, **kwargs)

    console = Recording(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    api.train(tiny_recipe, ["report_to=[]", "vis_samples=0"], console=console)
    assert owned == [True, True]  # both epochs' summary lines


def test_piped_display(tiny_recipe):
    proc = subprocess.run([sys.executable, "-m", "segkit", "train", str(tiny_recipe), "--report-to", "none"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "\x1b[" not in out  # no cursor movement in a file
    assert re.search(r"^epoch 1/2 done in \S+: loss \d", out, re.M)
    assert re.search(r"^eval 8/8 images [\d.]+/s elapsed \S+ eta", out, re.M)
    assert re.search(r"^finished 2 epochs \(6 iterations\) in ", out, re.M)


def test_ctrl_c_says_how_to_continue_and_that_command_works(tiny_recipe, tmp_path):
    work = tmp_path / "stopped"
    base = [sys.executable, "-m", "segkit", "train", str(tiny_recipe), "--work-dir", str(work),
            "--set", "scheduler.max_epochs=30", "--report-to", "none"]
    # a shell's background job ignores SIGINT and children inherit that: undo it, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (work / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    match = re.search(r"interrupted in epoch (\d+)/30 at iteration \d+/90; .*last\.pt holds epoch (\d+); "
                      r"continue with: (segkit train .*--resume)$", out, re.M)
    assert match, out[-2000:]
    assert int(match.group(2)) in (int(match.group(1)) - 1, int(match.group(1)))
    assert match.group(0) in (work / "log.txt").read_text()
    command = shlex.split(match.group(3))
    assert command[:2] == ["segkit", "train"] and "--resume" in command
    resumed = subprocess.run([sys.executable, "-m", "segkit", *command[1:], "--set", "scheduler.max_epochs="
                              f"{int(match.group(2)) + 1}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {work / 'checkpoints' / 'last.pt'} at epoch {match.group(2)}" in resumed.stdout
    log = (work / "log.txt").read_text()  # the earlier attempt's lines, then where this one starts
    stop, restart = log.index(match.group(0)), log.index(f"resumed from {work / 'checkpoints' / 'last.pt'}")
    assert stop < restart < log.rindex("training ") and "are the interrupted attempt's" in log[restart:]


def test_plain_progress_lines(monkeypatch):
    from segkit.engine.report import display

    now = [0.0]
    monkeypatch.setattr(display.time, "perf_counter", lambda: now[0])

    def run(seconds_per_image: float) -> list[str]:
        lines: list[str] = []
        now[0] = 0.0
        bar = display.PlainProgress(lines.append, "eval", 100, min_interval=2.0)
        for _ in range(100):
            now[0] += seconds_per_image
            bar.advance(1)
        return lines

    slow = run(0.5)  # a tenth every 5 s: every tenth is shown
    assert [line.split()[1] for line in slow] == [f"{i}/100" for i in range(10, 101, 10)]
    assert slow[-1] == "eval 100/100 images 2.0/s elapsed 50.0s eta 0.0s"
    fast = run(0.01)  # one second in all: the first tenth and the end only
    assert [line.split()[1] for line in fast] == ["10/100", "100/100"]
