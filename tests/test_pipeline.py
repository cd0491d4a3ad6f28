"""End to end: a real `dvc repro` up to the train stages in a throwaway copy of the repository,
then the `make tune` flow (a larger search, `dvc commit`, a repro that trains without searching).

Tiny settings: mnist5k, three variants, two trials of one epoch on a few hundred images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("dense", "denoising", "vae")
N_TRIALS = 2


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def runs_by_kind(uri: str) -> dict[str, list]:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("autoencoders")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    grouped: dict[str, list] = {}
    for found in runs:
        grouped.setdefault(found.data.tags.get("kind", "?"), []).append(found)
    return grouped


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> tuple[Path, dict[str, str], str]:
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    # examples/images: fetch's data.path dependency (an empty placeholder unless source: images)
    for name in ("pipeline", "src", "examples"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["source"] = "mnist5k"
    params["train"].update(epochs=1)
    # Epochs as written: the steps-based epochs models/derived.py gives mnist5k would outlast it.
    params["derive"]["steps"] = False
    params["tune"].update(
        n_trials=N_TRIALS, epochs=1, train_subset=300, val_subset=200, timeout_s=0
    )
    # Each variant's own `train:` (more epochs, XLA) would outlast a test: params["train"] rules.
    params["variants"] = {
        name: {key: value for key, value in params["variants"][name].items() if key != "train"}
        for name in VARIANTS
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    uri = f"sqlite:///{work.parent / 'mlflow.db'}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(work / "src"),  # the copy's library, not the checkout's
        "MLFLOW_TRACKING_URI": uri,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    run(["git", "init", "-q"], work, env)
    run(["dvc", "init", "-q"], work, env)
    run(["dvc", "repro", "train"], work, env)
    return work, env, uri


@pytest.mark.slow
def test_repro_tunes_each_variant_then_trains_with_its_best(repo_copy):
    work, _, uri = repo_copy
    runs = runs_by_kind(uri)
    parents = {p.info.run_id: p for p in runs["search"]}
    finals = runs["final"]
    for variant in VARIANTS:
        best = json.loads((work / "tuning" / variant / "best.json").read_text())
        assert best["source"] == "study" and best["n_trials"] == N_TRIALS
        study = optuna.load_study(
            study_name=best["study_name"], storage=f"sqlite:///{work / 'tuning' / 'optuna.db'}"
        )
        assert len(study.trials) == N_TRIALS and study.user_attrs["variant"] == variant

        (parent,) = [p for p in parents.values() if p.data.tags["variant"] == variant]
        assert parent.data.tags["dvc_stage"] == f"tune@{variant}"
        children = [
            c for c in runs["trial"] if c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        ]
        assert len(children) == N_TRIALS
        assert {c.data.tags["state"] for c in children} <= {"complete", "pruned", "failed"}

        (final,) = [f for f in finals if f.data.tags["variant"] == variant]
        assert final.info.run_name == f"{variant}-train" and final.info.status == "FINISHED"
        assert final.data.metrics["best_val_loss"] > 0
        training = json.loads((work / "models" / variant / "training.json").read_text())
        run_ref = json.loads((work / "models" / variant / "run.json").read_text())
        assert run_ref["run_id"] == final.info.run_id
        # the search's best parameters are what the final training used
        for key, value in best["params"].items():
            assert training["params"][key] == value
            assert float(final.data.params[key]) == pytest.approx(value)
        assert training["tuning"]["study_name"] == best["study_name"]
        assert training["epochs_run"] == 1


@pytest.mark.slow
def test_make_tune_flow_commits_and_repro_trains_without_searching(repo_copy):
    work, env, uri = repo_copy
    before = runs_by_kind(uri)
    command = [sys.executable, "pipeline/tune.py", "--variants", "dense", "--trials", "3"]
    run(command, work, env)
    best = json.loads((work / "tuning" / "dense" / "best.json").read_text())
    assert best["n_trials"] == 3
    # dvc commit recorded the new best.json: tune@dense is up to date, train@dense is not
    assert json.loads(run(["dvc", "status", "tune@dense", "--json"], work, env)) == {}
    assert "train@dense" in json.loads(run(["dvc", "status", "--json"], work, env))

    run(["dvc", "repro", "train"], work, env)
    after = runs_by_kind(uri)
    study = optuna.load_study(
        study_name=best["study_name"], storage=f"sqlite:///{work / 'tuning' / 'optuna.db'}"
    )
    assert len(study.trials) == 3  # the repro searched no further
    assert len(after["trial"]) == len(before["trial"]) + 1
    new_finals = {f.info.run_id for f in after["final"]} - {f.info.run_id for f in before["final"]}
    (new_final,) = [f for f in after["final"] if f.info.run_id in new_finals]
    assert new_final.data.tags["variant"] == "dense"  # only the retuned variant retrained
    training = json.loads((work / "models" / "dense" / "training.json").read_text())
    assert training["params"]["learning_rate"] == best["params"]["learning_rate"]
    stale = set(json.loads(run(["dvc", "status", "--json"], work, env)))
    assert not stale & {f"{stage}@{v}" for stage in ("tune", "train") for v in VARIANTS}
