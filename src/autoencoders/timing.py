"""Wall seconds of every DVC stage, kept out of git (they differ from machine to machine).

Each stage script ends with ``timing.run_stage("train", main)``: it runs ``main`` and, when it
succeeds, writes ``timings/<stage>.json`` (``train@conv`` for ``--variant conv``) with the
seconds since the process started, imports included. The report stage gathers them into
``reports/timings.json``: per-stage seconds and ``pipeline_seconds``, their sum. Both paths are
git-ignored and not DVC outputs, so a re-run on another machine changes neither git nor dvc.lock.
An expected failure (``errors.UserError``, I/O) ends the stage in one line (``errors.cli``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from autoencoders import errors, fileio, paths

TIMINGS_DIR = paths.TIMINGS
_IMPORTED_AT = time.time()


def process_started_at() -> float:
    """Epoch seconds when this process started (Linux /proc), else when this module loaded."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT


def stage_name(kind: str, argv: Sequence[str]) -> str:
    """``kind@variant`` when ``argv`` holds ``--variant variant``, else ``kind``."""
    arguments = list(argv)
    for index, argument in enumerate(arguments):
        if argument == "--variant" and index + 1 < len(arguments):
            return f"{kind}@{arguments[index + 1]}"
        if argument.startswith("--variant="):
            return f"{kind}@{argument.split('=', 1)[1]}"
    return kind


def run_stage(kind: str, main: Callable[[], Any], directory: str | Path = TIMINGS_DIR) -> None:
    """Run a stage's ``main()``; on success record its wall seconds in ``directory``.

    An expected failure prints one line and exits with 1 (``errors.cli``); nothing is recorded.
    """
    name = stage_name(kind, sys.argv[1:])
    errors.cli(main, program=name)
    seconds = time.time() - process_started_at()
    fileio.write_json(
        Path(directory) / f"{name}.json",
        {"stage": name, "seconds": round(seconds, 2), "finished": time.time()},
    )


def collect(stages: Iterable[str], directory: str | Path = TIMINGS_DIR) -> dict[str, Any]:
    """Seconds of each of ``stages`` recorded in ``directory`` and their sum."""
    recorded: dict[str, float] = {}
    missing = []
    for stage in stages:
        path = Path(directory) / f"{stage}.json"
        if path.exists():
            recorded[stage] = float(fileio.read_json(path)["seconds"])
        else:
            missing.append(stage)
    return {
        "stages": recorded,
        "missing": missing,
        "pipeline_seconds": round(sum(recorded.values()), 1),
    }
