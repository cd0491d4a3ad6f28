"""DVC stage `evaluate@V`: test-split metrics and figures of one trained variant.

python pipeline/evaluate.py --variant conv     # what `dvc repro evaluate@conv` runs

Reads models/<V> and data/processed (the test split is used here and nowhere before; the
training split fits the PCA baseline and the linear probe), writes metrics/<V>.json and
plots/<V>/*.png atomically, and logs both into the variant's final MLflow run
(models/<V>/run.json; by its id, so the finished run stays closed) as ``test_<metric>`` metrics
and ``evaluation/`` artifacts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from autoencoders import config, data, evaluation, fileio, plots, timing, tracking

PROCESSED_DIR = "data/processed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="evaluate")
    settings = config.from_mapping(
        evaluation.EvaluateParams, config.section(params, "evaluate"), "evaluate"
    )
    seed = config.value(params, "seed", int)
    variant = args.variant
    model_dir = Path("models") / variant
    metrics_path = Path("metrics") / f"{variant}.json"
    plots_dir = Path("plots") / variant
    started = time.monotonic()

    from autoencoders import models  # TensorFlow loads here, after the cheap checks

    model = models.load_autoencoder(model_dir)
    x_train, y_train = data.load_split(PROCESSED_DIR, "train")
    x_test, y_test = data.load_split(PROCESSED_DIR, "test")
    print(
        f"[evaluate] {variant}: code {model.code_shape} ({model.latent_dim}), "
        f"{len(x_train)} train / {len(x_test)} test images"
    )
    metrics, outputs = evaluation.evaluate_autoencoder(
        model,
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        seed=seed,
        silhouette_sample=settings.silhouette_sample,
        probe_max_iter=settings.probe_max_iter,
        kmeans_n_init=settings.kmeans_n_init,
    )
    if hasattr(model, "assign"):  # IDEC: its clusters are its own assignments, not k-means's
        from autoencoders import clustering

        metrics = clustering.own_assignment_metrics(model, metrics, x_test, y_test)
    training_path = model_dir / "training.json"
    training = fileio.read_json(training_path) if training_path.exists() else {}
    metrics["parameter_count"] = int(
        training.get("parameter_count") or models.parameter_count(model)
    )
    for key in ("epochs_run",):  # seconds differ per machine: reports/timings.json holds them
        if training.get(key) is not None:
            metrics[key] = training[key]
    history_path = model_dir / "history.json"
    history = fileio.read_json(history_path) if history_path.exists() else None

    with fileio.atomic_directory(plots_dir) as staging:
        figures = plots.plot_variant(
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

    run_ref = model_dir / "run.json"
    if run_ref.exists():
        import mlflow

        run_id = tracking.finished_run(run_ref)
        mlflow.log_metrics(
            {
                f"test_{key}": float(metrics[key])
                for key in evaluation.TEST_METRIC_KEYS
                if metrics.get(key) is not None
            },
            run_id=run_id,
        )
        mlflow.log_artifacts(str(plots_dir), artifact_path="evaluation/plots", run_id=run_id)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "metrics.json"
            copy.write_text(metrics_path.read_text())
            mlflow.log_artifact(str(copy), artifact_path="evaluation", run_id=run_id)
        logged = f"logged to MLflow run in {run_ref}"
    else:
        logged = f"no {run_ref}: nothing logged to MLflow"

    summary = ", ".join(
        f"{key} {metrics[key]:.4g}"
        for key in ("mse", "pca_mse", "ssim", "cluster_accuracy", "probe_accuracy", "kl")
        if key in metrics
    )
    print(f"[evaluate] {variant}: {summary}")
    print(
        f"[evaluate] {variant}: wrote {metrics_path} and {plots_dir}/ ({', '.join(figures)}) "
        f"in {time.monotonic() - started:.1f} s; {logged}"
    )


if __name__ == "__main__":
    timing.run_stage("evaluate", main)
