"""The catalog of expected failures: each bad input ends its stage or command in one line.

Every case copies a small real project (digits data fetched and preprocessed, a saved untrained
``dense`` model, its best.json, its MLflow run in a SQLite store, its ONNX export and previous
metrics and figures), breaks one thing, runs the
real stage ``main`` (or CLI) behind the same boundary the scripts use (``errors.cli``, which
``timing.run_stage`` calls), and asserts: exit code != 0, exactly one line of error text naming
the file or key (and the fix where there is one), no traceback, and every file of the project
byte-identical to before. A few cases run the scripts as real subprocesses, so what reaches the
terminal is checked too.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from autoencoders import errors, tracking

REPO = Path(__file__).resolve().parents[1]
VARIANT = "dense"
RUN_REF = f"models/{VARIANT}/run.json"
MISSING_RUN = "0123456789abcdef0123456789abcdef"  # a run id no store of these tests holds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOSED = f"127.0.0.1:{_free_port()}"  # nothing listens there


def _stage(name: str) -> Any:
    path = REPO / "pipeline" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stage_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project after a tiny `dvc repro`: data, a dense model with its MLflow run (mlflow.db),
    best.json, export, metrics and figures."""
    import mlflow

    from autoencoders import data, export, fileio, models, tracking

    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = "digits"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data.fetch("digits", root / "data" / "raw")
    data.preprocess(root / "data" / "raw", root / "data" / "processed", val_fraction=0.1, seed=0)
    config = models.VariantConfig.from_params(VARIANT, params["variants"][VARIANT])
    model = models.build_autoencoder(config, (8, 8, 1), seed=0)
    models.save_autoencoder(model, root / "models" / VARIANT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        experiment_id = tracking.setup()
        with mlflow.start_run() as run:  # the training run export, evaluate and cluster log into
            pass
        tracking.write_run_ref(root / RUN_REF, run.info.run_id, experiment_id)
    fileio.write_json(
        root / "tuning" / VARIANT / "best.json",
        {"params": {"learning_rate": 1e-3, "batch_size": 128}, "source": "study"},
    )
    x_test, _ = data.load_split(root / "data" / "processed", "test")
    export.export_models(
        model.encoder,
        model.decoder,
        root / "exports" / VARIANT,
        variant=VARIANT,
        opset=17,
        tolerance=1e-4,
        parity_images=x_test[:4],
        parity_batch_sizes=(1, 4),
    )
    fileio.write_json(root / "metrics" / f"{VARIANT}.json", {"mse": 0.05, "latent_dim": 32})
    fileio.write_json(root / "metrics" / "export" / f"{VARIANT}.json", {"encoder": {}})
    (root / "plots" / VARIANT).mkdir(parents=True)
    (root / "plots" / VARIANT / "reconstructions.png").write_bytes(b"\x89PNG previous figure")
    fileio.write_json(root / "metrics" / "cluster" / f"{VARIANT}.json", {"head_accuracy": 0.5})
    (root / "plots" / "cluster" / VARIANT).mkdir(parents=True)
    (root / "plots" / "cluster" / VARIANT / "head.png").write_bytes(b"\x89PNG previous head")
    np.save(root / "images.npy", x_test[:5])
    np.save(root / "codes.npy", np.zeros((5, 32), np.float32))
    (root / "previous.npy").write_bytes(b"a previous output")
    return root


# --- mutations: each breaks one thing in the copied project ----------------------------------


def params(**changes: Any) -> Callable[[Path], None]:
    """Set dotted params.yaml keys (``data__val_fraction`` is ``data.val_fraction``)."""

    def mutate(root: Path) -> None:
        path = root / "params.yaml"
        values = yaml.safe_load(path.read_text())
        for dotted, value in changes.items():
            node = values
            *parents, leaf = dotted.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        path.write_text(yaml.safe_dump(values, sort_keys=False))

    return mutate


def write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return mutate


def truncate(relative: str, keep: float = 0.5) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relative
        payload = path.read_bytes()
        path.write_bytes(payload[: int(len(payload) * keep)])

    return mutate


def remove(relative: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return mutate


def npz(relative: str, **arrays: np.ndarray) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        np.savez(root / relative, **arrays)

    return mutate


def both(*mutations: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for mutation in mutations:
            mutation(root)

    return mutate


def npz_source(**arrays: np.ndarray) -> Callable[[Path], None]:
    return both(params(data__source="npz", data__npz_path="mine.npz"), npz("mine.npz", **arrays))


def missing_run() -> Callable[[Path], None]:
    """run.json names a run the tracking store does not hold (copied outputs, another store)."""
    return write(RUN_REF, json.dumps({"run_id": MISSING_RUN, "experiment_id": "1"}))


BEST = f"tuning/{VARIANT}/best.json"
WEIGHTS = f"models/{VARIANT}/model.weights.h5"
RNG = np.random.default_rng(0)
IMAGES = RNG.random((20, 8, 8), dtype=np.float32)

# (id, stage or CLI, arguments, mutation, texts the one line must hold)
CASES = [
    # params.yaml: syntax, types, ranges, unknown keys; every layer checked where it is written
    ("yaml_invalid", "preprocess", [], write("params.yaml", "data: [unclosed\nseed: 1\n"),
     ["params.yaml is not valid YAML at line", "fix the file"]),
    ("yaml_not_mapping", "preprocess", [], write("params.yaml", "- a\n- b\n"),
     ["params.yaml must hold a mapping"]),
    ("yaml_tab_indent", "train", ["--variant", VARIANT],
     write("params.yaml", "train:\n\tepochs: 1\n"),
     ["params.yaml is not valid YAML", "line 2"]),
    ("params_missing", "preprocess", [], remove("params.yaml"), ["params.yaml not found"]),
    ("val_fraction_text", "preprocess", [], params(data__val_fraction="ten percent"),
     ["data.val_fraction must be a number", "ten percent"]),
    ("val_fraction_out_of_range", "preprocess", [], params(data__val_fraction=1.5),
     ["data.val_fraction must lie strictly between 0 and 1"]),
    ("seed_text", "preprocess", [], params(seed="forty-two"), ["seed must be an integer"]),
    ("data_unknown_key", "preprocess", [], params(data__val_fracton=0.2),
     ["data: unknown key(s) ['val_fracton']", "valid keys"]),
    ("data_source_unknown", "fetch", [], params(data__source="cifar"),
     ["unknown data.source 'cifar'", "mnist5k"]),
    ("npz_path_unset", "fetch", [], params(data__source="npz", data__npz_path=None),
     ["data.npz_path is not set"]),
    ("learning_rate_negative_under_best", "train", ["--variant", VARIANT],
     params(train__learning_rate=-1), ["train.learning_rate must be > 0"]),
    ("batch_size_text_under_best", "train", ["--variant", VARIANT],
     params(train__batch_size="big"), ["train.batch_size must be an integer", "big"]),
    ("variant_epochs_zero", "train", ["--variant", VARIANT],
     params(variants__dense__train={"epochs": 0}), ["variants.dense.train.epochs must be > 0"]),
    ("variant_train_unknown_key", "train", ["--variant", VARIANT],
     params(variants__dense__train={"epoch": 3}),
     ["variants.dense.train", "unknown key(s) ['epoch']"]),
    ("train_unknown_variant", "train", ["--variant", "nope"], None,
     ["unknown variant 'nope'", "dense"]),
    ("architecture_unknown", "train", ["--variant", VARIANT],
     params(variants__dense__architecture={"name": "transformer"}),
     ["unknown architecture 'transformer'", "conv"]),
    ("objective_beta_text", "train", ["--variant", VARIANT],
     params(variants__dense__objective={"name": "variational", "beta": "lots"}),
     ["objective.beta", "lots"]),
    ("export_tolerance_negative", "export", ["--variant", VARIANT], params(export__tolerance=-1),
     ["export.tolerance must be >= 0"]),
    ("export_opset_old", "export", ["--variant", VARIANT], params(export__opset=9),
     ["export.opset must be in 13..18"]),
    ("anomaly_unknown_key", "anomaly", ["--variant", VARIANT], params(anomaly__thresh=0.5),
     ["anomaly: unknown key(s) ['thresh']", "valid keys"]),
    ("anomaly_rule_unknown", "anomaly", ["--variant", VARIANT], params(anomaly__threshold="f1"),
     ["anomaly.threshold 'f1' is unknown", "f1_optimal"]),
    ("anomaly_f1_without_normal_classes", "anomaly", ["--variant", VARIANT],
     params(anomaly__threshold="f1_optimal"),
     ["f1_optimal needs labelled validation anomalies", "data.normal_classes"]),
    ("normal_classes_lacking", "preprocess", [], params(data__normal_classes=[0, 42]),
     ["data.normal_classes names class(es) [42] that the data lacks"]),
    ("normal_classes_text", "preprocess", [], params(data__normal_classes="zero"),
     ["data.normal_classes must be a list"]),
    ("evaluate_sample_text", "evaluate", ["--variant", VARIANT],
     params(evaluate__silhouette_sample="many"),
     ["evaluate.silhouette_sample must be an integer"]),
    ("cluster_min_dist_text", "cluster", ["--pixels"], params(cluster__min_dist="far"),
     ["cluster.min_dist"]),
    ("cluster_seeds_text", "benchmarks",
     ["cluster-seeds", "--variant", VARIANT, "--seeds", "0,one"], None,
     ["--seeds must be comma-separated integers", "0,one"]),
    ("report_kmeans_text", "report", [], params(evaluate__kmeans_n_init="ten"),
     ["evaluate.kmeans_n_init must be an integer"]),
    ("tune_trials_zero", "tune", ["--variant", VARIANT], params(tune__n_trials=0),
     ["tune.n_trials must be at least 1"]),
    ("tune_unknown_variants", "tune", ["--variants", "dense,nope"], None,
     ["unknown variant(s) ['nope']"]),
    ("tune_workers_zero", "tune", ["--variant", VARIANT, "--workers", "0"], None,
     ["--workers must be at least 1"]),
    ("search_inverted", "tune", ["--variant", VARIANT],
     params(variants__dense__search={"learning_rate": {"low": 1e-2, "high": 1e-3}}),
     ["variants.dense.search.learning_rate is inverted"]),
    # data files: the user's npz and the fetched raw files
    ("npz_file_missing", "fetch", [], params(data__source="npz", data__npz_path="nowhere.npz"),
     ["data.npz_path nowhere.npz does not exist"]),
    ("npz_not_a_zip", "fetch", [],
     both(params(data__source="npz", data__npz_path="mine.npz"), write("mine.npz", b"not a zip")),
     ["mine.npz is not a readable .npz file"]),
    ("npz_flat_images", "fetch", [], npz_source(x=RNG.random(20)), ["shape (20,)"]),
    ("npz_nan", "fetch", [], npz_source(x=np.full((20, 8, 8), np.nan, np.float32)), ["NaN"]),
    ("npz_label_count", "fetch", [], npz_source(x=IMAGES, y=np.zeros(3, np.int64)),
     ["3 labels for 20 images"]),
    ("npz_no_x", "fetch", [], npz_source(images=IMAGES), ["'x'"]),
    ("raw_dataset_truncated", "preprocess", [], truncate("data/raw/dataset.npz"),
     ["data/raw/dataset.npz is unreadable", "dvc repro --force fetch"]),
    ("raw_source_json_corrupt", "preprocess", [], write("data/raw/source.json", '{"source": '),
     ["data/raw/source.json is unreadable", "dvc repro"]),
    ("raw_missing", "preprocess", [], remove("data/raw"), ["data/raw/source.json not found"]),
    # intermediate files: best.json, processed splits, the model, the export, metrics
    ("best_truncated", "train", ["--variant", VARIANT], truncate(BEST),
     [f"{BEST} is unreadable", "tune@"]),
    ("best_not_mapping", "train", ["--variant", VARIANT], write(BEST, "[1, 2]\n"),
     [f"{BEST} is unreadable", "tune@<variant>"]),
    ("best_learning_rate_text", "train", ["--variant", VARIANT],
     write(BEST, json.dumps({"params": {"learning_rate": "fast"}})),
     [f"{BEST} params.learning_rate must be a number", "fast"]),
    ("best_learning_rate_negative", "train", ["--variant", VARIANT],
     write(BEST, json.dumps({"params": {"learning_rate": -0.1}})),
     [f"{BEST} params.learning_rate must be > 0", "re-run its search"]),
    ("best_unknown_parameter", "train", ["--variant", VARIANT],
     write(BEST, json.dumps({"params": {"momentum": 0.9}})),
     ["best.json sets unknown hyperparameter(s) ['momentum']"]),
    ("processed_split_truncated", "train", ["--variant", VARIANT],
     truncate("data/processed/train.npz"),
     ["data/processed/train.npz is unreadable", "dvc repro --force preprocess"]),
    ("card_corrupt", "train", ["--variant", VARIANT], write("data/processed/card.json", "{"),
     ["data/processed/card.json is unreadable"]),
    ("test_split_missing", "evaluate", ["--variant", VARIANT], remove("data/processed/test.npz"),
     ["data/processed/test.npz not found", "preprocess"]),
    ("weights_truncated_evaluate", "evaluate", ["--variant", VARIANT], truncate(WEIGHTS),
     [f"{WEIGHTS} is unreadable", "train@<variant>"]),
    ("weights_truncated_export", "export", ["--variant", VARIANT], truncate(WEIGHTS),
     [f"{WEIGHTS} is unreadable", "train@<variant>"]),
    ("model_config_corrupt", "evaluate", ["--variant", VARIANT],
     write(f"models/{VARIANT}/config.json", "[]"),
     [f"models/{VARIANT}/config.json is unreadable"]),
    ("model_missing", "export", ["--variant", VARIANT], remove(f"models/{VARIANT}"),
     [f"models/{VARIANT}", "train the variant first"]),
    ("encoder_onnx_truncated", "cluster", ["--variant", VARIANT],
     truncate(f"exports/{VARIANT}/encoder.onnx"), [f"exports/{VARIANT}/encoder.onnx"]),
    # the MLflow run of run.json, looked up before export, evaluate and cluster write anything
    ("run_missing_export", "export", ["--variant", VARIANT], missing_run(),
     [f"MLflow run {MISSING_RUN} from {RUN_REF} is not in sqlite:", "re-run training",
      "MLFLOW_TRACKING_URI"]),
    ("run_missing_evaluate", "evaluate", ["--variant", VARIANT], missing_run(),
     [f"MLflow run {MISSING_RUN} from {RUN_REF}", "re-run training"]),
    ("run_missing_cluster", "cluster", ["--variant", VARIANT], missing_run(),
     [f"MLflow run {MISSING_RUN} from {RUN_REF}", "re-run training"]),
    ("run_store_deleted_export", "export", ["--variant", VARIANT], remove("mlflow.db"),
     [f"from {RUN_REF} is not in sqlite:", "mlflow.db", "re-run training"]),
    ("run_ref_without_id_evaluate", "evaluate", ["--variant", VARIANT], write(RUN_REF, "{}"),
     [f"{RUN_REF} is unreadable (no run_id)", "re-run training"]),
    ("run_ref_corrupt_cluster", "cluster", ["--variant", VARIANT], truncate(RUN_REF),
     [f"{RUN_REF} is unreadable", "re-run training"]),
    ("run_ref_missing_export", "export", ["--variant", VARIANT], remove(RUN_REF),
     [f"{RUN_REF} not found", "train the variant first"]),
    ("metrics_corrupt_report", "report", [], write(f"metrics/{VARIANT}.json", "{'mse': 1}"),
     [f"metrics/{VARIANT}.json is unreadable"]),
    # storage URLs: the Optuna storage and the tracking server
    ("storage_unreachable", "tune", ["--variant", VARIANT],
     params(tune__storage=f"postgresql+psycopg://optuna:s3cret@{CLOSED}/studies"),
     [f"optuna:***@{CLOSED}/studies", "start PostgreSQL", "tune.storage"]),
    ("storage_sqlite_missing_folder", "tune", ["--variant", VARIANT],
     params(tune__storage="sqlite:////nonexistent-folder/optuna.db"),
     ["sqlite:////nonexistent-folder/optuna.db cannot be opened", "fix tune.storage"]),
    ("storage_unknown_scheme", "tune", ["--variant", VARIANT],
     params(tune__storage="nosuchdb://host/studies"),
     ["not a usable database URL", "tune.storage"]),
    ("storage_empty", "tune", ["--variant", VARIANT], params(tune__storage=" "),
     ["tune.storage"]),
    ("tracking_unreachable", "tune", ["--variant", VARIANT], None,
     [f"http://{CLOSED}", "make server", "MLFLOW_TRACKING_URI"]),
    ("remote_missing", "remote", ["pull", "--url", "no/remote"], None,
     ["no/remote does not exist", "DVC_REMOTE"]),
    # the command line for exported models: arrays and files handed to inference
    ("cli_input_missing", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input",
     "missing.npy", "--output", "previous.npy"], None, ["missing.npy not found"]),
    ("cli_input_wrong_size", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input",
     "bad.npy", "--output", "previous.npy"], None, ["(8, 8, 1)"]),
    ("cli_input_nan", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input", "nan.npy",
     "--output", "previous.npy"], None, ["NaN"]),
    ("cli_npz_key_missing", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input",
     "mine.npz", "--output", "previous.npy"], npz("mine.npz", images=IMAGES), ["use --key"]),
    ("cli_input_corrupt", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input",
     "bad.npz", "--output", "previous.npy"], write("bad.npz", b"PK\x03\x04 torn"),
     ["bad.npz is unreadable"]),
    ("cli_model_missing", "cli", ["encode", "--model", "exports/nope", "--input", "images.npy",
     "--output", "previous.npy"], None, ["exports/nope"]),
    ("cli_model_corrupt", "cli", ["decode", "--model", f"exports/{VARIANT}", "--input",
     "codes.npy", "--output", "previous.npy"], truncate(f"exports/{VARIANT}/decoder.onnx", 0.3),
     ["decoder.onnx"]),
    ("cli_code_size_wrong", "cli", ["decode", "--model", f"exports/{VARIANT}", "--input",
     "images.npy", "--output", "previous.npy"], None, ["code"]),
    ("cli_output_under_a_file", "cli", ["encode", "--model", f"exports/{VARIANT}", "--input",
     "images.npy", "--output", "previous.npy/codes.npy"], None, ["previous.npy"]),
]  # fmt: skip

EXTRA_MUTATIONS: dict[str, Callable[[Path], None]] = {
    "cli_input_wrong_size": lambda root: np.save(root / "bad.npy", RNG.random((3, 9, 9))),
    "cli_input_nan": lambda root: np.save(root / "nan.npy", np.full((3, 8, 8), np.nan)),
}


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _entry_point(kind: str) -> tuple[Callable[[list[str]], Any], str]:
    if kind == "cli":
        from autoencoders import __main__ as cli

        return cli.main, "python -m autoencoders"
    if kind == "remote":
        from autoencoders.services import remote

        return remote.main, "python -m autoencoders.services.remote"
    if kind == "benchmarks":
        from autoencoders.benchmarks import __main__ as benchmarks

        return benchmarks.main, "python -m autoencoders.benchmarks"
    return _stage(kind).main, kind


def run_in_process(kind: str, argv: list[str], capsys) -> tuple[int, str]:
    """Run an entry point behind ``errors.cli``, as its script does; (exit code, stderr)."""
    main, program = _entry_point(kind)
    try:
        code = errors.cli(functools.partial(main, argv), program=program)
    except SystemExit as exit_:
        code = exit_.code
    stderr = capsys.readouterr().err
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits with 1
        stderr, code = stderr + code + "\n", 1
    return int(code or 0), stderr


def assert_one_line(stderr: str, expected: list[str]) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("kind", "argv", "mutate", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_expected_failure_is_one_line_and_touches_nothing(
    request, project, tmp_path, monkeypatch, capsys, kind, argv, mutate, expected
):
    root = tmp_path / "project"
    shutil.copytree(project, root)
    tracking.relocate_artifacts(root / "mlflow.db")  # a moved workspace's first command's
    case = request.node.callspec.id
    for mutation in (mutate, EXTRA_MUTATIONS.get(case)):
        if mutation is not None:
            mutation(root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    if case == "tracking_unreachable":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{CLOSED}")
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    before = tree_hashes(root)

    code, stderr = run_in_process(kind, list(argv), capsys)

    assert code != 0, stderr
    assert_one_line(stderr, expected)
    assert "s3cret" not in stderr
    assert tree_hashes(root) == before, "a failed run changed the project's files"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "logged"),
    [("export", "export_encoder.max_abs_diff"), ("evaluate", "test_mse"),
     ("cluster", "test_head_accuracy")],
)  # fmt: skip
def test_the_unbroken_project_logs_into_its_finished_run(
    project, tmp_path, monkeypatch, capsys, kind, logged
):
    """The control of the run_* cases: with run.json's run in the store, the same stage passes
    the lookup, replaces its outputs and logs into that run by id (it stays finished)."""
    import mlflow

    from autoencoders import fileio

    root = tmp_path / "project"
    shutil.copytree(project, root)
    tracking.relocate_artifacts(root / "mlflow.db")  # a moved workspace's first command's
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    run_id = fileio.read_json(root / RUN_REF)["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    before = client.get_run(run_id).info
    outputs = {
        "export": f"exports/{VARIANT}/model_card.json",
        "evaluate": f"metrics/{VARIANT}.json",
        "cluster": f"metrics/cluster/{VARIANT}.json",
    }
    previous = (root / outputs[kind]).read_bytes()

    code, stderr = run_in_process(kind, ["--variant", VARIANT], capsys)

    assert code == 0, stderr
    assert (root / outputs[kind]).read_bytes() != previous
    after = client.get_run(run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == before.end_time
    assert np.isfinite(after.data.metrics[logged])


# --- real processes: what reaches the terminal -----------------------------------------------


def _subprocess(root: Path, command: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        **env,
    }
    environment.pop(errors.DEBUG_ENV, None)
    environment.update(env)
    return subprocess.run(
        command, cwd=root, env=environment, capture_output=True, text=True, timeout=300
    )


SUBPROCESS_CASES = [
    ("yaml_invalid", [sys.executable, str(REPO / "pipeline" / "preprocess.py")],
     write("params.yaml", "data: [unclosed\n"), ["preprocess: error:", "not valid YAML"]),
    ("val_fraction_text", [sys.executable, str(REPO / "pipeline" / "preprocess.py")],
     params(data__val_fraction="abc"), ["preprocess: error: data.val_fraction must be a number"]),
    ("npz_not_a_zip", [sys.executable, str(REPO / "pipeline" / "fetch.py")],
     both(params(data__source="npz", data__npz_path="mine.npz"), write("mine.npz", b"junk")),
     ["fetch: error:", "mine.npz"]),
    ("cli_input_corrupt", [sys.executable, "-m", "autoencoders", "encode", "--model",
     f"exports/{VARIANT}", "--input", "bad.npy", "--output", "previous.npy"],
     write("bad.npy", b"\x93NUMPY torn"), ["python -m autoencoders: error:", "bad.npy"]),
    ("remote_missing", [sys.executable, "-m", "autoencoders.services.remote", "pull", "--url",
     "no/remote"], None, ["does not exist", "DVC_REMOTE"]),
    ("run_missing_export", [sys.executable, str(REPO / "pipeline" / "export.py"), "--variant",
     VARIANT], missing_run(), [f"export@{VARIANT}: error: MLflow run {MISSING_RUN}",
     "re-run training"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "mutate", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in SUBPROCESS_CASES],
)
def test_terminal_shows_one_line_and_no_traceback(project, tmp_path, command, mutate, expected):
    root = tmp_path / "project"
    shutil.copytree(project, root)
    tracking.relocate_artifacts(root / "mlflow.db")  # a moved workspace's first command's
    if mutate is not None:
        mutate(root)
    before = tree_hashes(root)
    result = _subprocess(root, command)
    assert result.returncode != 0, result.stderr
    assert_one_line(result.stderr, expected)
    assert tree_hashes(root) == before


@pytest.mark.slow
def test_stage_with_tensorflow_shows_one_line_and_debug_shows_the_traceback(project, tmp_path):
    """train@dense on a truncated best.json: one line; with --debug the traceback."""
    root = tmp_path / "project"
    shutil.copytree(project, root)
    tracking.relocate_artifacts(root / "mlflow.db")  # a moved workspace's first command's
    truncate(BEST)(root)
    before = tree_hashes(root)
    command = [sys.executable, str(REPO / "pipeline" / "train.py"), "--variant", VARIANT]
    result = _subprocess(root, command)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors_shown = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors_shown == [result.stderr.strip().splitlines()[-1]]
    assert f"train@{VARIANT}: error: {BEST} is unreadable" in errors_shown[0]
    debug = _subprocess(root, [*command, "--debug"])
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "CorruptFileError" in debug.stderr
    assert tree_hashes(root) == before
