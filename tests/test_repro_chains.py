"""`make repro`'s runner and the concurrent `dvc repro` it relies on, with real DVC and git in a
temporary repository of tiny stages (no pipeline, no TensorFlow).

Each expected dvc.lock entry is checked against the md5 of the file on disk (hashlib): a lost
entry, or one recording another process's bytes, fails the test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
RUNNER = REPO / "tools" / "repro_chains.py"

STAGE_SCRIPT = """\
import os, random, sys, time
name, output = sys.argv[1], sys.argv[2]
time.sleep(random.random() * 0.3)
if os.path.exists("fail." + name):
    print(f"{name}: error: told to fail; remove fail.{name}", file=sys.stderr)
    sys.exit(1)
os.makedirs(os.path.dirname(output), exist_ok=True)
with open(output, "w") as handle:
    handle.write(name * 1000)
"""


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    environment["PYTHONPATH"] = str(REPO / "src")
    # Not SQLite: the runner creates no tracking store here (these stages log nothing).
    environment["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    return environment


def _make_repo(root: Path, items: list[str]) -> Path:
    """A git + DVC repository (autostage on, as this project's) whose dvc.yaml has a `prep`
    stage, then per item `work@item` -> `post@item`, then `final` over every post output."""
    run = {"cwd": root, "check": True, "capture_output": True, "env": _environment()}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run([DVC, "init", "-q"], **run)
    subprocess.run([DVC, "config", "core.autostage", "true"], **run)
    (root / "stage.py").write_text(STAGE_SCRIPT)
    (root / "params.yaml").write_text(yaml.safe_dump({"items": items}))
    step = "python stage.py"
    stages = {
        "prep": {"cmd": f"{step} prep prep/out", "deps": ["stage.py"], "outs": ["prep"]},
        "work": {
            "foreach": "${items}",
            "do": {
                "cmd": f"{step} work_${{item}} work/${{item}}",
                "deps": ["prep"],
                "outs": ["work/${item}"],
            },
        },
        "post": {
            "foreach": "${items}",
            "do": {
                "cmd": f"{step} post_${{item}} post/${{item}}.txt",
                "deps": ["work/${item}"],
                "outs": [{"post/${item}.txt": {"cache": False}}],
            },
        },
        "final": {"cmd": f"{step} final final/out", "deps": ["post"], "outs": ["final"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    subprocess.run(["git", "add", "-A"], **run)
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", *identity, "commit", "-qm", "tiny stages"], **run)
    return root


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _recorded(root: Path) -> dict[str, str]:
    """stage -> md5 of its one output, from dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {name: entry["outs"][0]["md5"] for name, entry in lock["stages"].items()}


def test_concurrent_dvc_repro_processes_lose_no_lock_entry(tmp_path):
    items = [f"i{index}" for index in range(10)]
    root = _make_repo(tmp_path, items)
    environment = _environment()
    command = [DVC, "--wait-for-lock", "repro", "-q", "--single-item"]
    subprocess.run([*command, "prep"], cwd=root, check=True, env=environment)
    processes = [
        subprocess.Popen(
            [*command, f"work@{item}", f"post@{item}"],
            cwd=root,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for item in items
    ]
    outputs = [process.communicate()[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0] * len(items), outputs
    recorded = _recorded(root)
    for item in items:
        assert recorded[f"post@{item}"] == _md5(root / "post" / f"{item}.txt")
        assert (root / "work" / item).read_text() == f"work_{item}" * 1000
    assert len(recorded) == 1 + 2 * len(items)
    status = subprocess.run(
        [DVC, "status", "-q", *[f"post@{item}" for item in items]], cwd=root, env=environment
    )
    assert status.returncode == 0  # -q: 0 when every stage is up to date


def _runner(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *arguments],
        cwd=root,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_runner_keeps_finished_chains_and_names_the_failed_stage(tmp_path):
    root = _make_repo(tmp_path, ["ok", "bad", "late"])
    (root / "fail.post_bad").write_text("")
    failed = _runner(root, "--workers", "1", "--keep-going")
    assert failed.returncode != 0
    assert "post_bad: error: told to fail; remove fail.post_bad" in failed.stdout
    recorded = _recorded(root)
    for item in ("ok", "late"):  # the other chains finished and are recorded
        assert recorded[f"post@{item}"] == _md5(root / "post" / f"{item}.txt")
    assert "work@bad" in recorded and "post@bad" not in recorded and "final" not in recorded

    (root / "fail.post_bad").unlink()
    finished = _runner(root, "--workers", "2")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    progress = [line for line in finished.stdout.splitlines() if line.startswith("[repro +")]
    started = {line.split("] ", 1)[1].split()[1] for line in progress if "running," in line}
    assert started == {"post@bad"}, progress  # only what had not run
    assert "final" in _recorded(root)
    assert subprocess.run([DVC, "status", "-q"], cwd=root, env=_environment()).returncode == 0
    run = yaml.safe_load((root / "timings" / "run.json").read_text())
    assert run["workers"] == 2 and run["threads"] == 1 and run["wall_seconds"] > 0


def _runner_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("repro_chains", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("repro_chains", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("count", [1, 3])
def test_thread_environment_sets_every_pool(count, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    environment = _runner_module().thread_environment(count)
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        assert environment[name] == str(count)
    assert ("xla_cpu_multi_thread_eigen=false" in environment["XLA_FLAGS"]) == (count == 1)
    assert environment["XLA_FLAGS"].startswith("--xla_cpu_max_isa=AVX2")


def test_wall_seconds_span_the_stages_or_the_running_runner(tmp_path):
    from autoencoders.reporting import timings

    now = time.time()
    # Two stages side by side, then one after: wall 100 s (their seconds add up to 90).
    records = {"a": (now - 60, 40), "b": (now - 70, 30), "c": (now, 20)}
    for name, (finished, seconds) in records.items():
        record = {"seconds": seconds, "finished": finished}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    assert timings.wall_seconds(["a", "b", "c", "missing"], tmp_path) == pytest.approx(100, abs=1)
    # A runner that started 500 s ago and has not finished: its start counts.
    (tmp_path / "run.json").write_text(json.dumps({"started": now - 500}))
    assert timings.wall_seconds(["a"], tmp_path) == pytest.approx(500, abs=1)
    # Once it has finished, its file is an old run's: the stages' span again.
    (tmp_path / "run.json").write_text(json.dumps({"started": now - 500, "finished": now}))
    assert timings.wall_seconds(["a", "c"], tmp_path) == pytest.approx(100, abs=1)
    report = tmp_path / "timings.json"
    report.write_text(json.dumps({"pipeline_seconds": 90, "wall_seconds": 70}))
    assert "1.50x the wall" in timings.add_wall(report, 60)
    assert json.loads(report.read_text())["wall_seconds"] == 60
