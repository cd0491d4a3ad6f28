"""The run's wall seconds beside the sum of its stages' seconds (reports/timings.json).

Every stage records ``{"seconds", "finished"}`` in ``timings/<stage>.json``
(``autoencoders.timing``). The sum of the seconds is what the stages cost one after another; the
wall seconds are what the run took. ``make repro``'s runner (tools/repro_chains.py), which runs
the variants' chains side by side, writes ``timings/run.json`` with its start when it begins
and its ``finished`` time and ``wall_seconds`` when it ends. ``wall_seconds(...)`` counts from
that start while the runner runs (its file has no ``finished`` yet), else from the earliest
start among the stages' records (a plain ``dvc repro``), up to now. Both files are git-ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autoencoders import fileio, paths

RUN_FILE = paths.TIMINGS / "run.json"


def wall_seconds(stages: Iterable[str], directory: str | Path = paths.TIMINGS) -> float:
    """Seconds from this run's start (see the module docstring) to now."""
    directory = Path(directory)
    run_file = directory / RUN_FILE.name
    if run_file.exists():
        run = fileio.read_json(run_file)
        if "finished" not in run:
            return round(time.time() - float(run["started"]), 1)
    starts = []
    for stage in stages:
        path = directory / f"{stage}.json"
        if path.exists():
            record = fileio.read_json(path)
            starts.append(float(record.get("finished", time.time())) - float(record["seconds"]))
    return round(time.time() - min(starts, default=time.time()), 1)


def record_run(started: float, finished: bool, **facts: Any) -> float:
    """Write the runner's ``run.json`` (``finished`` and ``wall_seconds`` once it ends);
    return the seconds since ``started``."""
    wall = round(time.time() - started, 1)
    run: dict[str, Any] = {"started": started, **facts}
    if finished:
        run.update(finished=time.time(), wall_seconds=wall)
    fileio.write_json(RUN_FILE, run)
    return wall


def add_wall(timings_file: str | Path, wall: float) -> str:
    """Put the finished run's ``wall_seconds`` into the report's timings file (when the report
    wrote one) and return a line with both figures."""
    path = Path(timings_file)
    if not path.exists():
        return f"no {path} (the report did not run)"
    timings = fileio.read_json(path)
    timings["wall_seconds"] = wall
    fileio.write_json(path, timings)
    total = float(timings["pipeline_seconds"])
    ratio = total / max(wall, 1e-9)
    return f"sum of stage seconds {total:.0f} s ({ratio:.2f}x the wall) in {path}"
