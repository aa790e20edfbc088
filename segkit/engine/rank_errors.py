"""The errors of a multi-process launch, shown once by the launcher instead of once per process.

``segkit train --nproc N`` / ``--gpus N`` runs the command under torchrun. When a bad input fails in every
process, each would print the same message, and the processes whose peers exit first add the backend's own errors
(gloo's "Connection closed by peer ... GLHF", NCCL's aborts) on top of it. Instead, each launched process writes
its error to ``$SEGKIT_RANK_ERRORS/rank_<N>.json`` (as soon as the error leaves the training function, before the
process group is closed, so a peer's consequent failure can never be first) and prints nothing; the launcher reads
them all once the processes have stopped and prints each distinct user error once (exit 2), or, when there is
none, the errors that are not a peer's disconnection (exit 1). With ``--debug`` nothing is collected: every
process prints its own traceback.

Nothing here imports torch: the processes call it from their error path.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ERRORS_ENV = "SEGKIT_RANK_ERRORS"
"""The folder the launcher gives its processes for their error records."""

PEER_FAILURE = re.compile(
    r"Connection closed by peer|Connection reset by peer|Broken pipe|remote worker crashing|"
    r"remote process exited|NCCL communicator was aborted|ProcessGroupNCCL.*(abort|watchdog)|"
    r"DistNetworkError|DistBackendError|Socket Timeout|Timed out waiting|TCPStore|failed to recv, got 0 bytes",
    re.IGNORECASE)
"""What a process reports when another one stopped first: never the cause, shown only when nothing else is."""

_recorded = False


def collecting() -> bool:
    """Whether this process is one of a launch that collects its errors (a torchrun child of ``segkit``)."""
    return bool(os.environ.get(ERRORS_ENV)) and int(os.environ.get("WORLD_SIZE", "1")) > 1


def record_rank_error(exc: BaseException) -> bool:
    """Write this process's error for the launcher; returns whether it did (then the caller prints nothing).

    ``SegkitError`` is a user error (exit 2); Ctrl-C and ``SystemExit`` are not recorded; anything else is an
    internal error (exit 1). A process records its first error only."""
    global _recorded
    from ..errors import SegkitError

    if not collecting() or isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return False
    if _recorded:
        return True
    user = isinstance(exc, SegkitError)
    record = {"rank": int(os.environ.get("RANK", "0")), "code": 2 if user else 1,
              "message": str(exc) if user else f"{type(exc).__name__}: {exc}"}
    from ..fileio import atomic_write_text

    try:
        atomic_write_text(Path(os.environ[ERRORS_ENV]) / f"rank_{record['rank']}.json", json.dumps(record))
    except OSError:
        return False  # the launcher's folder is gone: print it here instead
    _recorded = True
    return True


def record_pending_error() -> None:
    """From a ``finally`` block: record the exception that is leaving it, if any (before the process group is
    closed, which is what makes the other processes fail)."""
    exc = sys.exc_info()[1]
    if exc is not None:
        record_rank_error(exc)


def read_records(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(folder.glob("rank_*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("rank", 0))


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def summarise(records: list[dict[str, Any]], failures: Mapping[int, Any]) -> tuple[int, list[str]]:
    """The exit code and the lines to print (without the ``error:`` prefix) for the processes' records and
    torchrun's ``failures`` (rank -> ``ProcessFailure``, for processes that died without a record).

    A user error is shown once, with the ranks only when rank 0 is not among those that reported it; other
    errors only when there is no user error, those that are a peer's disconnection only when nothing else is."""
    user: dict[str, list[int]] = {}
    internal: dict[str, list[int]] = {}
    for record in records:
        target = user if record.get("code") == 2 else internal
        target.setdefault(str(record.get("message", "")), []).append(int(record.get("rank", 0)))
    if user:
        return 2, [message if 0 in ranks else f"[{_ranks(ranks)}] {message}" for message, ranks in user.items()]
    if internal:
        causes = {m: r for m, r in internal.items() if not PEER_FAILURE.search(m)} or internal
        lines = [f"[{_ranks(ranks)}] {message}" for message, ranks in causes.items()]
        return 1, lines + ["(run with --debug for the traceback)"]
    lines = []
    for rank, failure in sorted(failures.items()):
        code = getattr(failure, "exitcode", 1)
        how = f"was killed by signal {failure.signal_name()}" if code < 0 else f"exited with code {code}"
        lines.append(f"[rank {rank}] the process {how}")
    codes = {getattr(f, "exitcode", 1) for f in failures.values()}
    return (2 if 2 in codes else 1), lines or ["a process failed"]
