"""DVC stage `evaluate@V`: test-split metrics and figures of one trained variant.

python pipeline/evaluate.py --variant conv     # what `dvc repro evaluate@conv` runs

Reads models/<V> and data/processed (the test split is used here and nowhere before; the
training split fits the PCA baseline and the linear probe), writes metrics/<V>.json and
plots/<V>/*.png atomically, and logs both into the variant's final MLflow run
(models/<V>/run.json) as ``test_<metric>`` metrics and ``evaluation/`` artifacts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from autoencoders import config, data, evaluation, fileio, plots, tracking

PROCESSED_DIR = "data/processed"


def write_plots(
    *,
    directory: Path,
    model: Any,
    outputs: dict[str, Any],
    x_test: Any,
    y_test: Any,
    history: dict[str, Any] | None,
    variant: str,
    n_examples: int,
    seed: int,
    noise_std: float,
) -> list[str]:
    """Every figure of one variant into ``directory``; returns the file names."""
    written = []
    shown = plots.example_indices(len(x_test), n_examples, y_test, seed)
    plots.plot_reconstructions(
        x_test[shown],
        outputs["test_reconstructions"][shown],
        directory / "reconstructions.png",
        n=n_examples,
        title=f"{variant}: test images (top) and reconstructions (bottom)",
    )
    written.append("reconstructions.png")
    plots.plot_code_space(
        outputs["test_codes"], y_test, directory / "code_space.png", seed=seed, title=variant
    )
    written.append("code_space.png")
    if history:
        plots.plot_training_curves(history, directory / "training_curves.png", title=variant)
        written.append("training_curves.png")
    if "denoised_test" in outputs:
        plots.plot_denoising(
            outputs["noisy_test"][shown],
            outputs["denoised_test"][shown],
            x_test[shown],
            directory / "denoising.png",
            n=n_examples,
            noise_std=noise_std,
        )
        written.append("denoising.png")
    if getattr(model, "posterior", None) is not None:
        samples = evaluation.prior_samples(model, n=32, seed=seed)
        plots.plot_prior_samples(samples, directory / "prior_samples.png")
        written.append("prior_samples.png")
    return written


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
    seed = int(config.section(params, "seed"))
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
    noise_std = evaluation.noise_std_of(model)
    outputs = evaluation.model_outputs(model, x_train, x_test, seed=seed, noise_std=noise_std)
    metrics = evaluation.evaluate_arrays(
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        seed=seed,
        silhouette_sample=settings.silhouette_sample,
        probe_max_iter=settings.probe_max_iter,
        kmeans_n_init=settings.kmeans_n_init,
        **outputs,
    )
    if noise_std > 0:
        metrics["noise_std"] = noise_std
    training_path = model_dir / "training.json"
    training = fileio.read_json(training_path) if training_path.exists() else {}
    metrics["parameter_count"] = int(
        training.get("parameter_count") or models.parameter_count(model)
    )
    for key in ("train_seconds", "epochs_run"):
        if training.get(key) is not None:
            metrics[key] = training[key]
    history_path = model_dir / "history.json"
    history = fileio.read_json(history_path) if history_path.exists() else None

    with fileio.atomic_directory(plots_dir) as staging:
        figures = write_plots(
            directory=staging,
            model=model,
            outputs=outputs,
            x_test=x_test,
            y_test=y_test,
            history=history,
            variant=variant,
            n_examples=settings.n_examples,
            seed=seed,
            noise_std=noise_std,
        )
    fileio.write_json(metrics_path, metrics)

    run_ref = model_dir / "run.json"
    if run_ref.exists():
        import mlflow

        with tracking.resume_run(run_ref):
            mlflow.log_metrics(
                {
                    f"test_{key}": float(metrics[key])
                    for key in evaluation.TEST_METRIC_KEYS
                    if metrics.get(key) is not None
                }
            )
            mlflow.log_artifacts(str(plots_dir), artifact_path="evaluation/plots")
            with tempfile.TemporaryDirectory() as scratch:
                copy = Path(scratch) / "metrics.json"
                copy.write_text(metrics_path.read_text())
                mlflow.log_artifact(str(copy), artifact_path="evaluation")
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
    main()
