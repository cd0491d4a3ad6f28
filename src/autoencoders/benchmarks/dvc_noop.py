"""What DVC costs on a folder of many small files as ``fetch``'s dependency, measured in a
scratch DVC project (no git) whose ``fetch`` stage runs this repository's ``pipeline/fetch.py``
on the folder, as dvc.yaml's does (deps: the folder; outs: ``data/raw``'s shards).

The first ``dvc repro`` hashes every file of the folder (MD5, ``core.checksum_jobs`` threads)
and runs the fetch; DVC keeps each file's hash in its state database against the file's inode,
size and mtime, so a no-op ``dvc repro`` or ``dvc status`` lists and stats every file and looks
each up, but reads none. The same ``dvc status`` of a stage depending on a one-file folder is
DVC's fixed cost (start-up, reading dvc.yaml and dvc.lock); ``core.checksum_jobs`` is tried as
a lever on the no-op.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from autoencoders import paths

REPO = Path(__file__).resolve().parents[3]

REPEATS = 3

DATA_KEYS = ("source", "path", "image_size", "color_mode")


def _dvc(project: Path, *arguments: str) -> tuple[float, str]:
    """(seconds, output) of one ``dvc`` command in ``project``; a failure raises naming it."""
    environment = {**os.environ, "DVC_NO_ANALYTICS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *arguments],
        cwd=project, capture_output=True, text=True, env=environment,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(arguments)} failed: {result.stderr.strip()[-1500:]}")
    return round(seconds, 3), result.stdout + result.stderr


def _project(project: Path, folder: Path, size: list[int], color_mode: str) -> None:
    (project / "small").mkdir()
    (project / "small" / "one.txt").write_text("one file\n")
    params = {"data": {"source": "images", "path": str(folder), "image_size": size,
                       "color_mode": color_mode}}  # fmt: skip
    (project / paths.PARAMS).write_text(yaml.safe_dump(params))
    stages = {
        "fetch": {
            "cmd": f"{sys.executable} {REPO / 'pipeline' / 'fetch.py'}",
            "deps": [str(folder)],
            "params": [f"data.{key}" for key in DATA_KEYS],
            "outs": [paths.RAW.as_posix()],
        },
        "small": {"cmd": "echo small > small.out", "deps": ["small"], "outs": ["small.out"]},
    }
    (project / paths.DVC_YAML).write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))


def _times(project: Path, *arguments: str, expect: str) -> dict[str, Any]:
    seconds = []
    for _ in range(REPEATS):
        elapsed, output = _dvc(project, *arguments)
        if expect not in output:
            raise RuntimeError(f"dvc {' '.join(arguments)} was not a no-op: {output[-800:]}")
        seconds.append(elapsed)
    return {"runs": seconds, "median": statistics.median(seconds), "min": min(seconds)}


def run_dvc_bench(folder: Path, size: list[int], color_mode: str) -> dict[str, Any]:
    """The first and the no-op ``dvc repro``, the no-op ``dvc status`` (folder and one-file
    stage), and the no-op status with ``core.checksum_jobs`` 1 and 8, in seconds."""
    with tempfile.TemporaryDirectory(prefix="dvc-bench-", dir=folder.parent) as scratch:
        project = Path(scratch)
        _dvc(project, "init", "--no-scm", "-q")
        _project(project, folder, size, color_mode)
        first, _ = _dvc(project, "repro")
        report = {
            "files": sum(len(names) for _, _, names in os.walk(folder)),
            "dvc_version": _dvc(project, "--version")[1].strip(),
            "repro_first_s": first,
            "repro_noop_s": _times(project, "repro", expect="up to date"),
            "status_noop_s": _times(project, "status", expect="up to date"),
            "status_one_file_stage_s": _times(project, "status", "small", expect="up to date"),
        }
        for jobs in (1, 8):
            _dvc(project, "config", "core.checksum_jobs", str(jobs))
            report[f"status_noop_checksum_jobs_{jobs}_s"] = _times(
                project, "status", expect="up to date"
            )
    return report
