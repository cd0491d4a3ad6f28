"""A team on several machines: crash-safe search, a shared MLflow server, the DVC remote.

Every server is real and started here on 127.0.0.1: PostgreSQL (conftest's ``postgres_url``,
plus a password-checking cluster for the wrong-password case) and ``mlflow server`` with a
PostgreSQL backend store and served artifacts, exactly as ``make server`` starts it. Searches
run ``pipeline/tune.py`` as ``make tune`` does, in separate working directories ("clones") on
scikit-learn's 8x8 digits, so a trial takes a second or two.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pytest
import yaml

from autoencoders import data, tracking, tuning
from autoencoders.services import remote

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(sys.executable).parent  # the .venv's bin (not resolved: it may be a symlink)
TUNE = REPO / "pipeline" / "tune.py"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
# Figures each test measured, printed at the end of the session (pytest -s shows them).
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    yield
    if FIGURES:
        print("\n[test_team figures] " + json.dumps(FIGURES, sort_keys=True))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_params(storage: str, seed: int, n_trials: int, tune_epochs: int = 1) -> dict:
    """params.yaml shrunk to one variant (dense) on digits: 1 training epoch, tiny search."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["seed"] = seed
    params["data"]["source"] = "digits"
    # One step per call: a signal then lands inside a trial, not after a whole epoch in one call.
    params["train"].update(epochs=1, batch_size=64, steps_per_execution=1)
    params["tune"].update(
        n_trials=n_trials,
        timeout_s=0,
        epochs=tune_epochs,
        train_subset=0,
        val_subset=0,
        pruner_startup_trials=2,
        storage=storage,
    )
    params["evaluate"].update(silhouette_sample=200, kmeans_n_init=1, n_examples=4)
    params["export"]["parity_batch_sizes"] = [1, 7]
    # The variant's own `train:` (15 epochs, XLA) would outlast a test: params["train"] rules.
    dense = {key: value for key, value in params["variants"]["dense"].items() if key != "train"}
    params["variants"] = {"dense": dense}
    return params


def copy_clone(destination: Path) -> Path:
    """The repository's working tree (tracked and new files, not ignored ones), mtimes kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def digits_processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    data.fetch("digits", root / "raw")
    data.preprocess(root / "raw", root / "processed", val_fraction=0.1, seed=0)
    return root / "processed"


def search_clone(root: Path, processed: Path, params: dict) -> Path:
    """A clone that can run `pipeline/tune.py`: its code, params.yaml and data/processed."""
    copy_clone(root)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(processed, root / "data" / "processed")
    return root


# Variables a surrounding `make test ARGS=...` passes down to every make it starts: a clone's
# `make push` must not inherit the pytest arguments.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS")


def clone_env(clone: Path, tracking_uri: str) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES},
        "PYTHONPATH": str(clone / "src"),  # this clone's library, not the installed one
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def tune_command(storage: str, n_trials: int, workers: int) -> list[str]:
    return [
        PYTHON, str(TUNE), "--variants", "dense", "--trials", str(n_trials),
        "--workers", str(workers), "--storage", storage, "--no-commit",
    ]  # fmt: skip


def study_name(clone: Path) -> str:
    from autoencoders.models import derived

    params = yaml.safe_load((clone / "params.yaml").read_text())
    processed = clone / "data" / "processed"
    return tuning.plan_search(
        variant="dense",
        # What tune@V searches: the block with the values derived from the data (digits here).
        variant_block=derived.derive_from_split(params, ["dense"], processed)["dense"],
        train_section=params["train"],
        tune_section=params["tune"],
        seed=params["seed"],
        data_checksum=data.load_card(processed)["checksum"],
    ).study_name


def states(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def running_runs(tracking_uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(
        experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000
    )


def seed_of_its_own() -> int:
    """A seed, hence a study name, of its own on a PostgreSQL server other tests share."""
    return int.from_bytes(os.urandom(3), "little")


# --- kill -9 mid-trial, then resume ------------------------------------------------------------


KILLPOINTS = REPO / "tests" / "killpoints"
# Where the kill -9 of the whole search lands, as the first storage write whose description
# holds the pattern (tests/killpoints/sitecustomize.py). The kill sweep (tests/killpoints/
# sweep.py; docs/crash-safety.md) found one moment that left a trial RUNNING for ever, between
# the writes of its worker's host and pid; the identity is one write now, and these are the
# moments on either side of it, and mid-trial.
KILL_POINTS = {
    "claiming": "set_trial_user_attr worker",  # trial created, its worker not recorded yet
    "recorded": "record_heartbeat",  # worker recorded, no heartbeat yet
    "mid-trial": "set_trial_intermediate_value",  # training, its MLflow run open
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "point"),
    [
        ("postgresql", "claiming"),
        ("postgresql", "recorded"),
        ("postgresql", "mid-trial"),
        ("sqlite", "claiming"),
        ("sqlite", "mid-trial"),
    ],
)
def test_kill_9_then_resume(tmp_path, digits_processed, backend, point, request):
    """kill -9 of the whole `make tune` (main process and workers) at a given moment of a
    trial's life, then the same command again: exactly N trials counted, none RUNNING, each
    killed trial failed and re-run with its values, every MLflow run closed."""
    n_trials = 4
    seed = seed_of_its_own()
    storage = (
        request.getfixturevalue("postgres_url") if backend == "postgresql" else "tuning/optuna.db"
    )
    clone = search_clone(
        tmp_path / "clone", digits_processed, tiny_params(storage, seed, n_trials, tune_epochs=2)
    )
    url = tuning.storage_url(str(clone / storage) if backend == "sqlite" else storage)
    tracking_uri = f"sqlite:///{clone / 'mlflow.db'}"
    env = clone_env(clone, tracking_uri)
    command = tune_command(storage, n_trials, workers=2)
    name = study_name(clone)

    writes = tmp_path / "writes.log"
    killing = {
        **env,
        "PYTHONPATH": f"{KILLPOINTS}{os.pathsep}{env['PYTHONPATH']}",
        "KILLPOINT_COUNTER": str(writes),
        "KILLPOINT_MATCH": KILL_POINTS[point],
    }
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.run(
            command, cwd=clone, env=killing, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, timeout=600,
        )  # fmt: skip
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    assert KILL_POINTS[point] in writes.read_text().splitlines()[-1]
    study = optuna.load_study(study_name=name, storage=url)
    before = states(study)
    # every trial running at the kill, MLflow run or not yet
    killed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    runs_before = len(running_runs(tracking_uri))
    assert before.get("RUNNING", 0) >= 1 and runs_before >= 1  # at least the worker's parent run

    started = time.monotonic()
    resumed = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    resume_seconds = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    study = optuna.load_study(study_name=name, storage=url)
    after = states(study)
    trials = study.get_trials(deepcopy=False)
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == n_trials  # exactly N counted
    assert after.get("RUNNING", 0) == 0 and after.get("WAITING", 0) == 0
    by_number = {t.number: t for t in trials}
    assert {t.number for t in trials if t.state.name == "FAIL"} == {k.number for k in killed}
    for trial in killed:
        failed = by_number[trial.number]
        assert failed.state.name == "FAIL" and failed.user_attrs["failure"].startswith("killed")
        (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
        assert retry.state.name in ("COMPLETE", "PRUNED")
        assert retry.params.items() >= trial.params.items()  # re-run with the same values
    assert running_runs(tracking_uri) == []
    client = mlflow.MlflowClient(tracking_uri)
    for trial in killed:
        if not trial.user_attrs.get("mlflow_run_id"):
            continue  # killed before its run was made
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["state"] == "killed"
        parent = client.get_run(trial.user_attrs["mlflow_parent_run_id"])
        assert parent.info.status == "KILLED"
    # The dead workers' trials were failed because their processes are gone, not by the 120 s
    # heartbeat grace (a wall-clock bound on the resume would measure this machine's load).
    failures = {t.number: t.user_attrs.get("failure", "") for t in trials}
    assert all("is gone" in failures[k.number] for k in killed), failures
    best = json.loads((clone / "tuning" / "dense" / "best.json").read_text())
    assert best["counts"]["complete"] + best["counts"]["pruned"] == n_trials
    FIGURES[f"kill9_{backend}_{point}"] = {
        "before": before,
        "mlflow_running_before": runs_before,
        "after": after,
        "killed_trials": sorted(t.number for t in killed),
        "mlflow_running_after": 0,
        "resume_s": round(resume_seconds, 1),
    }


@pytest.mark.slow
def test_ctrl_c_stops_workers_cleanly(tmp_path, digits_processed):
    """SIGINT to the process group (Ctrl-C): exit 130, nothing left RUNNING, trial re-queued.

    The workers hear it twice (the terminal's, then the parent's): the second must not meet a
    worker in its clean-up (a traceback from multiprocessing's exit code, stop 13's CI)."""
    clone = search_clone(
        tmp_path / "clone",
        digits_processed,
        tiny_params("tuning/optuna.db", 0, n_trials=4, tune_epochs=30),
    )
    tracking_uri = f"sqlite:///{clone / 'mlflow.db'}"
    url = tuning.storage_url(str(clone / "tuning" / "optuna.db"))
    process = subprocess.Popen(
        tune_command("tuning/optuna.db", 4, workers=2),
        cwd=clone,
        env=clone_env(clone, tracking_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    name = study_name(clone)
    deadline = time.monotonic() + 180
    running = []
    while not running and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            continue
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get("mlflow_run_id")
        ]
    assert running
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == tuning.INTERRUPTED_EXIT_CODE, output[-3000:]
    assert "interrupted" in output
    # No traceback of ours. A SIGINT that lands inside a garbage-collector callback makes the
    # interpreter print "Exception ignored in: ..." with a traceback it then drops: noise that
    # changes nothing (the exit code, trial states and runs are checked below).
    assert output.count("Traceback") == output.count("Exception ignored in"), output[-3000:]
    study = optuna.load_study(study_name=name, storage=url)
    counted = states(study)
    assert counted.get("RUNNING", 0) == 0
    assert counted.get("WAITING", 0) >= 1  # the interrupted trials, queued again
    assert running_runs(tracking_uri) == []
    FIGURES["sigint"] = {"after": counted}


# --- two clones, one PostgreSQL study, one MLflow server --------------------------------------


def create_database(postgres_url: str) -> str:
    """A new database on the test server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"mlflow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def mlflow_server(postgres_url, tmp_path_factory):
    """`make server`'s command on 127.0.0.1: PostgreSQL backend store, served artifacts."""
    root = tmp_path_factory.mktemp("mlserver")
    backend = create_database(postgres_url)
    port = free_port()
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            PYTHON, "-m", "autoencoders.services.tracking_server", "server",
            "--backend-store", backend,
            "--artifacts", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        ],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log_text = (root / "server.log").read_text()[-3000:]
            pytest.fail(f"mlflow server did not start: {log_text}")
        time.sleep(0.5)
    try:
        yield {"uri": uri, "artifacts": root / "artifacts", "backend": backend}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_two_clones_share_one_study_and_one_mlflow_server(
    tmp_path, digits_processed, postgres_url, mlflow_server
):
    n_trials = 6
    params = tiny_params(postgres_url, seed_of_its_own(), n_trials, tune_epochs=2)
    clones = [search_clone(tmp_path / name, digits_processed, params) for name in ("a", "b")]
    uri = mlflow_server["uri"]
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            tune_command(postgres_url, n_trials, workers=1),
            cwd=clone,
            env=clone_env(clone, uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for clone in clones
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    seconds = time.monotonic() - started
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name=study_name(clones[0]), storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    counted = states(study)
    assert counted.get("COMPLETE", 0) + counted.get("PRUNED", 0) == n_trials  # exact total
    assert counted.get("RUNNING", 0) == 0

    client = mlflow.MlflowClient(uri)
    experiments = [e.name for e in client.search_experiments()]
    assert experiments.count(tracking.EXPERIMENT) == 1
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`optuna.study_name` = '{study.study_name}'",
        max_results=1000,
    )
    parents = {r.info.run_id: r for r in runs if r.data.tags["kind"] == "search"}
    children = {r.info.run_id: r for r in runs if r.data.tags["kind"] == "trial"}
    assert len(parents) == 2  # one per clone
    assert {p.info.status for p in parents.values()} == {"FINISHED"}
    started_trials = [t for t in trials if t.user_attrs.get("mlflow_run_id")]
    assert len(children) == len(started_trials) >= n_trials
    for trial in started_trials:
        run = children[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["mlflow.parentRunId"] == trial.user_attrs["mlflow_parent_run_id"]
        assert run.data.tags["mlflow.parentRunId"] in parents
    per_clone = Counter(c.data.tags["mlflow.parentRunId"] for c in children.values())
    assert running_runs(uri) == []

    # An artifact logged by clone A is downloaded by clone B, both through the server.
    parent_a = next(iter(parents))
    note = f"logged by clone a {uuid.uuid4().hex}"
    (clones[0] / "note.txt").write_text(note)
    log_it = (
        "import mlflow; mlflow.MlflowClient().log_artifact("
        f"{parent_a!r}, 'note.txt', artifact_path='shared')"
    )
    fetch_it = (
        "import mlflow; print(mlflow.artifacts.download_artifacts("
        f"run_id={parent_a!r}, artifact_path='shared/note.txt', dst_path='downloaded'))"
    )
    for clone, code in ((clones[0], log_it), (clones[1], fetch_it)):
        result = subprocess.run(
            [PYTHON, "-c", code], cwd=clone, env=clone_env(clone, uri), capture_output=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert (clones[1] / "downloaded" / "note.txt").read_text() == note
    assert client.get_run(parent_a).info.artifact_uri.startswith("mlflow-artifacts:")
    stored = list(mlflow_server["artifacts"].rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == note  # on the server's store only
    FIGURES["two_clones"] = {
        "study": counted,
        "trial_runs": len(children),
        "trials_per_clone": sorted(per_clone.values()),
        "parents": len(parents),
        "seconds": round(seconds, 1),
    }


# --- the DVC remote: clone A pushes, clone B pulls ---------------------------------------------


@pytest.mark.slow
def test_dvc_remote_push_pull_and_get(tmp_path, mlflow_server):
    remote_dir = tmp_path / "remote"
    a = copy_clone(tmp_path / "a")
    (a / "params.yaml").write_text(
        yaml.safe_dump(tiny_params("tuning/optuna.db", 0, n_trials=1), sort_keys=False)
    )
    (a / "dvc.lock").unlink(missing_ok=True)  # the repository's lock describes full MNIST
    # Every stage logs to the team's server (the make targets export MLFLOW_TRACKING_URI).
    env = clone_env(a, mlflow_server["uri"])
    # make with this .venv, never re-installing it (a fresh clone's pyproject.toml is newer)
    (stamp,) = BIN.parent.glob(".installed-*")
    venv = [f"VENV={BIN.parent}", "-o", str(stamp)]

    def run(command: list[str], cwd: Path) -> str:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
        return result.stdout

    run(["git", "init", "-q"], a)
    run([*GIT, "add", "-A"], a)
    run([*GIT, "commit", "-qm", "tiny pipeline"], a)
    started = time.monotonic()
    run(["make", "repro", *venv], a)  # the README's first command
    repro_seconds = time.monotonic() - started
    check_readme_commands(a, run, venv, env)
    run(["make", "push", *venv, f"DVC_REMOTE={remote_dir}"], a)
    run([*GIT, "add", "-A"], a)
    run([*GIT, "commit", "-qm", "pipeline outputs"], a)
    assert any(remote_dir.rglob("*")), "nothing was pushed"

    b = tmp_path / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp_path)
    assert not (b / "exports" / "dense").exists()
    run(["make", "pull", *venv, f"DVC_REMOTE={remote_dir}", "ARGS=export@dense"], b)
    assert (b / "exports" / "dense" / "encoder.onnx").is_file()  # one stage's outputs
    assert not (b / "models" / "dense").exists()
    run(["make", "pull", *venv], b)  # the rest; DVC_REMOTE was remembered
    status = run([str(BIN / "dvc"), "status"], b)
    assert "Data and pipelines are up to date." in status, status

    import onnxruntime

    encoder_b = b / "exports" / "dense" / "encoder.onnx"
    assert encoder_b.read_bytes() == (a / "exports" / "dense" / "encoder.onnx").read_bytes()
    session = onnxruntime.InferenceSession(str(encoder_b), providers=["CPUExecutionProvider"])
    images = data.load_split(b / "data" / "processed", "test")[0][:5].astype(np.float32)
    (codes,) = session.run(None, {session.get_inputs()[0].name: images})
    assert codes.shape[0] == 5 and np.isfinite(codes).all()

    got = tmp_path / "got"
    run([str(BIN / "dvc"), "get", str(a), "exports/dense", "-o", str(got)], tmp_path)
    assert (got / "encoder.onnx").read_bytes() == encoder_b.read_bytes()
    run(["make", "clean", *venv], b)  # untracked outputs only
    assert not any((b / name).exists() for name in ("data", "models", "plots", "exports/dense"))
    changed = run(["git", "status", "--porcelain", "--untracked-files=no"], b)
    assert changed == "", f"make clean touched tracked files: {changed}"
    # A fresh clone's `make repro` recomputes every output and leaves git clean: what DVC hashes
    # is deterministic (run.json, with run ids, timings and the commit, is in .dvcignore).
    c = tmp_path / "c"
    run(["git", "clone", "-q", str(a), str(c)], tmp_path)
    run(["make", "repro", *venv], c)
    changed = run(["git", "status", "--porcelain"], c)
    assert changed == "", f"a second `make repro` changed: {changed}"
    # The stages logged to the server: the final run holds evaluation metrics and ONNX models.
    client = mlflow.MlflowClient(mlflow_server["uri"])
    run_id = json.loads((a / "models" / "dense" / "run.json").read_text())["run_id"]
    final = client.get_run(run_id)
    assert "test_mse" in final.data.metrics and final.info.status == "FINISHED"
    FIGURES["dvc"] = {
        "repro_s": round(repro_seconds, 1),
        "remote_files": sum(1 for p in remote_dir.rglob("*") if p.is_file()),
    }


def check_readme_commands(clone: Path, run: Any, venv: list[str], env: dict[str, str]) -> None:
    """The README's commands on a finished tiny pipeline: what a DVC user runs first, the
    seeds check of the clustering head, the ONNX benchmark and the study dashboard."""
    shown = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], clone))
    (rows,) = shown.values()
    assert list(rows["data"]) == ["reports/metrics/dense.json"]  # one row per variant
    assert rows["data"]["reports/metrics/dense.json"]["data"]["mse"] > 0
    plots = json.loads(run([str(BIN / "dvc"), "plots", "show", "--json"], clone))["data"]
    assert "plots/dense/history.csv" in plots  # the training curves as data

    seeds = run(["make", "cluster-seeds", *venv, "VARIANT=dense", "SEEDS=0,1"], clone)
    assert "dense over seeds [0, 1]: head_accuracy" in seeds, seeds
    # The same seed twice trains the same model: seeded and deterministic.
    spread = run(["make", "train-seeds", *venv, "VARIANT=dense", "SEEDS=0,0,1"], clone)
    mse = [line.split("mse ")[1].split(" ")[0] for line in spread.splitlines() if " seed " in line]
    assert len(mse) == 3 and mse[0] == mse[1] and float(mse[2]) > 0, spread
    assert "dense over seeds [0, 0, 1]: mse" in spread
    run(["make", "bench", *venv], clone)
    bench = json.loads((clone / "reports" / "bench.json").read_text())
    assert "dense" in json.dumps(bench)

    port = free_port()
    dashboard = subprocess.Popen(
        ["make", "dashboard", *venv, f"DASHBOARD_PORT={port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180  # make, the storage lookup (imports TF), the app
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as reply:
                    studies = json.loads(reply.read())["study_summaries"]
                break
            except OSError:
                assert dashboard.poll() is None and time.monotonic() < deadline, "no dashboard"
                time.sleep(0.5)
        # It shows the study of params.yaml's tune.storage.
        assert [s["study_name"] for s in studies] == [study_name(clone)]
    finally:
        os.killpg(dashboard.pid, signal.SIGTERM)
        dashboard.wait()


# --- clear failures: one line, the URL with its password masked, the fix -----------------------


@pytest.fixture(scope="module")
def password_postgres() -> str:
    """A PostgreSQL cluster that checks passwords (user optuna, password right-one)."""
    bin_dir = max(Path("/usr/lib/postgresql").glob("*/bin/initdb"), default=None)
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bin_dir = bin_dir.parent
    root = Path(tempfile.mkdtemp(prefix="autoencoders-pgpw-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    (root / "pw").write_text("right-one\n")
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    cluster = root / "cluster"
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(cluster), "-U", "optuna",
         "-A", "scram-sha-256", f"--pwfile={root / 'pw'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-w", "-l",
         str(root / "server.log"), "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if "__pycache__" not in path.parts  # Python's own byte-code of the clone's modules
    }


def one_clear_line(output: str, *expected: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert "Traceback" not in output, output[-3000:]
    assert lines, "no message at all"
    message = lines[-1]
    for text in expected:
        assert text in message, (text, output[-3000:])
    return message


@pytest.mark.slow
def test_unusable_services_fail_in_one_line_and_touch_nothing(
    tmp_path, digits_processed, password_postgres
):
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    missing_remote = str(tmp_path / "no" / "remote")
    cases = {
        "postgres_unreachable": (
            [*tune_command(f"postgresql+psycopg://optuna:s3cret@{closed}/studies", 2, 1)],
            None,
            [f"optuna:***@{closed}/studies", "start PostgreSQL"],
        ),
        "postgres_wrong_password": (
            tune_command(f"postgresql+psycopg://optuna:wrong@{password_postgres}/postgres", 2, 1),
            None,
            [f"optuna:***@{password_postgres}/postgres", "wrong user or password"],
        ),
        "mlflow_unreachable": (
            tune_command("tuning/optuna.db", 2, 1),
            f"http://{closed}",
            [f"http://{closed}", "make server", "MLFLOW_TRACKING_URI"],
        ),
        "mlflow_backend_wrong_password": (
            [
                PYTHON,
                "-m",
                "autoencoders.services.tracking_server",
                "server",
                "--backend-store",
                f"postgresql+psycopg://optuna:wrong@{password_postgres}/postgres",
                "--artifacts",
                "server-artifacts",
            ],
            None,
            [f"optuna:***@{password_postgres}/postgres", "wrong user or password"],
        ),  # fmt: skip
        "remote_missing": (
            [PYTHON, "-m", "autoencoders.services.remote", "pull", "--url", missing_remote],
            None,
            [missing_remote, "does not exist", "DVC_REMOTE"],
        ),
    }
    processes, before = {}, {}
    for case, (command, tracking_uri, _) in cases.items():
        clone = search_clone(
            tmp_path / case, digits_processed, tiny_params("tuning/optuna.db", 0, 2)
        )
        subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
        before[case] = snapshot(clone)
        processes[case] = subprocess.Popen(
            command,
            cwd=clone,
            env=clone_env(clone, tracking_uri or f"sqlite:///{clone / 'mlflow.db'}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    messages = {}
    for case, process in processes.items():
        output = process.communicate(timeout=180)[0]
        assert process.returncode not in (0, None), (case, output[-3000:])
        messages[case] = one_clear_line(output, *cases[case][2])
        assert "s3cret" not in output and ":wrong@" not in output
        assert snapshot(tmp_path / case) == before[case], f"{case} touched local files"
    FIGURES["failures"] = messages


def test_remote_check_names_the_missing_extra_and_the_fix(tmp_path):
    with pytest.raises(tracking.ServiceError, match=r"does not exist: set DVC_REMOTE"):
        remote.check(str(tmp_path / "nowhere"), "pull")
    with pytest.raises(tracking.ServiceError, match=r"create .* or set DVC_REMOTE"):
        remote.check(str(tmp_path / "no" / "parent"), "push")
    assert remote.check(str(tmp_path / "new"), "push") and (tmp_path / "new").is_dir()
    if not remote.importlib.util.find_spec("dvc_s3"):
        with pytest.raises(tracking.ServiceError, match=r"pip install 'dvc\[s3\]'"):
            remote.check("s3://bucket/prefix", "push")


def test_masks_passwords_and_names_database_problems():
    assert tracking.mask("postgresql+psycopg://u:pw@db:5432/x") == (
        "postgresql+psycopg://u:***@db:5432/x"
    )
    assert tracking.mask("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(tracking.ServiceError, match=r"no database server answers") as raised:
        tracking.check_database(
            f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/x", "Optuna storage", "STORAGE"
        )
    assert "pw@" not in str(raised.value) and raised.value.code != 0


def test_worker_alive_tells_a_dead_process_from_a_live_one():
    me = tuning.worker_identity()
    assert tuning.worker_alive(me["host"], me["pid"], me["started"]) is True
    assert tuning.worker_alive(me["host"], me["pid"], "1") is False  # a reused pid
    child = subprocess.Popen([PYTHON, "-c", "pass"])
    child.wait()
    assert tuning.worker_alive(me["host"], child.pid) is False
    assert tuning.worker_alive("another-host", me["pid"]) is None  # the heartbeat decides


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() with heartbeats on
def test_trial_of_a_worker_on_another_host_is_failed_by_its_heartbeat(tmp_path, monkeypatch):
    """Another machine's dead worker: no pid to check, so its stale heartbeat decides."""
    monkeypatch.setattr(tuning.recovery, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(tuning.recovery, "HEARTBEAT_GRACE_S", 1)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    experiment_id = tracking.setup()
    client = mlflow.MlflowClient(tracking_uri)
    parent = client.create_run(experiment_id, tags={"kind": "search"}).info.run_id
    child = client.create_run(
        experiment_id, tags={"kind": "trial", "mlflow.parentRunId": parent}
    ).info.run_id

    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="elsewhere", storage=storage)
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    attributes = {
        "worker_host": "another-machine",
        "worker_pid": 1,
        "mlflow_run_id": child,
        "mlflow_parent_run_id": parent,
    }
    for key, value in attributes.items():
        trial.set_user_attr(key, value)
    storage.record_heartbeat(trial._trial_id)
    assert tuning.recover(study, verbose=False)["killed"] == 0  # still beating: left alone
    time.sleep(2.5)
    tuning.recover(study, verbose=False)

    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].user_attrs["retry_of"] == 0
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
    assert client.get_run(child).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() with heartbeats on
def test_trial_killed_while_claiming_is_failed_and_queued_again(tmp_path):
    """kill -9 between study.ask() and the worker's first write (seen in CI): the trial has no
    worker and no heartbeat, so neither the pid check nor Optuna's grace would ever fail it."""
    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="claiming", storage=storage)
    study.enqueue_trial({"learning_rate": 0.003})
    study.ask()  # popped from the queue, then its process "died": nothing recorded
    counts = tuning.recover(study, verbose=False)
    assert counts["killed"] == 1 and counts["requeued"] == 1
    orphan, retry = study.get_trials(deepcopy=False)
    assert orphan.state.name == "FAIL" and "is gone" in orphan.user_attrs["failure"]
    assert retry.state.name == "WAITING" and retry.user_attrs["retry_of"] == orphan.number
    assert retry.system_attrs["fixed_params"] == {"learning_rate": 0.003}  # the queued values


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() with heartbeats on
def test_trial_with_half_a_worker_identity_is_failed_under_the_claim_lock(tmp_path):
    """kill -9 between two writes of a worker's identity (the kill sweep's dangerous moment when
    host, pid and start time were three writes): a host and no pid. The claim lock is held by
    recovery, so the claim is certainly dead; the identity is now one write."""
    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="half-recorded", storage=storage)
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    trial.set_user_attr("worker_host", socket.gethostname())  # an earlier release's first write
    alive = study.ask()
    tuning.recovery.record_worker(alive)  # this live process, in one write
    counts = tuning.recover(study, verbose=False)
    assert counts["killed"] == 1 and counts["requeued"] == 1
    half, live, retry = study.get_trials(deepcopy=False)
    assert half.state.name == "FAIL" and "claiming" in half.user_attrs["failure"]
    assert live.state.name == "RUNNING" and set(live.user_attrs["worker"]) == {
        "host", "pid", "started"
    }  # fmt: skip
    assert (
        retry.user_attrs["retry_of"] == half.number
        and retry.params == {}
        and (retry.system_attrs["fixed_params"] == half.params)
    )


def test_claim_without_a_worker_is_left_alone_on_shared_storage_until_the_grace_passes():
    """Without a claim lock (a storage other than SQLite or PostgreSQL) a claim in progress
    elsewhere is not a death; a claim takes milliseconds, so one older than the heartbeat grace
    is."""
    now = datetime.datetime.now()

    def running(age_s: float) -> optuna.trial.FrozenTrial:
        return optuna.trial.FrozenTrial(
            number=0, state=optuna.trial.TrialState.RUNNING, value=None,
            datetime_start=now - datetime.timedelta(seconds=age_s), datetime_complete=None,
            params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=0,
        )  # fmt: skip

    grace = tuning.recovery.HEARTBEAT_GRACE_S
    assert tuning.recovery._dead_reason(running(1), claims_locked=False) is None
    assert "is gone" in tuning.recovery._dead_reason(running(grace + 5), claims_locked=False)
    assert "is gone" in tuning.recovery._dead_reason(running(1), claims_locked=True)


HOLD_CLAIM_LOCK = """
import sys, time, optuna
from autoencoders import tuning
study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
with tuning.recovery.claim_lock(study):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_claims_on_postgresql_hold_an_advisory_lock_a_killed_claimer_releases(postgres_url):
    # Checked against PostgreSQL's own lock table (pg_try_advisory_lock from another
    # connection): held during a claim, free after it, and free once a claimer is killed -9
    # mid-claim, so a resume's recovery neither waits forever nor meets a half-done claim.
    import sqlalchemy

    study = optuna.create_study(study_name=f"claim-{uuid.uuid4().hex}", storage=postgres_url)
    key = {"key": tuning.recovery.claim_key(study.study_name)}
    engine = sqlalchemy.create_engine(postgres_url)

    def free() -> bool:
        with engine.connect() as connection:
            taken = connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"), key)
            if not taken.scalar():
                return False
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
            return True

    with tuning.recovery.claim_lock(study) as locked:
        assert locked and not free()
    assert free()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CLAIM_LOCK, postgres_url, study.study_name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert not free()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while not free():
        assert time.monotonic() < deadline, "the killed claimer's lock was never released"
        time.sleep(0.1)
    engine.dispose()
