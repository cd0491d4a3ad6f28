"""tuning: search-space validation, pruning, failing trials, resuming, parallel workers, MLflow.

Most tests replace ``loop.train_variant`` by a synthetic learning curve driven through the
same callbacks (pruning, MLflow) so they run in milliseconds; pruning and the two-worker test
train real (tiny) models.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from autoencoders import config, data, tracking, tuning
from autoencoders.config import ConfigError
from autoencoders.training import loop

DENSE = {
    "architecture": {"name": "dense", "latent_dim": 8},
    "objective": {"name": "plain", "loss": "bce"},
    "search": {
        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        "batch_size": {"choices": [32, 64]},
    },
}
TRAIN = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "early_stopping_patience": 3}
TUNE = {
    "n_trials": 3,
    "timeout_s": 0,
    "epochs": 2,
    "train_subset": 200,
    "val_subset": 100,
    "pruner_startup_trials": 2,
    "pruner_warmup_epochs": 0,
}
REPO = Path(__file__).resolve().parents[1]
FAIL_LR = 0.009  # the synthetic trainer raises for this learning rate
NAN_LR = 0.008  # and returns a NaN loss for this one


def synthetic_train_variant(
    config, x_train, x_val, epochs, batch_size, learning_rate, seed, patience,
    shuffle_buffer=10000, callbacks=(), verbose=True, steps_per_execution=1, jit_compile=False,
):  # fmt: skip
    """A learning curve that is best at learning_rate 1e-3, fed through the real callbacks."""
    if math.isclose(learning_rate, FAIL_LR):
        raise loop.TrainingDivergedError("synthetic divergence")
    distance = abs(math.log10(learning_rate) + 3)
    history = {"loss": [], "val_loss": []}
    for epoch in range(epochs):
        value = math.nan if math.isclose(learning_rate, NAN_LR) else 0.1 + distance / (epoch + 1)
        logs = {"loss": value + 0.01, "val_loss": value}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        for key in history:
            history[key].append(logs[key])
    best = min(history["val_loss"]) if not math.isnan(history["val_loss"][0]) else math.nan
    info = {"best_val_loss": best, "images_per_second": 1000.0, "epochs_run": epochs}
    return None, history, info


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def synthetic(monkeypatch):
    monkeypatch.setattr(loop, "train_variant", synthetic_train_variant)


def runs_of(uri: str, kind: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.kind = '{kind}'", max_results=1000
    )


def plan(search=None, tune=None, checksum="c" * 64, **overrides) -> tuning.SearchPlan:
    block = {**DENSE, "search": DENSE["search"] if search is None else search}
    return tuning.plan_search(
        variant="dense",
        variant_block=block,
        train_section=TRAIN,
        tune_section={**TUNE, **(tune or {})},
        seed=0,
        data_checksum=checksum,
        **overrides,
    )


def run_tune(tmp_path, processed_dir, search=None, workers=1, seed=0, **tune_overrides) -> dict:
    return tuning.tune(
        variant="dense",
        variant_block={**DENSE, "search": DENSE["search"] if search is None else search},
        train_section=TRAIN,
        tune_section={**TUNE, "storage": str(tmp_path / "optuna.db"), **tune_overrides},
        seed=seed,
        processed_dir=processed_dir,
        best_path=tmp_path / "tuning" / "dense" / "best.json",
        workers=workers,
        verbose=False,
    )


def load(tmp_path: Path, study_name: str, storage: str | None = None) -> optuna.Study:
    storage = storage or f"sqlite:///{tmp_path / 'optuna.db'}"
    return optuna.load_study(study_name=study_name, storage=storage)


# --- validation: a clear ConfigError before any training -------------------------------------


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            {"learning_rate": {"low": 1e-3, "high": 1e-3}},
            r"search.learning_rate is an empty range",
        ),
        ({"learning_rate": {"low": 1e-2, "high": 1e-4}}, r"inverted .*swap low and high"),
        ({"momentum": {"low": 0.1, "high": 0.9}}, r"unknown hyperparameter 'momentum'.*valid"),
        ({"architecture.latnt_dim": {"choices": [8]}}, r"architecture.latnt_dim.*latent_dim"),
        ({"learning_rate": {"low": 0.0, "high": 1e-2, "log": True}}, r"log range needs low > 0"),
        ({"learning_rate": {"low": 1e-4}}, r"missing \['high'\]"),
        ({"batch_size": {"choices": []}}, r"non-empty list"),
        ({"batch_size": {"low": 16.5, "high": 64}}, r"batch_size is an integer"),
        ({"architecture.latent_dim": {"low": 0, "high": 8}}, r"latent_dim.*0 is not allowed"),
        ({"objective.loss": {"choices": ["mse", "hinge"]}}, r"objective.loss.*'hinge'"),
        ({"learning_rate": 0.001}, r"must be a range"),
    ],
)
def test_bad_search_space_is_a_clear_error(search, message):
    with pytest.raises(ConfigError, match=message) as raised:
        plan(search=search)
    assert "variants.dense.search." in str(raised.value)


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"n_trials": 0}, r"tune.n_trials must be at least 1"),
        ({"n_trials": -2}, r"tune.n_trials must be at least 1"),
        ({"epochs": 0}, r"tune.epochs"),
        ({"train_subset": -1}, r"tune.train_subset"),
        ({"n_trial": 3}, r"unknown key\(s\) \['n_trial'\]"),
    ],
)
def test_bad_tune_section_is_a_clear_error(tune, message):
    with pytest.raises(ConfigError, match=message):
        plan(tune=tune)


def test_valid_space_types_follow_the_config():
    search = {
        "learning_rate": {"low": "1e-4", "high": 1e-2, "log": True},  # YAML's string 1e-4
        "architecture.latent_dim": {"low": 4, "high": 16},
        "objective.loss": {"choices": ["mse", "bce"]},
    }
    space = {d.name: d for d in plan(search=search).space}
    assert space["learning_rate"].kind == "float" and space["learning_rate"].low == 1e-4
    assert space["architecture.latent_dim"].kind == "int"
    assert space["objective.loss"].choices == ("mse", "bce")


def test_bad_input_creates_no_trial_and_no_run(tmp_path, tracking_uri, processed_dir, synthetic):
    for search, tune in [
        ({"learning_rate": {"low": 1e-2, "high": 1e-2}}, {}),
        ({"learning_rate": {"low": 1e-2, "high": 1e-3}}, {}),
        ({"dropout": {"low": 0.1, "high": 0.5}}, {}),
        (None, {"n_trials": 0}),
    ]:
        with pytest.raises(ConfigError):
            run_tune(tmp_path, processed_dir, search=search, **tune)
    assert not (tmp_path / "optuna.db").exists()
    assert not (tmp_path / "tuning").exists()
    assert runs_of(tracking_uri, "search") == [] and runs_of(tracking_uri, "trial") == []


def test_study_name_tracks_what_trial_values_depend_on():
    base = plan()
    assert base.study_name.startswith("dense-") and len(base.study_name) == len("dense-") + 10
    assert plan(tune={"n_trials": 30, "timeout_s": 60}).study_name == base.study_name
    assert plan(n_trials=50).study_name == base.study_name
    assert plan(tune={"epochs": 3}).study_name != base.study_name
    assert plan(tune={"train_subset": 500}).study_name != base.study_name
    assert plan(checksum="d" * 64).study_name != base.study_name
    narrower = {**DENSE["search"], "batch_size": {"choices": [32]}}
    assert plan(search=narrower).study_name != base.study_name


def test_storage_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tuning.storage_url("postgresql://u:pw@db/optuna") == "postgresql://u:pw@db/optuna"
    assert tuning.redact("postgresql://u:pw@db/optuna") == "postgresql://u:***@db/optuna"
    url = tuning.storage_url("tuning/optuna.db")
    assert url == f"sqlite:///{tmp_path.resolve() / 'tuning' / 'optuna.db'}"
    assert (tmp_path / "tuning").is_dir()


# --- pruning ----------------------------------------------------------------------------------


def test_clearly_worse_trial_is_pruned_after_one_epoch(digits_small):
    search_plan = plan(
        search={"learning_rate": {"low": 1e-8, "high": 1e-1, "log": True}},
        tune={"epochs": 3},
    )
    study = optuna.create_study(
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    for learning_rate in (1e-2, 1e-2, 1e-7, 2e-2):
        study.enqueue_trial({"learning_rate": learning_rate})
    objective = tuning.make_objective(
        search_plan, digits_small["x_train"], digits_small["x_val"], verbose=False
    )
    study.optimize(objective, n_trials=4)
    states = [trial.state for trial in study.trials]
    complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert states == [complete, complete, pruned, complete]
    bad = study.trials[2]
    assert list(bad.intermediate_values) == [0]  # stopped after its first epoch
    assert bad.intermediate_values[0] > max(t.intermediate_values[0] for t in study.trials[:2])
    assert all(len(study.trials[i].intermediate_values) == 3 for i in (0, 1, 3))


def test_pruning_callback_skips_nan_so_the_trial_fails_not_prunes():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=0))
    study.add_trial(
        optuna.trial.create_trial(
            value=0.1, intermediate_values={0: 0.1}, params={}, distributions={}
        )
    )
    trial = study.ask()
    callback = tuning.PruningCallback(trial)
    callback.on_epoch_end(0, {"val_loss": float("nan")})
    assert study.trials[-1].intermediate_values == {}
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end(0, {"val_loss": 5.0})


# --- failures, resume, best.json --------------------------------------------------------------


def test_failing_and_nan_trials_fail_alone(tmp_path, tracking_uri, processed_dir, synthetic):
    search_plan = plan(tune={"n_trials": 4, "storage": str(tmp_path / "optuna.db")})
    url = tuning.storage_url(search_plan.settings.storage)
    study = tuning.open_study(search_plan, url)  # enqueues the defaults as trial 0
    study.enqueue_trial({"learning_rate": FAIL_LR, "batch_size": 32})
    study.enqueue_trial({"learning_rate": NAN_LR, "batch_size": 32})
    settings = search_plan.settings
    x_train, x_val = data.load_subsets(
        processed_dir, settings.train_subset, settings.val_subset, search_plan.seed
    )
    outcome = tuning.run_search(search_plan, x_train, x_val, url, verbose=False)

    study = load(tmp_path, search_plan.study_name)
    states = [trial.state.name for trial in study.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert "TrainingDivergedError" in study.trials[1].user_attrs["failure"]
    assert outcome["counts"] == {"complete": 2, "pruned": 0, "failed": 2}
    trial_runs = {r.data.tags["optuna.trial_number"]: r for r in runs_of(tracking_uri, "trial")}
    assert set(trial_runs) == {"0", "1", "2", "3"}
    assert [trial_runs[n].data.tags["state"] for n in "0123"] == [
        "complete", "failed", "failed", "complete",
    ]  # fmt: skip
    assert [trial_runs[n].info.status for n in "0123"] == [
        "FINISHED", "FAILED", "FAILED", "FINISHED",
    ]  # fmt: skip

    payload = tuning.best_payload(search_plan, url)
    assert payload["source"] == "study" and payload["n_trials"] == 4
    assert payload["value"] == min(t.value for t in study.trials if t.value is not None)


def test_no_completed_trial_falls_back_to_defaults(
    tmp_path, tracking_uri, processed_dir, monkeypatch
):
    def diverge(*args, **kwargs):
        raise loop.TrainingDivergedError("always NaN")

    monkeypatch.setattr(loop, "train_variant", diverge)
    payload = run_tune(tmp_path, processed_dir, n_trials=2)
    assert payload["source"] == "defaults" and payload["value"] is None
    assert payload["params"] == {"learning_rate": 1e-3, "batch_size": 32}
    assert payload["counts"] == {"complete": 0, "pruned": 0, "failed": 2}
    assert set(payload["failures"]) == {"0", "1"} and "always NaN" in payload["failures"]["0"]
    on_disk = json.loads((tmp_path / "tuning" / "dense" / "best.json").read_text())
    assert on_disk["source"] == "defaults" and "no trial completed" in on_disk["note"]


def test_study_resumes_to_n_trials_without_repeating(
    tmp_path, tracking_uri, processed_dir, synthetic
):
    first = run_tune(tmp_path, processed_dir, n_trials=2)
    study = load(tmp_path, first["study_name"])
    early = [(t.number, t.params) for t in study.trials]
    assert len(early) == 2 and early[0][1] == {"learning_rate": 1e-3, "batch_size": 32}

    second = run_tune(tmp_path, processed_dir, n_trials=5)
    assert second["study_name"] == first["study_name"] and second["n_trials"] == 5
    study = load(tmp_path, first["study_name"])
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert [(t.number, t.params) for t in study.trials[:2]] == early  # kept, not re-run
    learning_rates = [t.params["learning_rate"] for t in study.trials]
    assert len(set(learning_rates)) == 5  # a resumed sampler draws new values
    assert all(t.state.is_finished() for t in study.trials)

    best_file = tmp_path / "tuning" / "dense" / "best.json"
    before = best_file.read_bytes()
    third = run_tune(tmp_path, processed_dir, n_trials=5)  # already full: nothing to run
    assert best_file.read_bytes() == before  # byte-identical, so DVC does not retrain
    assert len(load(tmp_path, first["study_name"]).trials) == 5
    assert third["n_trials"] == 5 and third["params"] == second["params"]
    assert third["value"] == min(t.value for t in study.trials if t.value is not None)
    assert third["params"]["learning_rate"] == study.best_trial.params["learning_rate"]
    # one parent run per call that ran trials, one nested run per trial
    parents = runs_of(tracking_uri, "search")
    assert len(parents) == 2
    ran = [
        sum(int(p.data.metrics[f"trials_{state}"]) for state in ("complete", "pruned", "failed"))
        for p in parents
    ]
    assert sorted(ran) == [2, 3]
    children = runs_of(tracking_uri, "trial")
    assert len(children) == 5
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {
        p.info.run_id for p in parents
    }
    study_attrs = load(tmp_path, first["study_name"]).user_attrs
    assert study_attrs["variant"] == "dense" and len(study_attrs["data_checksum"]) == 64
    assert study_attrs["rerun_command"].startswith("python pipeline/tune.py --variants dense")


def test_trial_runs_hold_params_and_epoch_curves(tmp_path, tracking_uri, processed_dir, synthetic):
    run_tune(tmp_path, processed_dir, n_trials=1, epochs=3)
    (run,) = runs_of(tracking_uri, "trial")
    assert run.data.params["learning_rate"] == "0.001" and run.data.params["batch_size"] == "32"
    assert run.data.tags["optuna.trial_number"] == "0" and run.data.tags["variant"] == "dense"
    assert run.data.tags["optuna.study_name"].startswith("dense-")
    curve = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in curve] == [0, 1, 2]
    assert [m.value for m in curve] == pytest.approx([0.1, 0.1, 0.1])
    (parent,) = runs_of(tracking_uri, "search")
    assert parent.info.run_name == "dense-search" and parent.data.tags["dvc_stage"] == "tune@dense"


# --- two worker processes on one study --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_exactly(
    tmp_path, tracking_uri, processed_dir, backend, request
):
    storage = str(tmp_path / "optuna.db")
    seed = 0
    if backend == "postgresql":
        storage = request.getfixturevalue("postgres_url")
        seed = int.from_bytes(os.urandom(4), "little")  # a study of its own on the shared server
    payload = run_tune(
        tmp_path, processed_dir, workers=2, seed=seed, n_trials=5, epochs=1, val_subset=64,
        storage=storage,
    )  # fmt: skip
    assert payload["storage"] == tuning.redact(storage)  # as configured, password hidden
    study = load(tmp_path, payload["study_name"], tuning.storage_url(storage))
    trials = study.trials
    assert len(trials) == 5 and payload["n_trials"] == 5
    assert all(t.state.is_finished() for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 5

    parents = runs_of(tracking_uri, "search")
    children = runs_of(tracking_uri, "trial")
    assert len(parents) == 2 and {p.data.tags["worker"] for p in parents} == {"0", "1"}
    assert len({p.info.run_id for p in parents}) == 2
    assert len(children) == 5 and len({c.info.run_id for c in children}) == 5
    by_run = {c.info.run_id: c for c in children}
    for trial in trials:
        run = by_run[trial.user_attrs["mlflow_run_id"]]  # each trial has its own run
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["mlflow.parentRunId"] == trial.user_attrs["mlflow_parent_run_id"]
    per_parent = sorted(
        sum(c.data.tags["mlflow.parentRunId"] == p.info.run_id for c in children) for p in parents
    )
    assert per_parent == [2, 3]
    assert json.loads((tmp_path / "tuning" / "dense" / "best.json").read_text())["n_trials"] == 5


def test_cli_rejects_bad_input_before_reading_data(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("tune_stage", REPO / "pipeline" / "tune.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    params = config.load_params(REPO / "params.yaml")
    monkeypatch.chdir(tmp_path)  # no data/processed here: validation must come first
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for argv, message in [
        (["--variants", "dense,nope"], r"unknown variant\(s\) \['nope'\]"),
        (["--variants", "all", "--trials", "0"], r"tune.n_trials must be at least 1"),
        (["--variant", "dense", "--workers", "0"], r"--workers must be at least 1"),
    ]:
        with pytest.raises(config.ConfigError, match=message):
            stage.main(argv)
    params["variants"]["conv"]["search"]["learning_rate"] = {"low": 1e-2, "high": 1e-3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        config.ConfigError, match=r"variants.conv.search.learning_rate is inverted"
    ):
        stage.main(["--variants", "all"])
    assert not (tmp_path / "tuning").exists()
