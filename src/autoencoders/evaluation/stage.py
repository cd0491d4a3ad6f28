"""The evaluate@V stage's work: test-split metrics and figures of one trained variant.

``evaluate_variant("conv", model_dir="models/conv", processed_dir="data/processed",
metrics_path="metrics/conv.json", plots_dir="plots/conv", seed=42, settings=EvaluateParams())``
loads the model and the splits, computes every metric (``evaluate_autoencoder``; an IDEC model's
clusters are its own assignments), adds the training facts from ``training.json``, writes the
figures and the metrics file atomically and logs both into the variant's finished MLflow run
(``run.json``). ``pipeline/evaluate.py`` parses the arguments and calls it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import data, fileio, tracking
from autoencoders.evaluation import figures as variant_figures
from autoencoders.evaluation import latent
from autoencoders.evaluation.outputs import TEST_METRIC_KEYS, EvaluateParams, evaluate_autoencoder

# The figures printed in the stage's last line, when the variant has them.
PRINTED_METRICS = ("mse", "pca_mse", "ssim", "cluster_accuracy", "probe_accuracy", "kl")


def evaluate_variant(
    variant: str,
    *,
    model_dir: str | Path,
    processed_dir: str | Path,
    metrics_path: str | Path,
    plots_dir: str | Path,
    seed: int,
    settings: EvaluateParams,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on the test split; write ``metrics_path`` and ``plots_dir``.

    Returns the metrics written. The test split is used here and nowhere before; the training
    split fits the PCA baseline and the linear probe. Everything it reads (the MLflow run of
    ``run.json``, the model, the splits, ``history.json``) is looked up before the first output
    is replaced: a failed lookup leaves the previous metrics and figures as they were.
    """
    model_dir, metrics_path, plots_dir = Path(model_dir), Path(metrics_path), Path(plots_dir)
    started = time.monotonic()
    run_ref = model_dir / "run.json"
    run_id = tracking.logged_run(run_ref)  # first: it needs no TensorFlow
    from autoencoders import models  # TensorFlow loads here, after the cheap checks

    model = models.load_autoencoder(model_dir)
    x_train, y_train = _train_split(processed_dir)
    x_test, y_test = data.load_split(processed_dir, "test")
    history_path = model_dir / "history.json"
    history = fileio.read_json(history_path) if history_path.exists() else None
    print(
        f"[evaluate] {variant}: code {model.code_shape} ({model.latent_dim}), "
        f"{len(x_train)} train / {len(x_test)} test images"
    )
    metrics, outputs = _test_metrics(model, x_train, y_train, x_test, y_test, seed, settings)
    _add_training_facts(metrics, model, model_dir)
    with fileio.atomic_directory(plots_dir) as staging:
        figures = variant_figures.plot_variant(
            directory=staging,
            model=model,
            outputs=outputs,
            x_test=x_test,
            y_test=y_test,
            history=history,
            variant=variant,
            n_examples=settings.n_examples,
            seed=seed,
            noise_std=metrics.get("noise_std", 0.0),
        )
    fileio.write_json(metrics_path, metrics)
    logged = _log_to_run(run_id, run_ref, metrics, metrics_path, plots_dir)

    summary = ", ".join(f"{key} {metrics[key]:.4g}" for key in PRINTED_METRICS if key in metrics)
    print(f"[evaluate] {variant}: {summary}")
    print(
        f"[evaluate] {variant}: wrote {metrics_path} and {plots_dir}/ ({', '.join(figures)}) "
        f"in {time.monotonic() - started:.1f} s; {logged}"
    )
    return metrics


def _train_split(processed_dir: str | Path) -> tuple[Any, Any]:
    """(images, labels) of the training split: the npz array, or a Split of shards that the
    codes and the PCA baseline read a batch at a time (the test split is held whole)."""
    split = data.open_split(processed_dir, "train")
    return (split.array if split.in_memory else split), split.labels


def _test_metrics(
    model: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    seed: int,
    settings: EvaluateParams,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every test-split metric and the outputs behind them; IDEC's clusters are its own."""
    metrics, outputs = evaluate_autoencoder(
        model,
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        seed=seed,
        silhouette_sample=settings.silhouette_sample,
        probe_max_iter=settings.probe_max_iter,
        kmeans_n_init=settings.kmeans_n_init,
        # Shards: batches sized by their pixels (data.splits.stream_batch); npz: as before.
        **(
            {}
            if isinstance(x_train, np.ndarray)
            else {"batch_size": x_train.codes_batch, "chunk_rows": x_train.codes_batch}
        ),
    )
    if model.owns_clusters:  # IDEC: its clusters are its own assignments, not k-means's
        metrics = latent.own_assignment_metrics(model, metrics, x_test, y_test)
    return metrics, outputs


def _add_training_facts(metrics: dict[str, Any], model: Any, model_dir: Path) -> None:
    """Parameter count and epochs run, from training.json (or the model)."""
    from autoencoders import models

    training_path = model_dir / "training.json"
    training = fileio.read_json(training_path) if training_path.exists() else {}
    metrics["parameter_count"] = int(
        training.get("parameter_count") or models.parameter_count(model)
    )
    for key in ("epochs_run",):  # seconds differ per machine: reports/timings.json holds them
        if training.get(key) is not None:
            metrics[key] = training[key]


def _log_to_run(
    run_id: str | None,
    run_ref: Path,
    metrics: dict[str, Any],
    metrics_path: Path,
    plots_dir: Path,
) -> str:
    """Log the test metrics and figures into the finished run ``run_id`` (the one ``run_ref``
    names, looked up before anything was written); say what."""
    if run_id is None:
        return f"no {run_ref}: nothing logged to MLflow"
    import mlflow

    mlflow.log_metrics(
        {
            f"test_{key}": float(metrics[key])
            for key in TEST_METRIC_KEYS
            if metrics.get(key) is not None
        },
        run_id=run_id,
    )
    mlflow.log_artifacts(str(plots_dir), artifact_path="evaluation/plots", run_id=run_id)
    tracking.log_file_as(metrics_path, "metrics.json", artifact_path="evaluation", run_id=run_id)
    return f"logged to MLflow run in {run_ref}"
